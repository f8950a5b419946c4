"""Helpers for tests that talk HTTP."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient


def unique(prefix: str = "id") -> str:
    """A fresh identifier that matches the API's id pattern."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


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
