"""Request ids, the error envelope, body limits, unknown routes and methods, health."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from projections.catch_up import wait_until_logged
from tests.api.helpers import ERROR_KEYS, error_of, json_of, validation_fields
from tests.support import create_event, create_user, register, unique

LIMIT = 64 * 1024
GENERATED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

Call = Callable[[TestClient, dict[str, str]], httpx.Response]


def _delete_event(client: TestClient, headers: dict[str, str]) -> httpx.Response:
    event = create_event(client)
    response: httpx.Response = client.delete(f"/events/{event['eventId']}", headers=headers)
    return response


def _duplicate_user(client: TestClient, headers: dict[str, str]) -> httpx.Response:
    user = create_user(client)
    response: httpx.Response = client.post(
        "/users", json={"userId": user, "name": "N"}, headers=headers
    )
    return response


def _too_large(client: TestClient, headers: dict[str, str]) -> httpx.Response:
    body = {"userId": "big", "name": "x" * LIMIT}
    response: httpx.Response = client.post("/users", json=body, headers=headers)
    return response


CALLS: dict[str, tuple[int, Call]] = {
    "200-health": (200, lambda c, h: c.get("/health", headers=h)),
    "200-list": (200, lambda c, h: c.get("/events", headers=h)),
    "200-docs": (200, lambda c, h: c.get("/docs", headers=h)),
    "200-openapi": (200, lambda c, h: c.get("/openapi.json", headers=h)),
    "200-docs-asset": (200, lambda c, h: c.get("/static/docs/swagger-ui.css", headers=h)),
    "201-user": (
        201,
        lambda c, h: c.post("/users", json={"userId": unique(), "name": "N"}, headers=h),
    ),
    "204-delete": (204, _delete_event),
    "400-validation": (400, lambda c, h: c.post("/users", json={}, headers=h)),
    "400-bad-json": (
        400,
        lambda c, h: c.post(
            "/users", content=b"{", headers={**h, "Content-Type": "application/json"}
        ),
    ),
    "404-user": (404, lambda c, h: c.get("/users/ghost", headers=h)),
    "404-route": (404, lambda c, h: c.get("/no/such/route", headers=h)),
    "405-method": (405, lambda c, h: c.delete("/users", headers=h)),
    "409-duplicate": (409, _duplicate_user),
    "413-too-large": (413, _too_large),
}


@pytest.mark.parametrize(("status", "call"), CALLS.values(), ids=CALLS.keys())
def test_every_response_carries_a_generated_request_id(
    shared_client: TestClient, status: int, call: Call
) -> None:
    first = call(shared_client, {})
    second = shared_client.get("/health")

    assert first.status_code == status, first.text
    assert GENERATED_ID.fullmatch(first.headers["X-Request-ID"])
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]
    if status >= 400:
        assert (
            error_of(first, status, first.json()["error"]["code"])["requestId"]
            == (first.headers["X-Request-ID"])
        )


@pytest.mark.parametrize(("status", "call"), CALLS.values(), ids=CALLS.keys())
def test_a_sane_incoming_request_id_is_echoed_in_the_header_and_error_body(
    shared_client: TestClient, status: int, call: Call
) -> None:
    response = call(shared_client, {"X-Request-ID": "abc-123"})

    assert response.status_code == status, response.text
    assert response.headers["X-Request-ID"] == "abc-123"
    if status >= 400:
        assert response.json()["error"]["requestId"] == "abc-123"


@pytest.mark.parametrize(
    "request_id",
    ["a", "A" * 128, "trace.id:42_x-Y", "3f2b9c0e-8a1d-4e6f-9b7a-5c3d1e0f2a4b"],
)
def test_sane_request_ids_up_to_128_characters_are_echoed(
    shared_client: TestClient, request_id: str
) -> None:
    response = shared_client.get("/users/ghost", headers={"X-Request-ID": request_id})

    assert response.headers["X-Request-ID"] == request_id
    assert error_of(response, 404, "USER_NOT_FOUND")["requestId"] == request_id


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param(b"a" * 129, id="129-chars"),
        pytest.param(b"x" * 5000, id="5000-chars"),
        pytest.param(b"abc 123", id="space"),
        pytest.param(b" abc", id="leading-space"),
        pytest.param(b"abc\ndef", id="inner-newline"),
        pytest.param(b"abc\tdef", id="tab"),
        pytest.param(b"abc\xc3\xa9", id="non-ascii"),
        pytest.param(b"<script>", id="markup"),
        pytest.param(b'"quoted"', id="quotes"),
        pytest.param(b"", id="empty"),
    ],
)
def test_an_insane_incoming_request_id_is_replaced_by_a_generated_one(
    shared_client: TestClient, request_id: bytes
) -> None:
    response = shared_client.get("/users/ghost", headers={"X-Request-ID": request_id})

    echoed = response.headers["X-Request-ID"]
    assert echoed.encode() != request_id
    assert GENERATED_ID.fullmatch(echoed)
    assert error_of(response, 404, "USER_NOT_FOUND")["requestId"] == echoed


def test_a_request_id_ending_in_a_newline_is_replaced_by_a_generated_one(
    shared_client: TestClient,
) -> None:
    response = shared_client.get("/users/ghost", headers={"X-Request-ID": b"abc-123\n"})

    echoed = response.headers["X-Request-ID"]
    assert "\n" not in echoed
    assert GENERATED_ID.fullmatch(echoed)
    assert response.json()["error"]["requestId"] == echoed


# -- the error envelope --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "call"),
    [
        (400, "VALIDATION_ERROR", CALLS["400-validation"][1]),
        (400, "VALIDATION_ERROR", CALLS["400-bad-json"][1]),
        (404, "USER_NOT_FOUND", CALLS["404-user"][1]),
        (404, "NOT_FOUND", CALLS["404-route"][1]),
        (405, "METHOD_NOT_ALLOWED", CALLS["405-method"][1]),
        (409, "DUPLICATE_USER", CALLS["409-duplicate"][1]),
        (413, "PAYLOAD_TOO_LARGE", CALLS["413-too-large"][1]),
    ],
    ids=["validation", "bad-json", "user-not-found", "no-route", "method", "duplicate", "large"],
)
def test_every_error_body_has_exactly_the_envelope_keys(
    shared_client: TestClient, status: int, code: str, call: Call
) -> None:
    response = call(shared_client, {})

    assert response.headers["Content-Type"].startswith("application/json")
    error = error_of(response, status, code)
    assert set(error) == ERROR_KEYS
    assert set(response.json()) == {"error"}
    # One form for every error, whether a route or a middleware answered.
    compact = json.dumps(response.json(), ensure_ascii=False, separators=(",", ":"))
    assert response.content == compact.encode()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("POST", "/nope"),
        ("GET", "/users/a/b/c"),
        ("GET", "/events/x/y/z"),
        # A trailing slash: no redirect (an empty 307 whose Location comes from Host).
        ("POST", "/users/"),
        ("GET", "/users/alice/"),
        ("GET", "/events/"),
    ],
)
def test_an_unknown_route_answers_404_not_found(
    shared_client: TestClient, method: str, path: str
) -> None:
    error = error_of(shared_client.request(method, path), 404, "NOT_FOUND")
    assert error["details"] == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/users"),
        ("PUT", "/users/alice"),
        ("PATCH", "/events/e1"),
        ("POST", "/health"),
        ("PUT", "/users/alice/registrations"),
    ],
)
def test_a_wrong_method_answers_405_method_not_allowed(
    shared_client: TestClient, method: str, path: str
) -> None:
    error_of(shared_client.request(method, path), 405, "METHOD_NOT_ALLOWED")


def test_an_unexpected_failure_answers_500_without_internals(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = client.app
    assert isinstance(app, FastAPI)

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret-internal-detail /etc/passwd")

    monkeypatch.setattr(app.state.container.service, "create_user_command", explode)

    response = client.post(
        "/users", json={"userId": "u1", "name": "N"}, headers={"X-Request-ID": "req-500"}
    )

    error = error_of(response, 500, "INTERNAL_ERROR")
    assert response.headers["X-Request-ID"] == "req-500"
    assert error["details"] == []
    assert "secret" not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text
    assert client.get("/health").status_code == 200


# -- the 64 KiB body limit ---------------------------------------------------------------------


def _padded(document: dict[str, Any], size: int) -> bytes:
    raw = json.dumps(document).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def test_a_body_of_exactly_64_kib_is_accepted(client: TestClient) -> None:
    body = _padded({"userId": "edge", "name": "N"}, LIMIT)

    response = client.post("/users", content=body, headers={"Content-Type": "application/json"})

    assert response.request.headers["Content-Length"] == str(LIMIT)
    assert json_of(response, 201)["userId"] == "edge"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/users"),
        ("POST", "/events"),
        ("PUT", "/events/e1"),
        ("POST", "/users/u1/registrations"),
    ],
)
def test_a_body_one_byte_over_64_kib_answers_413_and_changes_nothing(
    shared_client: TestClient, method: str, path: str
) -> None:
    body = _padded({"userId": "over"}, LIMIT + 1)

    response = shared_client.request(
        method, path, content=body, headers={"Content-Type": "application/json"}
    )

    assert response.request.headers["Content-Length"] == str(LIMIT + 1)
    error = error_of(response, 413, "PAYLOAD_TOO_LARGE")
    assert error["path"] == path
    error_of(shared_client.get("/users/over"), 404, "USER_NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/events"), ("DELETE", "/users/u1/registrations/e1")]
)
def test_a_body_over_64_kib_on_a_request_that_takes_none_answers_413_as_documented(
    shared_client: TestClient, method: str, path: str
) -> None:
    """The limit holds whatever the method, so every operation documents it."""
    response = shared_client.request(
        method, path, content=b" " * (LIMIT + 1), headers={"Content-Type": "application/json"}
    )

    error_of(response, 413, "PAYLOAD_TOO_LARGE")
    document = shared_client.get("/openapi.json").json()
    operations = [op for item in document["paths"].values() for op in item.values()]
    assert all("413" in op["responses"] for op in operations)


def test_a_large_valid_json_body_answers_413_not_a_validation_error(
    shared_client: TestClient,
) -> None:
    response = shared_client.post("/users", json={"userId": "big", "name": "x" * (LIMIT + 10)})

    error_of(response, 413, "PAYLOAD_TOO_LARGE")
    error_of(shared_client.get("/users/big"), 404, "USER_NOT_FOUND")


def _chunks(total: int, chunk: int = 4096) -> Iterator[bytes]:
    """A streamed body: httpx sends it chunked, without a Content-Length header."""
    document = _padded({"userId": "streamed", "name": "N"}, total)
    for start in range(0, total, chunk):
        yield document[start : start + chunk]


def test_a_streamed_body_over_64_kib_without_content_length_answers_413(
    client: TestClient,
) -> None:
    response = client.post(
        "/users", content=_chunks(LIMIT + 1), headers={"Content-Type": "application/json"}
    )

    assert "Content-Length" not in response.request.headers
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    error_of(response, 413, "PAYLOAD_TOO_LARGE")
    error_of(client.get("/users/streamed"), 404, "USER_NOT_FOUND")


def test_a_much_larger_streamed_body_answers_413(shared_client: TestClient) -> None:
    response = shared_client.post(
        "/events", content=_chunks(10 * LIMIT), headers={"Content-Type": "application/json"}
    )

    error_of(response, 413, "PAYLOAD_TOO_LARGE")


def test_a_streamed_body_within_64_kib_is_accepted(client: TestClient) -> None:
    response = client.post(
        "/users", content=_chunks(LIMIT), headers={"Content-Type": "application/json"}
    )

    assert "Content-Length" not in response.request.headers
    assert json_of(response, 201)["userId"] == "streamed"


# -- health ---------------------------------------------------------------------------------------


def test_health_answers_200_ok(client: TestClient, store_name: str) -> None:
    body = json_of(client.get("/health"), 200)

    assert body["status"] == "ok"
    assert body["store"] == store_name


def test_health_reports_the_read_tables_caught_up_after_a_write(client: TestClient) -> None:
    event = create_event(client)
    register(client, create_user(client), event["eventId"])
    # DynamoDB: the log's head is the stream indexer's, which follows the writes.
    wait_until_logged(client.app.state.container.service.recorder)  # type: ignore[attr-defined]

    body = json_of(client.get("/health"), 200)

    assert body["projectionPosition"] == body["eventStorePosition"] > 0


def test_health_shows_the_feed_lag_only_where_an_indexer_builds_the_feed(
    client: TestClient, store_name: str
) -> None:
    event = create_event(client)
    register(client, create_user(client), event["eventId"])
    wait_until_logged(client.app.state.container.service.recorder)  # type: ignore[attr-defined]

    body = json_of(client.get("/health"), 200)

    if store_name == "sqlite":
        assert body.get("feed") is None  # the log is the events table: no lag
        return
    feed = body["feed"]
    assert feed["indexerRunning"] is True
    assert feed["indexedPosition"] == body["eventStorePosition"] > 0
    assert feed["pendingRecords"] == 0
    assert feed["oldestPendingSeconds"] is None
    assert feed["secondsSinceCaughtUp"] is not None
    assert feed["secondsSinceCaughtUp"] >= 0
    assert feed["lastError"] is None


def test_a_validation_error_never_answers_422(shared_client: TestClient) -> None:
    responses = [
        shared_client.post("/users", json={"userId": 1}),
        shared_client.post("/events", json={"capacity": "many"}),
        shared_client.put("/events/x", json={"capacity": -5}),
        shared_client.get("/events", params={"limit": "many"}),
        shared_client.get("/users/" + "a" * 101),
        shared_client.post("/users/u1/registrations", json=[]),
        shared_client.put("/events/x", json=[{"title": "T"}]),
        shared_client.put("/events/x", content=b"{", headers={"Content-Type": "application/json"}),
    ]
    for response in responses:
        validation_fields(response)
