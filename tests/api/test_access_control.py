"""API keys and roles: /audit needs auditor or admin, a bad key is refused everywhere."""

from __future__ import annotations

import io
import json
import logging

import pytest
from fastapi.testclient import TestClient

from infra.logs import JsonLinesFormatter
from infra.settings import Settings
from tests.api.conftest import (
    ADMIN_KEY,
    AUDITOR_KEY,
    CLIENT_KEY,
    HASHED_AUDITOR_KEY,
    bearer,
)
from tests.api.helpers import error_of, json_of
from tests.support import unique


def assert_unauthorized(response: object) -> None:
    error_of(response, 401, "UNAUTHORIZED")  # type: ignore[arg-type]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")  # type: ignore[attr-defined]


def test_with_no_keys_configured_the_audit_routes_are_closed(shared_client: TestClient) -> None:
    assert_unauthorized(shared_client.get("/audit/log"))
    assert_unauthorized(shared_client.get("/audit/verify"))
    assert_unauthorized(shared_client.get("/audit/log", headers=bearer(AUDITOR_KEY)))


def test_an_audit_route_without_a_key_answers_401(keyed_client: TestClient) -> None:
    assert_unauthorized(keyed_client.get("/audit/log"))


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-configured-key",
        f"Basic {AUDITOR_KEY}",
        "Bearer",
        "Bearer ",
        AUDITOR_KEY,
        f"Bearer {AUDITOR_KEY}x",
    ],
)
def test_a_malformed_or_unknown_key_answers_401_on_every_route(
    keyed_client: TestClient, authorization: str
) -> None:
    headers = {"Authorization": authorization}
    assert_unauthorized(keyed_client.get("/audit/log", headers=headers))
    assert_unauthorized(keyed_client.get("/events", headers=headers))
    assert_unauthorized(
        keyed_client.post(
            "/users", json={"userId": unique("user"), "name": "Mallory"}, headers=headers
        )
    )


def test_a_refused_key_writes_nothing(keyed_client: TestClient) -> None:
    user_id = unique("user")
    keyed_client.post(
        "/users", json={"userId": user_id, "name": "M"}, headers=bearer("not-a-configured-key")
    )
    error_of(keyed_client.get(f"/users/{user_id}"), 404, "USER_NOT_FOUND")


def test_a_client_key_may_not_read_the_audit_routes(keyed_client: TestClient) -> None:
    error = error_of(keyed_client.get("/audit/log", headers=bearer(CLIENT_KEY)), 403, "FORBIDDEN")
    assert "reporting" in error["message"]
    error_of(keyed_client.get("/audit/verify", headers=bearer(CLIENT_KEY)), 403, "FORBIDDEN")


@pytest.mark.parametrize("key", [AUDITOR_KEY, ADMIN_KEY, HASHED_AUDITOR_KEY])
def test_auditors_and_admins_read_the_audit_routes(keyed_client: TestClient, key: str) -> None:
    json_of(keyed_client.get("/audit/log", headers=bearer(key)), 200)
    json_of(keyed_client.get("/audit/verify", headers=bearer(key)), 200)


def test_any_valid_key_may_use_the_open_routes(keyed_client: TestClient) -> None:
    for key in (CLIENT_KEY, AUDITOR_KEY, ADMIN_KEY):
        json_of(keyed_client.get("/events", headers=bearer(key)), 200)


def test_no_key_appears_in_a_response_or_a_log_line(keyed_client: TestClient) -> None:
    handler = next(
        h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonLinesFormatter)
    )
    buffer = io.StringIO()
    previous = handler.setStream(buffer)  # type: ignore[attr-defined]
    try:
        bodies = [
            keyed_client.get("/audit/log", headers=bearer(AUDITOR_KEY)).text,
            keyed_client.get("/audit/log", headers=bearer(CLIENT_KEY)).text,
            keyed_client.get("/events", headers=bearer(f"{ADMIN_KEY}-wrong")).text,
            keyed_client.post(
                "/users",
                json={"userId": unique("user"), "name": "Key Holder"},
                headers=bearer(ADMIN_KEY),
            ).text,
        ]
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]
    written = buffer.getvalue() + "".join(bodies)
    logged = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert any(line.get("status") == 200 for line in logged)  # the requests were logged
    for key in (ADMIN_KEY, AUDITOR_KEY, CLIENT_KEY):
        assert key not in written


def test_keys_are_never_shown_by_the_settings_or_their_errors() -> None:
    settings = Settings(api_keys=f"ops:admin:{ADMIN_KEY}")
    assert ADMIN_KEY not in repr(settings)
    assert ADMIN_KEY not in str(settings.model_dump())
    with pytest.raises(ValueError, match="role must be one of") as refused:
        Settings(api_keys=f"ops:root:{ADMIN_KEY}")
    assert ADMIN_KEY not in str(refused.value)


@pytest.mark.parametrize(
    "entry",
    [
        "ops:admin:short",  # too short to be a key
        "ops admin:admin:0123456789abcdef",  # a name with a space
        "ops:admin:sha256:abc",  # not a SHA-256 digest
        "ops:admin:0123456789abcdef,ops:auditor:fedcba9876543210",  # one name twice
    ],
)
def test_a_malformed_api_keys_setting_is_refused_at_start(entry: str) -> None:
    with pytest.raises(ValueError, match="API_KEYS entry"):
        Settings(api_keys=entry)
