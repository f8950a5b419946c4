"""PUT and DELETE /events/{eventId}, and which statuses take registrations."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import assert_utc_timestamp, error_of, json_of, validation_fields
from tests.support import create_event, create_user, leave, register

CHANGES: list[tuple[str, Any]] = [
    ("title", "Renamed"),
    ("description", "New description"),
    ("description", ""),
    ("date", "2025-01-31T09:30:00Z"),
    ("location", "Elsewhere"),
    ("organizer", "Someone else"),
    ("status", "published"),
    ("capacity", 25),
    ("waitlistEnabled", True),
]


@pytest.mark.parametrize(("field", "value"), CHANGES)
def test_an_update_changes_only_the_field_sent(
    shared_client: TestClient, field: str, value: Any
) -> None:
    event = create_event(
        shared_client, description="Old", location="Here", organizer="Org", status="active"
    )

    response = shared_client.put(f"/events/{event['eventId']}", json={field: value})

    updated = json_of(response, 200)
    expected = {**event, field: value}
    if field == "capacity":
        expected["availableSpots"] = value
    unchanged = set(expected) - {"updatedAt"}
    assert {key: updated[key] for key in unchanged} == {key: expected[key] for key in unchanged}
    assert assert_utc_timestamp(updated["updatedAt"]) >= assert_utc_timestamp(event["updatedAt"])
    assert json_of(shared_client.get(f"/events/{event['eventId']}"), 200) == updated


def test_an_update_of_several_fields_changes_them_together(client: TestClient) -> None:
    event = create_event(client)
    changes = {"title": "New", "capacity": 3, "status": "draft", "organizer": "Team"}

    updated = json_of(client.put(f"/events/{event['eventId']}", json=changes), 200)

    assert {key: updated[key] for key in changes} == changes
    assert updated["availableSpots"] == 3
    assert updated["date"] == event["date"]
    assert updated["createdAt"] == event["createdAt"]


def test_an_update_with_an_empty_body_is_a_validation_error(shared_client: TestClient) -> None:
    event = create_event(shared_client)

    response = shared_client.put(f"/events/{event['eventId']}", json={})

    validation_fields(response)
    assert json_of(shared_client.get(f"/events/{event['eventId']}"), 200) == event


@pytest.mark.parametrize(
    "field",
    [
        "title",
        "description",
        "date",
        "location",
        "organizer",
        "status",
        "capacity",
        "waitlistEnabled",
    ],
)
def test_an_update_setting_a_field_to_null_is_a_validation_error(
    shared_client: TestClient, field: str
) -> None:
    event = create_event(shared_client, location="Here", organizer="Org")

    response = shared_client.put(f"/events/{event['eventId']}", json={field: None})

    assert validation_fields(response) == [field]
    assert json_of(shared_client.get(f"/events/{event['eventId']}"), 200) == event


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("registeredCount", 5),
        ("waitlist", ["someone"]),
        ("waitlistCount", 2),
        ("availableSpots", 99),
        ("eventId", "another-id"),
        ("createdAt", "2024-01-01T00:00:00Z"),
        ("unknown", "x"),
    ],
)
def test_an_update_naming_a_read_only_field_is_a_validation_error_and_changes_nothing(
    shared_client: TestClient, field: str, value: Any
) -> None:
    event = create_event(shared_client)

    response = shared_client.put(f"/events/{event['eventId']}", json={"title": "New", field: value})

    assert validation_fields(response) == [field]
    assert json_of(shared_client.get(f"/events/{event['eventId']}"), 200) == event


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", ""),
        ("title", "t" * 201),
        ("description", "d" * 1001),
        ("location", ""),
        ("organizer", "o" * 101),
        ("date", "15/12/2024"),
        ("capacity", 0),
        ("capacity", "5"),
        ("capacity", 2.5),
        ("status", "archived"),
        ("waitlistEnabled", "yes"),
    ],
)
def test_an_update_with_an_invalid_value_is_a_validation_error(
    shared_client: TestClient, field: str, value: Any
) -> None:
    event = create_event(shared_client)

    response = shared_client.put(f"/events/{event['eventId']}", json={field: value})

    assert validation_fields(response) == [field]


def test_updating_an_unknown_event_answers_404_event_not_found(client: TestClient) -> None:
    error_of(client.put("/events/no-such-event", json={"title": "X"}), 404, "EVENT_NOT_FOUND")


def test_lowering_capacity_below_the_registered_count_answers_409(client: TestClient) -> None:
    event = create_event(client, capacity=3)
    for _ in range(2):
        assert register(client, create_user(client), event["eventId"]).status_code == 201

    response = client.put(f"/events/{event['eventId']}", json={"capacity": 1})

    error_of(response, 409, "CAPACITY_BELOW_REGISTERED")
    current = json_of(client.get(f"/events/{event['eventId']}"), 200)
    assert (current["capacity"], current["registeredCount"]) == (3, 2)
    updated = json_of(client.put(f"/events/{event['eventId']}", json={"capacity": 2}), 200)
    assert (updated["capacity"], updated["availableSpots"]) == (2, 0)


def test_a_refused_capacity_change_leaves_the_other_fields_of_the_update_unapplied(
    client: TestClient,
) -> None:
    event = create_event(client, capacity=2, title="Before")
    for _ in range(2):
        register(client, create_user(client), event["eventId"])

    response = client.put(
        f"/events/{event['eventId']}", json={"title": "After", "status": "draft", "capacity": 1}
    )

    error_of(response, 409, "CAPACITY_BELOW_REGISTERED")
    current = json_of(client.get(f"/events/{event['eventId']}"), 200)
    assert (current["title"], current["status"], current["capacity"]) == ("Before", "active", 2)
    # The next command decides on the stored state, not on the refused one.
    later = json_of(client.put(f"/events/{event['eventId']}", json={"capacity": 3}), 200)
    assert (later["title"], later["status"], later["capacity"]) == ("Before", "active", 3)
    assert json_of(register(client, create_user(client), event["eventId"]), 201)["eventTitle"] == (
        "Before"
    )


def test_raising_capacity_promotes_the_waitlist_in_fifo_order(client: TestClient) -> None:
    event = create_event(client, capacity=1, waitlistEnabled=True)
    event_id = event["eventId"]
    users = [create_user(client) for _ in range(4)]
    for user in users:
        assert register(client, user, event_id).status_code == 201

    updated = json_of(client.put(f"/events/{event_id}", json={"capacity": 3}), 200)

    assert updated["registeredCount"] == 3
    assert updated["waitlist"] == [users[3]]
    assert updated["waitlistCount"] == 1
    assert updated["availableSpots"] == 0
    listing = json_of(client.get(f"/events/{event_id}/registrations"), 200)["registrations"]
    assert [(r["userId"], r["status"]) for r in listing] == [
        (users[0], "confirmed"),
        (users[1], "confirmed"),
        (users[2], "confirmed"),
        (users[3], "waitlist"),
    ]


def test_title_and_date_changes_show_in_every_registration_list(client: TestClient) -> None:
    event = create_event(client, capacity=1, waitlistEnabled=True, title="Old", date="2024-12-15")
    event_id = event["eventId"]
    confirmed, waiting = create_user(client), create_user(client)
    register(client, confirmed, event_id)
    register(client, waiting, event_id)
    other = create_event(client, title="Untouched")
    register(client, confirmed, other["eventId"])

    changes = {"title": "New title", "date": "2025-06-01T10:00:00Z"}
    json_of(client.put(f"/events/{event_id}", json=changes), 200)

    for user in (confirmed, waiting):
        mine = json_of(client.get(f"/users/{user}/registrations"), 200)["registrations"]
        by_event = {r["eventId"]: (r["eventTitle"], r["eventDate"]) for r in mine}
        assert by_event[event_id] == ("New title", "2025-06-01T10:00:00Z")
        one = json_of(client.get(f"/users/{user}/registrations/{event_id}"), 200)
        assert (one["eventTitle"], one["eventDate"]) == ("New title", "2025-06-01T10:00:00Z")
    listing = json_of(client.get(f"/events/{event_id}/registrations"), 200)["registrations"]
    assert {(r["eventTitle"], r["eventDate"]) for r in listing} == {
        ("New title", "2025-06-01T10:00:00Z")
    }
    mine = json_of(client.get(f"/users/{confirmed}/registrations"), 200)["registrations"]
    assert {r["eventId"]: r["eventTitle"] for r in mine}[other["eventId"]] == "Untouched"


# -- delete ---------------------------------------------------------------------------


def test_deleting_an_event_answers_204_and_then_it_is_gone(client: TestClient) -> None:
    event = create_event(client)
    event_id = event["eventId"]

    response = client.delete(f"/events/{event_id}")

    assert response.status_code == 204
    assert response.content == b""
    error_of(client.get(f"/events/{event_id}"), 404, "EVENT_NOT_FOUND")
    error_of(client.delete(f"/events/{event_id}"), 404, "EVENT_NOT_FOUND")
    error_of(client.put(f"/events/{event_id}", json={"title": "X"}), 404, "EVENT_NOT_FOUND")
    error_of(client.get(f"/events/{event_id}/registrations"), 404, "EVENT_NOT_FOUND")
    error_of(register(client, create_user(client), event_id), 404, "EVENT_NOT_FOUND")
    assert json_of(client.get("/events"), 200)["events"] == []


def test_deleting_an_unknown_event_answers_404_event_not_found(client: TestClient) -> None:
    error_of(client.delete("/events/no-such-event"), 404, "EVENT_NOT_FOUND")


def test_a_deleted_event_id_cannot_be_reused(client: TestClient) -> None:
    event = create_event(client)
    assert client.delete(f"/events/{event['eventId']}").status_code == 204

    response = client.post(
        "/events",
        json={"eventId": event["eventId"], "title": "T", "date": "2024-12-15", "capacity": 1},
    )

    error_of(response, 409, "DUPLICATE_EVENT")
    error_of(client.get(f"/events/{event['eventId']}"), 404, "EVENT_NOT_FOUND")


def test_deleting_an_event_with_a_confirmed_registration_answers_409(client: TestClient) -> None:
    event = create_event(client)
    register(client, create_user(client), event["eventId"])

    error_of(client.delete(f"/events/{event['eventId']}"), 409, "EVENT_HAS_REGISTRATIONS")
    assert json_of(client.get(f"/events/{event['eventId']}"), 200)["registeredCount"] == 1


def test_deleting_an_event_with_confirmed_and_waitlisted_registrations_answers_409(
    client: TestClient,
) -> None:
    event = create_event(client, capacity=1, waitlistEnabled=True)
    first, second = create_user(client), create_user(client)
    register(client, first, event["eventId"])
    register(client, second, event["eventId"])

    error_of(client.delete(f"/events/{event['eventId']}"), 409, "EVENT_HAS_REGISTRATIONS")

    # The confirmed seat is handed to the waitlisted user: still not deletable.
    assert leave(client, first, event["eventId"]).status_code == 204
    error_of(client.delete(f"/events/{event['eventId']}"), 409, "EVENT_HAS_REGISTRATIONS")
    assert leave(client, second, event["eventId"]).status_code == 204
    assert client.delete(f"/events/{event['eventId']}").status_code == 204


def test_an_event_whose_registrations_all_left_can_be_deleted(client: TestClient) -> None:
    event = create_event(client)
    user = create_user(client)
    register(client, user, event["eventId"])
    leave(client, user, event["eventId"])

    assert client.delete(f"/events/{event['eventId']}").status_code == 204
    assert json_of(client.get(f"/users/{user}/registrations"), 200)["registrations"] == []


# -- which statuses are open ------------------------------------------------------------


@pytest.mark.parametrize("status", ["active", "published"])
def test_registration_is_open_while_the_event_is_active_or_published(
    shared_client: TestClient, status: str
) -> None:
    event = create_event(shared_client, status=status)

    response = register(shared_client, create_user(shared_client), event["eventId"])

    assert json_of(response, 201)["status"] == "confirmed"


@pytest.mark.parametrize("status", ["draft", "cancelled", "completed"])
def test_registration_for_a_draft_cancelled_or_completed_event_answers_event_not_open(
    shared_client: TestClient, status: str
) -> None:
    event = create_event(shared_client, status=status)

    error_of(
        register(shared_client, create_user(shared_client), event["eventId"]), 409, "EVENT_NOT_OPEN"
    )
    assert json_of(shared_client.get(f"/events/{event['eventId']}"), 200)["registeredCount"] == 0


@pytest.mark.parametrize("status", ["draft", "cancelled", "completed"])
def test_an_event_closed_by_an_update_refuses_registrations_and_reopens_on_update(
    shared_client: TestClient, status: str
) -> None:
    event = create_event(shared_client)
    user = create_user(shared_client)
    json_of(shared_client.put(f"/events/{event['eventId']}", json={"status": status}), 200)

    error_of(register(shared_client, user, event["eventId"]), 409, "EVENT_NOT_OPEN")

    json_of(shared_client.put(f"/events/{event['eventId']}", json={"status": "published"}), 200)
    assert json_of(register(shared_client, user, event["eventId"]), 201)["status"] == "confirmed"
