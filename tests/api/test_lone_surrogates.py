"""A lone UTF-16 surrogate (JSON "\\ud800") anywhere in a request is 400 VALIDATION_ERROR.

No UTF-8 text can hold one, so neither store nor response could carry it: it is refused
at the edge, naming the field, instead of failing later with a 500.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import error_of, validation_fields

SURROGATES = ["\ud800", "\udfff", "a\udc00b", "\udbff\ud800"]

EVENT = {"eventId": "e-1", "title": "T", "date": "2024-12-15", "capacity": 5}
# (method, path, a valid body, the string field that gets the surrogate)
FIELDS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "user-id": ("POST", "/users", {"userId": "u-1", "name": "N"}, "userId"),
    "user-name": ("POST", "/users", {"userId": "u-1", "name": "N"}, "name"),
    "event-id": ("POST", "/events", EVENT, "eventId"),
    "event-title": ("POST", "/events", EVENT, "title"),
    "event-description": ("POST", "/events", EVENT, "description"),
    "event-date": ("POST", "/events", EVENT, "date"),
    "event-location": ("POST", "/events", EVENT, "location"),
    "event-organizer": ("POST", "/events", EVENT, "organizer"),
    "event-status": ("POST", "/events", EVENT, "status"),
    "update-title": ("PUT", "/events/e-1", {"title": "T"}, "title"),
    "update-description": ("PUT", "/events/e-1", {"description": "D"}, "description"),
    "update-date": ("PUT", "/events/e-1", {"date": "2024-12-15"}, "date"),
    "update-location": ("PUT", "/events/e-1", {"location": "L"}, "location"),
    "update-organizer": ("PUT", "/events/e-1", {"organizer": "O"}, "organizer"),
    "registration-event-id": ("POST", "/users/u-1/registrations", {"eventId": "e"}, "eventId"),
}


def raw_json(body: dict[str, Any], field: str, surrogate: str) -> bytes:
    """``body`` as JSON with ``field`` set to ``surrogate``, escaped as JSON allows."""
    text = json.dumps({**body, field: "PLACEHOLDER"})
    escaped = "".join(f"\\u{ord(c):04x}" for c in surrogate)
    return text.replace("PLACEHOLDER", escaped).encode()


@pytest.mark.parametrize("surrogate", SURROGATES, ids=ascii)
@pytest.mark.parametrize(("method", "path", "body", "field"), FIELDS.values(), ids=FIELDS.keys())
def test_a_lone_surrogate_in_a_body_string_is_a_validation_error_naming_the_field(
    shared_client: TestClient,
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
    surrogate: str,
) -> None:
    response = shared_client.request(
        method,
        path,
        content=raw_json(body, field, surrogate),
        headers={"Content-Type": "application/json"},
    )

    assert validation_fields(response) == [field]
    if field != "status":  # an enum names its values instead
        assert "surrogate" in error_of(response, 400, "VALIDATION_ERROR")["details"][0]["message"]


def test_a_paired_surrogate_is_an_ordinary_character(shared_client: TestClient) -> None:
    body = b'{"userId": "emoji-user", "name": "\\ud83d\\ude00 Alice"}'

    response = shared_client.post(
        "/users", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 201, response.text
    assert response.json()["name"] == "\U0001f600 Alice"


def test_a_lone_surrogate_in_a_body_key_is_a_validation_error(shared_client: TestClient) -> None:
    body = b'{"userId": "u-2", "name": "N", "\\ud800": 1}'

    response = shared_client.post(
        "/users", content=body, headers={"Content-Type": "application/json"}
    )

    assert validation_fields(response)


async def _send(app: Any, method: str, path: str) -> tuple[int, bytes]:
    """One request straight to the ASGI app, with a path no HTTP client would send."""
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogatepass"),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("testclient", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return int(messages[0]["status"]), body


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/users/\ud800"),
        ("GET", "/users/a\udfff/registrations"),
        ("DELETE", "/users/u/registrations/\ud800"),
        ("GET", "/events/\ud800/registrations"),
        ("PUT", "/events/\udc00"),
        ("GET", "/no/such/\ud800/route"),
    ],
    ids=ascii,
)
def test_a_lone_surrogate_in_the_path_is_a_validation_error(
    shared_client: TestClient, method: str, path: str
) -> None:
    # An ASGI server decodes percent-escapes with replacement characters, but an adapter
    # (AWS Lambda's, say) may pass a decoded path through as it came.
    assert shared_client.portal is not None

    status, raw = shared_client.portal.call(_send, shared_client.app, method, path)

    assert status == 400, raw
    error = json.loads(raw)["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"] == [{"field": "path", "message": "must be valid UTF-8"}]
    assert error["path"].encode("utf-8")
