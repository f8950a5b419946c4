"""405 METHOD_NOT_ALLOWED carries an Allow header naming every allowed method (RFC 9110)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import error_of, json_of

# (method, path, what Allow must list): paths where several routes share the path come first.
CASES = [
    ("DELETE", "/events", "GET, HEAD, POST"),
    ("PATCH", "/events/e-1", "GET, HEAD, PUT, DELETE"),
    ("POST", "/events/e-1", "GET, HEAD, PUT, DELETE"),
    ("OPTIONS", "/events/e-1", "GET, HEAD, PUT, DELETE"),
    ("PUT", "/users/u-1/registrations", "GET, HEAD, POST"),
    ("POST", "/users/u-1/registrations/e-1", "GET, HEAD, DELETE"),
    ("DELETE", "/users", "POST"),
    ("GET", "/users", "POST"),
    ("DELETE", "/users/u-1", "GET, HEAD"),
    ("PUT", "/events/e-1/registrations", "GET, HEAD, POST"),
    ("GET", "/events/e-1/registrations/u-1", "DELETE"),
    ("POST", "/health", "GET, HEAD"),
    ("POST", "/openapi.json", "GET, HEAD"),
    ("POST", "/docs", "GET, HEAD"),
    ("POST", "/static/docs/swagger-ui.css", "GET, HEAD"),
]


@pytest.mark.parametrize(("method", "path", "allow"), CASES, ids=[f"{m} {p}" for m, p, _ in CASES])
def test_a_405_lists_every_method_the_path_allows(
    shared_client: TestClient, method: str, path: str, allow: str
) -> None:
    response = shared_client.request(method, path)

    error_of(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == allow
    assert len(response.headers.get_list("Allow")) == 1


@pytest.mark.parametrize("path", sorted({path for _, path, _ in CASES}))
def test_every_method_an_allow_header_lists_is_answered_without_405(
    shared_client: TestClient, path: str
) -> None:
    listed = shared_client.request("TRACE", path).headers["Allow"].split(", ")

    for allowed in listed:
        # Unknown ids and no body: a 4xx at worst, but never 405.
        assert shared_client.request(allowed, path).status_code != 405, allowed


def test_allow_headers_agree_with_the_openapi_document(shared_client: TestClient) -> None:
    spec: dict[str, Any] = json_of(shared_client.get("/openapi.json"), 200)

    for template, item in spec["paths"].items():
        path = template.replace("{userId}", "u-1").replace("{eventId}", "e-1")
        documented = {method.upper() for method in item}
        if "GET" in documented:  # HEAD goes without saying (RFC 9110), and is answered
            documented.add("HEAD")

        allow = shared_client.request("TRACE", path).headers["Allow"]

        assert set(allow.split(", ")) == documented, template


@pytest.mark.parametrize(
    "path", ["/events", "/events/e-1", "/health", "/users/u-1/registrations", "/openapi.json"]
)
def test_head_answers_as_get_does_without_the_body(shared_client: TestClient, path: str) -> None:
    got = shared_client.get(path)
    head = shared_client.head(path)

    assert head.status_code == got.status_code
    assert head.content == b""
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    # The length of the body a GET would get (health's and errors' bodies vary a little).
    assert int(head.headers["Content-Length"]) > 0
    assert head.headers["X-Request-ID"] != got.headers["X-Request-ID"]


@pytest.mark.parametrize("path", ["/events", "/openapi.json"])
def test_head_states_the_length_of_the_body_get_sends(shared_client: TestClient, path: str) -> None:
    assert shared_client.head(path).headers["Content-Length"] == str(
        len(shared_client.get(path).content)
    )


def test_head_where_there_is_no_get_is_405(shared_client: TestClient) -> None:
    response = shared_client.head("/users")

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
