"""Helpers for tests that talk HTTP."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from infra.devtools.dynamodb_local import LOCAL_CREDENTIALS

# The --store this test run selected (set by conftest when pytest starts).
SELECTED_STORE = "sqlite"


def unique(prefix: str = "id") -> str:
    """A fresh identifier that matches the API's id pattern."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def fresh_store_settings(store_name: str, endpoint: str | None) -> dict[str, object]:
    """Settings fields that select ``store_name`` with tables nobody else uses."""
    if store_name != "dynamodb":
        return {"store": "sqlite"}
    return {
        "store": "dynamodb",
        "dynamodb_endpoint_url": endpoint,
        "dynamodb_table_prefix": f"t{uuid.uuid4().hex[:12]}-",
        "aws_access_key_id": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "aws_region": LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
    }


def server_env(store_settings: dict[str, object]) -> dict[str, str]:
    """The same selection as environment variables, for a server process."""
    names = {
        "store": "STORE",
        "dynamodb_endpoint_url": "AWS_ENDPOINT_URL_DYNAMODB",
        "dynamodb_table_prefix": "DYNAMODB_TABLE_PREFIX",
        "aws_access_key_id": "AWS_ACCESS_KEY_ID",
        "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
        "aws_region": "AWS_DEFAULT_REGION",
    }
    return {names[key]: str(value) for key, value in store_settings.items()}


def create_user(client: TestClient, user_id: str | None = None, name: str = "Test User") -> str:
    user_id = user_id or unique("user")
    response = client.post("/users", json={"userId": user_id, "name": name})
    assert response.status_code == 201, response.text
    return user_id


def create_event(client: TestClient, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventId": unique("event"),
        "title": "Meetup",
        "date": "2024-12-15",
        "capacity": 10,
    }
    body.update(fields)
    response = client.post("/events", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def register(client: TestClient, user_id: str, event_id: str) -> Any:
    return client.post(f"/users/{user_id}/registrations", json={"eventId": event_id})


def leave(client: TestClient, user_id: str, event_id: str) -> Any:
    return client.delete(f"/users/{user_id}/registrations/{event_id}")
