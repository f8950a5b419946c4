"""GET /openapi.json and the offline Swagger UI at /docs."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import json_of

METHODS = {"get", "post", "put", "delete", "patch"}

# Registering, by either shape (/users/{userId}/... or /events/{eventId}/...).
REGISTERING = {
    "VALIDATION_ERROR",
    "USER_NOT_FOUND",
    "EVENT_NOT_FOUND",
    "EVENT_NOT_OPEN",
    "ALREADY_REGISTERED",
    "ALREADY_ON_WAITLIST",
    "EVENT_FULL",
    "PAYLOAD_TOO_LARGE",
}

# Every operation and the error codes it can answer with (besides 500/503).
EXPECTED_CODES: dict[tuple[str, str], set[str]] = {
    ("post", "/users"): {"VALIDATION_ERROR", "DUPLICATE_USER", "PAYLOAD_TOO_LARGE"},
    ("get", "/users/{userId}"): {"VALIDATION_ERROR", "USER_NOT_FOUND"},
    ("post", "/admin/users/{userId}/erase"): {
        "VALIDATION_ERROR",
        "FORBIDDEN",
        "USER_NOT_FOUND",
        "PERSONAL_DATA_NOT_SEALED",
    },
    ("post", "/events"): {"VALIDATION_ERROR", "DUPLICATE_EVENT", "PAYLOAD_TOO_LARGE"},
    ("get", "/events"): {"VALIDATION_ERROR"},
    ("get", "/events/{eventId}"): {"VALIDATION_ERROR", "EVENT_NOT_FOUND"},
    ("put", "/events/{eventId}"): {
        "VALIDATION_ERROR",
        "EVENT_NOT_FOUND",
        "CAPACITY_BELOW_REGISTERED",
        "PAYLOAD_TOO_LARGE",
    },
    ("delete", "/events/{eventId}"): {
        "VALIDATION_ERROR",
        "EVENT_NOT_FOUND",
        "EVENT_HAS_REGISTRATIONS",
    },
    ("get", "/events/{eventId}/registrations"): {"VALIDATION_ERROR", "EVENT_NOT_FOUND"},
    ("post", "/users/{userId}/registrations"): REGISTERING,
    ("post", "/events/{eventId}/registrations"): REGISTERING,
    ("get", "/users/{userId}/registrations"): {"VALIDATION_ERROR", "USER_NOT_FOUND"},
    ("get", "/users/{userId}/registrations/{eventId}"): {
        "VALIDATION_ERROR",
        "USER_NOT_FOUND",
        "EVENT_NOT_FOUND",
        "REGISTRATION_NOT_FOUND",
    },
    ("delete", "/users/{userId}/registrations/{eventId}"): {
        "VALIDATION_ERROR",
        "USER_NOT_FOUND",
        "EVENT_NOT_FOUND",
        "REGISTRATION_NOT_FOUND",
    },
    ("delete", "/events/{eventId}/registrations/{userId}"): {
        "VALIDATION_ERROR",
        "USER_NOT_FOUND",
        "EVENT_NOT_FOUND",
        "REGISTRATION_NOT_FOUND",
    },
    ("get", "/audit/log"): {"VALIDATION_ERROR", "FORBIDDEN"},
    ("get", "/audit/verify"): {"FORBIDDEN"},
    ("get", "/audit/events/{eventId}/history"): {
        "VALIDATION_ERROR",
        "EVENT_NOT_FOUND",
        "FORBIDDEN",
    },
    ("get", "/audit/users/{userId}/history"): {"VALIDATION_ERROR", "USER_NOT_FOUND", "FORBIDDEN"},
    ("get", "/audit/events/{eventId}/state"): {
        "VALIDATION_ERROR",
        "EVENT_NOT_FOUND",
        "STORED_EVENT_UNDECODABLE",
        "FORBIDDEN",
    },
    ("get", "/audit/users/{userId}/state"): {
        "VALIDATION_ERROR",
        "USER_NOT_FOUND",
        "STORED_EVENT_UNDECODABLE",
        "FORBIDDEN",
    },
    ("get", "/admin/projections"): {"FORBIDDEN"},
    ("post", "/admin/projections/{name}/rebuild"): {
        "VALIDATION_ERROR",
        "FORBIDDEN",
        "PROJECTION_NOT_FOUND",
        "REBUILD_IN_PROGRESS",
    },
    ("get", "/admin/projections/{name}/check"): {
        "VALIDATION_ERROR",
        "FORBIDDEN",
        "PROJECTION_NOT_FOUND",
    },
}
STATUS_OF = {
    "VALIDATION_ERROR": "400",
    "USER_NOT_FOUND": "404",
    "EVENT_NOT_FOUND": "404",
    "REGISTRATION_NOT_FOUND": "404",
    "DUPLICATE_USER": "409",
    "DUPLICATE_EVENT": "409",
    "EVENT_NOT_OPEN": "409",
    "ALREADY_REGISTERED": "409",
    "ALREADY_ON_WAITLIST": "409",
    "EVENT_FULL": "409",
    "CAPACITY_BELOW_REGISTERED": "409",
    "EVENT_HAS_REGISTRATIONS": "409",
    "CONCURRENT_MODIFICATION": "409",
    "PAYLOAD_TOO_LARGE": "413",
    "UNAUTHORIZED": "401",
    "IDEMPOTENCY_KEY_REUSED": "422",
    "REQUEST_IN_PROGRESS": "409",
    "FORBIDDEN": "403",
    "PROJECTION_NOT_FOUND": "404",
    "REBUILD_IN_PROGRESS": "409",
    "STORED_EVENT_UNDECODABLE": "409",
    "PERSONAL_DATA_NOT_SEALED": "409",
    "INTERNAL_ERROR": "500",
    "SERVICE_UNAVAILABLE": "503",
}
SUCCESS = {"post": "201", "get": "200", "put": "200", "delete": "204"}


@pytest.fixture(scope="module")
def spec(shared_client: TestClient) -> dict[str, Any]:
    return json_of(shared_client.get("/openapi.json"), 200)


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def codes_by_status(operation: dict[str, Any]) -> dict[str, set[str]]:
    """The error codes an operation documents, by status, from its response examples."""
    found: dict[str, set[str]] = {}
    for status, response in operation["responses"].items():
        if not status.startswith(("4", "5")):
            continue
        examples = response["content"]["application/json"]["examples"]
        found[status] = {example["value"]["error"]["code"] for example in examples.values()}
    return found


def test_the_openapi_document_lists_every_route(spec: dict[str, Any]) -> None:
    assert set(operations(spec)) >= set(EXPECTED_CODES) | {("get", "/health")}


def test_every_operation_has_a_summary_and_a_description(spec: dict[str, Any]) -> None:
    for key, operation in operations(spec).items():
        assert operation.get("summary", "").strip(), key
        assert operation.get("description", "").strip(), key


def test_no_operation_lists_fastapis_422_validation_response(spec: dict[str, Any]) -> None:
    for key, operation in operations(spec).items():
        if "422" in operation["responses"]:
            assert codes_by_status(operation)["422"] == {"IDEMPOTENCY_KEY_REUSED"}, key
    schemas = spec.get("components", {}).get("schemas", {})
    assert "HTTPValidationError" not in schemas


@pytest.mark.parametrize("key", [k for k in EXPECTED_CODES if k[0] in {"post", "put", "delete"}])
def test_every_write_documents_the_idempotency_key_and_its_answers(
    spec: dict[str, Any], key: tuple[str, str]
) -> None:
    operation = operations(spec)[key]
    (header,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert header["in"] == "header"
    assert header["required"] is False
    (text,) = [s for s in header["schema"].get("anyOf", [header["schema"]]) if "pattern" in s]
    assert (text["minLength"], text["maxLength"]) == (1, 255)
    codes = codes_by_status(operation)
    assert "IDEMPOTENCY_KEY_REUSED" in codes["422"]
    assert "REQUEST_IN_PROGRESS" in codes["409"]


ACCEPTED = {("post", "/admin/projections/{name}/rebuild")}  # 202: it runs on after the answer
DONE = {("post", "/admin/users/{userId}/erase")}  # 200: an action on what exists, idempotent


def test_every_operation_lists_its_success_status(spec: dict[str, Any]) -> None:
    for (method, path), operation in operations(spec).items():
        success = SUCCESS[method]
        if (method, path) in ACCEPTED:
            success = "202"
        elif (method, path) in DONE:
            success = "200"
        assert success in operation["responses"], (method, path)


@pytest.mark.parametrize(
    ("key", "codes"), EXPECTED_CODES.items(), ids=[f"{m.upper()} {p}" for m, p in EXPECTED_CODES]
)
def test_every_operation_lists_the_error_codes_it_can_return_under_their_status(
    spec: dict[str, Any], key: tuple[str, str], codes: set[str]
) -> None:
    by_status = codes_by_status(operations(spec)[key])

    listed = set().union(*by_status.values())
    # On every route: a malformed or unknown Authorization header, and a query
    # parameter the route does not take.
    always = {"INTERNAL_ERROR", "UNAUTHORIZED", "VALIDATION_ERROR"}
    assert listed >= codes | always, sorted(codes - listed)
    for status, found in by_status.items():
        for code in found:
            assert STATUS_OF[code] == status, (code, status)


def test_registering_documents_event_full_waitlist_and_not_open_as_409s(
    spec: dict[str, Any],
) -> None:
    by_status = codes_by_status(spec["paths"]["/users/{userId}/registrations"]["post"])

    assert {"EVENT_FULL", "ALREADY_ON_WAITLIST", "EVENT_NOT_OPEN"} <= by_status["409"]


@pytest.mark.parametrize(
    ("user_centric", "event_centric"),
    [
        (("post", "/users/{userId}/registrations"), ("post", "/events/{eventId}/registrations")),
        (
            ("delete", "/users/{userId}/registrations/{eventId}"),
            ("delete", "/events/{eventId}/registrations/{userId}"),
        ),
    ],
    ids=["register", "leave"],
)
def test_both_shapes_of_registering_and_leaving_document_the_same_answers(
    spec: dict[str, Any], user_centric: tuple[str, str], event_centric: tuple[str, str]
) -> None:
    ours, theirs = operations(spec)[user_centric], operations(spec)[event_centric]

    assert codes_by_status(theirs) == codes_by_status(ours)
    assert theirs["responses"].keys() == ours["responses"].keys()
    for status in ("201", "204"):
        assert theirs["responses"].get(status) == ours["responses"].get(status)
    assert theirs["description"] == ours["description"]
    assert [p for p in theirs["parameters"] if p["name"] == "Idempotency-Key"] == [
        p for p in ours["parameters"] if p["name"] == "Idempotency-Key"
    ]


def test_error_responses_use_the_envelope_schema_with_examples(spec: dict[str, Any]) -> None:
    for key, operation in operations(spec).items():
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")):
                continue
            content = response["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, key
            for example in content["examples"].values():
                assert set(example["value"]["error"]) == {
                    "code",
                    "message",
                    "details",
                    "timestamp",
                    "path",
                    "requestId",
                }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/users"),
        ("post", "/events"),
        ("put", "/events/{eventId}"),
        ("post", "/users/{userId}/registrations"),
        ("post", "/events/{eventId}/registrations"),
    ],
)
def test_request_bodies_have_an_example(spec: dict[str, Any], method: str, path: str) -> None:
    ref = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    schema = spec["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]
    assert schema.get("examples"), schema


# -- /docs --------------------------------------------------------------------------------------


class _Assets(HTMLParser):
    """Collects the URLs the page loads through script and link tags."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def test_docs_is_html_that_loads_only_local_assets_which_are_served(
    shared_client: TestClient,
) -> None:
    response = shared_client.get("/docs")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    parser = _Assets()
    parser.feed(response.text)
    assert any(url.endswith(".js") for url in parser.urls), parser.urls
    assert any(url.endswith(".css") for url in parser.urls), parser.urls
    for url in parser.urls:
        assert not url.startswith(("http://", "https://", "//")), url
        asset = shared_client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    assert "http://" not in response.text
    assert "https://" not in response.text


def test_docs_points_swagger_ui_at_the_local_openapi_document(shared_client: TestClient) -> None:
    html = shared_client.get("/docs").text

    assert "'/openapi.json'" in html
    assert shared_client.get("/openapi.json").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/audit/log",
        "/audit/verify",
        "/audit/events/{eventId}/history",
        "/audit/users/{userId}/history",
        "/audit/events/{eventId}/state",
        "/audit/users/{userId}/state",
        "/admin/projections",
        "/admin/projections/{name}/rebuild",
        "/admin/projections/{name}/check",
    ],
)
def test_the_audit_routes_declare_bearer_keys_and_their_roles(
    spec: dict[str, Any], path: str
) -> None:
    (operation,) = spec["paths"][path].values()
    schemes = spec["components"]["securitySchemes"]
    (requirement,) = operation["security"]
    (scheme,) = requirement
    assert schemes[scheme] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes[scheme]["description"],
    }
    assert "`admin`" in operation["description"]
    assert {"401", "403"} <= set(operation["responses"])
