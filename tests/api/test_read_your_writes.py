"""A GET sent after a write's response has arrived reflects that write."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from infra.settings import Settings
from tests.api.helpers import json_of
from tests.support import create_event, leave, register, unique

ROUNDS = 50


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The background projector polls too rarely to help: only the write's own wait can."""
    return settings.model_copy(update={"projection_poll_interval": 600.0})


def test_a_created_user_is_readable_immediately(client: TestClient) -> None:
    for n in range(ROUNDS):
        user_id = unique(f"ryw{n}")
        json_of(client.post("/users", json={"userId": user_id, "name": f"User {n}"}), 201)

        assert json_of(client.get(f"/users/{user_id}"), 200)["name"] == f"User {n}"


def test_a_registration_shows_immediately_in_the_users_and_the_events_lists(
    client: TestClient,
) -> None:
    event = create_event(client, capacity=ROUNDS)
    event_id = event["eventId"]
    for n in range(ROUNDS):
        user_id = unique(f"ryw{n}")
        json_of(client.post("/users", json={"userId": user_id, "name": "N"}), 201)
        json_of(register(client, user_id, event_id), 201)

        mine = json_of(client.get(f"/users/{user_id}/registrations"), 200)
        assert [r["eventId"] for r in mine["registrations"]] == [event_id]
        theirs = json_of(client.get(f"/events/{event_id}/registrations", params={"limit": 1}), 200)
        assert theirs["total"] == n + 1
        assert json_of(client.get(f"/events/{event_id}"), 200)["registeredCount"] == n + 1


def test_leaving_shows_immediately_in_the_event(client: TestClient) -> None:
    event = create_event(client, capacity=2, waitlistEnabled=True)
    event_id = event["eventId"]
    users = [unique(f"ryw{n}") for n in range(ROUNDS + 2)]
    for user_id in users:
        json_of(client.post("/users", json={"userId": user_id, "name": "N"}), 201)
    for user_id in users[:2]:
        json_of(register(client, user_id, event_id), 201)

    for n in range(ROUNDS):
        leaver, newcomer = users[n], users[n + 2]
        json_of(register(client, newcomer, event_id), 201)
        assert json_of(client.get(f"/events/{event_id}"), 200)["waitlist"] == [newcomer]

        assert leave(client, leaver, event_id).status_code == 204

        current = json_of(client.get(f"/events/{event_id}"), 200)
        assert (current["registeredCount"], current["waitlistCount"]) == (2, 0)
        assert current["waitlist"] == []
        assert json_of(client.get(f"/users/{leaver}/registrations"), 200)["total"] == 0
        promoted = json_of(client.get(f"/users/{newcomer}/registrations/{event_id}"), 200)
        assert promoted["status"] == "confirmed"


def test_an_event_update_is_readable_immediately(client: TestClient) -> None:
    event = create_event(client, capacity=1)
    for n in range(ROUNDS):
        title = f"Title {n}"
        json_of(
            client.put(f"/events/{event['eventId']}", json={"title": title, "capacity": n + 1}), 200
        )

        current = json_of(client.get(f"/events/{event['eventId']}"), 200)
        assert (current["title"], current["capacity"]) == (title, n + 1)
