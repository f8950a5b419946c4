"""Registering, leaving, and the two registration listings."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import assert_utc_timestamp, error_of, json_of, validation_fields
from tests.support import create_event, create_user, leave, register, unique


def statuses(client: TestClient, event_id: str) -> list[tuple[str, str, int | None]]:
    """(userId, status, waitlistPosition) of an event's registrations, in listed order."""
    body = json_of(client.get(f"/events/{event_id}/registrations", params={"limit": 500}), 200)
    return [(r["userId"], r["status"], r.get("waitlistPosition")) for r in body["registrations"]]


# -- POST ---------------------------------------------------------------------------------


def test_a_confirmed_registration_answers_201_with_its_fields_and_location(
    client: TestClient,
) -> None:
    user = create_user(client)
    event = create_event(client, title="Launch", date="2024-12-15T18:00:00Z")

    response = register(client, user, event["eventId"])

    body = json_of(response, 201)
    assert set(body) == {"userId", "eventId", "status", "registeredAt", "eventTitle", "eventDate"}
    assert body["userId"] == user
    assert body["eventId"] == event["eventId"]
    assert body["status"] == "confirmed"
    assert body["eventTitle"] == "Launch"
    assert body["eventDate"] == "2024-12-15T18:00:00Z"
    assert_utc_timestamp(body["registeredAt"])
    assert response.headers["Location"] == f"/users/{user}/registrations/{event['eventId']}"


def test_a_waitlisted_registration_carries_its_1_based_waitlist_position(
    client: TestClient,
) -> None:
    event = create_event(client, capacity=1, waitlistEnabled=True)
    register(client, create_user(client), event["eventId"])
    second, third = create_user(client), create_user(client)

    first_waiting = json_of(register(client, second, event["eventId"]), 201)
    second_waiting = json_of(register(client, third, event["eventId"]), 201)

    assert set(first_waiting) == {
        "userId",
        "eventId",
        "status",
        "registeredAt",
        "eventTitle",
        "eventDate",
        "waitlistPosition",
    }
    assert (first_waiting["status"], first_waiting["waitlistPosition"]) == ("waitlist", 1)
    assert (second_waiting["status"], second_waiting["waitlistPosition"]) == ("waitlist", 2)


@pytest.mark.parametrize("waitlisted", [False, True], ids=["confirmed", "waitlisted"])
def test_the_location_of_a_registration_answers_the_same_registration(
    client: TestClient, waitlisted: bool
) -> None:
    event = create_event(client, capacity=1, waitlistEnabled=True)
    if waitlisted:
        register(client, create_user(client), event["eventId"])
    created = register(client, create_user(client), event["eventId"])

    fetched = client.get(created.headers["Location"])

    assert json_of(fetched, 200) == json_of(created, 201)


def test_getting_a_registration_that_does_not_exist_answers_404(client: TestClient) -> None:
    user = create_user(client)
    event = create_event(client)

    error_of(
        client.get(f"/users/{user}/registrations/{event['eventId']}"),
        404,
        "REGISTRATION_NOT_FOUND",
    )
    error_of(client.get(f"/users/ghost/registrations/{event['eventId']}"), 404, "USER_NOT_FOUND")


def test_getting_and_leaving_a_registration_name_the_same_missing_thing(
    client: TestClient,
) -> None:
    """GET and DELETE of one registration check the user, then the event, then
    the registration, and answer the same code for the same miss."""
    user = create_user(client)
    event = create_event(client)["eventId"]
    for path, code in [
        (f"/users/ghost/registrations/{event}", "USER_NOT_FOUND"),
        (f"/users/{user}/registrations/no-such-event", "EVENT_NOT_FOUND"),
        (f"/users/{user}/registrations/{event}", "REGISTRATION_NOT_FOUND"),
    ]:
        error_of(client.get(path), 404, code)
        error_of(client.delete(path), 404, code)


def test_a_full_event_without_waitlist_answers_event_full(client: TestClient) -> None:
    event = create_event(client, capacity=1)
    register(client, create_user(client), event["eventId"])

    error_of(register(client, create_user(client), event["eventId"]), 409, "EVENT_FULL")
    current = json_of(client.get(f"/events/{event['eventId']}"), 200)
    assert (current["registeredCount"], current["waitlistCount"]) == (1, 0)


def test_no_queue_jumping_a_freed_seat_goes_to_the_waitlist_not_a_newcomer(
    client: TestClient,
) -> None:
    event = create_event(client, capacity=1, waitlistEnabled=True)
    event_id = event["eventId"]
    a, b, c, d = (create_user(client) for _ in range(4))
    for user in (a, b, c):
        register(client, user, event_id)
    leave(client, a, event_id)

    newcomer = json_of(register(client, d, event_id), 201)

    assert (newcomer["status"], newcomer["waitlistPosition"]) == ("waitlist", 2)
    assert statuses(client, event_id) == [
        (b, "confirmed", None),
        (c, "waitlist", 1),
        (d, "waitlist", 2),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"eventId": ""},
        {"eventId": "a b"},
        {"eventId": 5},
        {"eventId": None},
        {"eventId": "e1", "extra": True},
    ],
    ids=["empty", "empty-id", "space", "number", "null", "extra-field"],
)
def test_an_invalid_registration_body_is_a_validation_error(
    shared_client: TestClient, body: dict[str, Any]
) -> None:
    response = shared_client.post(f"/users/{create_user(shared_client)}/registrations", json=body)

    assert response.status_code != 422
    validation_fields(response)


# -- the order of the checks -------------------------------------------------------------


def test_validation_is_checked_before_an_unknown_user(client: TestClient) -> None:
    response = client.post("/users/ghost/registrations", json={"eventId": "no such event"})

    validation_fields(response)


def test_an_invalid_user_id_in_the_path_is_a_validation_error(client: TestClient) -> None:
    event = create_event(client)

    response = register(client, "a" * 101, event["eventId"])

    assert validation_fields(response) == ["userId"]


def test_an_unknown_user_is_checked_before_an_unknown_event(client: TestClient) -> None:
    error_of(register(client, "ghost", "no-such-event"), 404, "USER_NOT_FOUND")


def test_an_unknown_user_is_checked_before_a_closed_event(client: TestClient) -> None:
    event = create_event(client, status="cancelled")

    error_of(register(client, "ghost", event["eventId"]), 404, "USER_NOT_FOUND")


def test_an_unknown_event_answers_event_not_found(client: TestClient) -> None:
    error_of(register(client, create_user(client), "no-such-event"), 404, "EVENT_NOT_FOUND")


def test_a_deleted_closed_event_is_not_found_rather_than_not_open(client: TestClient) -> None:
    event = create_event(client, status="draft")
    assert client.delete(f"/events/{event['eventId']}").status_code == 204

    error_of(register(client, create_user(client), event["eventId"]), 404, "EVENT_NOT_FOUND")


def test_a_closed_event_is_checked_before_an_existing_registration(client: TestClient) -> None:
    event = create_event(client)
    user = create_user(client)
    register(client, user, event["eventId"])
    json_of(client.put(f"/events/{event['eventId']}", json={"status": "cancelled"}), 200)

    error_of(register(client, user, event["eventId"]), 409, "EVENT_NOT_OPEN")


def test_a_closed_event_is_checked_before_a_full_one(client: TestClient) -> None:
    event = create_event(client, capacity=1)
    register(client, create_user(client), event["eventId"])
    json_of(client.put(f"/events/{event['eventId']}", json={"status": "completed"}), 200)

    error_of(register(client, create_user(client), event["eventId"]), 409, "EVENT_NOT_OPEN")


def test_an_existing_confirmed_registration_is_checked_before_a_full_event(
    client: TestClient,
) -> None:
    event = create_event(client, capacity=1)
    user = create_user(client)
    register(client, user, event["eventId"])

    error_of(register(client, user, event["eventId"]), 409, "ALREADY_REGISTERED")


def test_an_existing_waitlist_place_is_checked_before_a_full_event(client: TestClient) -> None:
    event = create_event(client, capacity=1, waitlistEnabled=True)
    register(client, create_user(client), event["eventId"])
    user = create_user(client)
    register(client, user, event["eventId"])
    json_of(client.put(f"/events/{event['eventId']}", json={"waitlistEnabled": False}), 200)

    error_of(register(client, user, event["eventId"]), 409, "ALREADY_ON_WAITLIST")
    error_of(register(client, create_user(client), event["eventId"]), 409, "EVENT_FULL")


def test_registering_twice_while_seats_remain_answers_already_registered(
    client: TestClient,
) -> None:
    event = create_event(client, capacity=5)
    user = create_user(client)
    register(client, user, event["eventId"])

    error_of(register(client, user, event["eventId"]), 409, "ALREADY_REGISTERED")
    assert json_of(client.get(f"/events/{event['eventId']}"), 200)["registeredCount"] == 1


def test_joining_the_waitlist_twice_answers_already_on_waitlist(client: TestClient) -> None:
    event = create_event(client, capacity=1, waitlistEnabled=True)
    register(client, create_user(client), event["eventId"])
    user = create_user(client)
    register(client, user, event["eventId"])

    error_of(register(client, user, event["eventId"]), 409, "ALREADY_ON_WAITLIST")
    assert json_of(client.get(f"/events/{event['eventId']}"), 200)["waitlist"] == [user]


# -- DELETE -------------------------------------------------------------------------------


def test_leaving_answers_204_and_frees_the_seat(client: TestClient) -> None:
    event = create_event(client, capacity=2)
    user = create_user(client)
    register(client, user, event["eventId"])

    response = leave(client, user, event["eventId"])

    assert response.status_code == 204
    assert response.content == b""
    current = json_of(client.get(f"/events/{event['eventId']}"), 200)
    assert (current["registeredCount"], current["availableSpots"]) == (0, 2)
    error_of(
        client.get(f"/users/{user}/registrations/{event['eventId']}"),
        404,
        "REGISTRATION_NOT_FOUND",
    )


def test_leaving_for_an_unknown_user_answers_user_not_found(client: TestClient) -> None:
    event = create_event(client)

    error_of(leave(client, "ghost", event["eventId"]), 404, "USER_NOT_FOUND")
    error_of(leave(client, "ghost", "no-such-event"), 404, "USER_NOT_FOUND")


def test_leaving_an_unknown_event_answers_event_not_found(client: TestClient) -> None:
    error_of(leave(client, create_user(client), "no-such-event"), 404, "EVENT_NOT_FOUND")


def test_leaving_an_event_one_is_not_registered_for_answers_registration_not_found(
    client: TestClient,
) -> None:
    event = create_event(client)
    user = create_user(client)

    error_of(leave(client, user, event["eventId"]), 404, "REGISTRATION_NOT_FOUND")
    register(client, user, event["eventId"])
    assert leave(client, user, event["eventId"]).status_code == 204
    error_of(leave(client, user, event["eventId"]), 404, "REGISTRATION_NOT_FOUND")


def test_a_confirmed_user_leaving_promotes_the_head_of_the_waitlist(client: TestClient) -> None:
    event = create_event(client, capacity=2, waitlistEnabled=True)
    event_id = event["eventId"]
    a, b, c, d = (create_user(client) for _ in range(4))
    for user in (a, b, c, d):
        register(client, user, event_id)

    assert leave(client, a, event_id).status_code == 204

    assert statuses(client, event_id) == [
        (b, "confirmed", None),
        (c, "confirmed", None),
        (d, "waitlist", 1),
    ]
    promoted = json_of(client.get(f"/users/{c}/registrations/{event_id}"), 200)
    assert promoted["status"] == "confirmed"
    assert "waitlistPosition" not in promoted
    current = json_of(client.get(f"/events/{event_id}"), 200)
    assert (current["registeredCount"], current["waitlist"]) == (2, [d])


def test_a_waitlisted_user_leaving_keeps_the_others_order(client: TestClient) -> None:
    event = create_event(client, capacity=1, waitlistEnabled=True)
    event_id = event["eventId"]
    a, b, c, d = (create_user(client) for _ in range(4))
    for user in (a, b, c, d):
        register(client, user, event_id)

    assert leave(client, c, event_id).status_code == 204

    assert statuses(client, event_id) == [
        (a, "confirmed", None),
        (b, "waitlist", 1),
        (d, "waitlist", 2),
    ]
    assert json_of(client.get(f"/users/{d}/registrations/{event_id}"), 200)["waitlistPosition"] == 2
    assert json_of(client.get(f"/events/{event_id}"), 200)["waitlist"] == [b, d]


def test_a_user_who_left_registers_again_as_a_newcomer(client: TestClient) -> None:
    event = create_event(client, capacity=1, waitlistEnabled=True)
    event_id = event["eventId"]
    a, b, c = (create_user(client) for _ in range(3))
    register(client, a, event_id)
    register(client, b, event_id)
    register(client, c, event_id)
    leave(client, b, event_id)

    again = json_of(register(client, b, event_id), 201)

    assert (again["status"], again["waitlistPosition"]) == ("waitlist", 2)
    assert json_of(client.get(f"/events/{event_id}"), 200)["waitlist"] == [c, b]


def test_a_confirmed_user_who_left_and_came_back_is_listed_after_the_others(
    client: TestClient,
) -> None:
    event = create_event(client, capacity=3)
    event_id = event["eventId"]
    a, b, c = (create_user(client) for _ in range(3))
    for user in (a, b, c):
        register(client, user, event_id)
    leave(client, a, event_id)

    assert json_of(register(client, a, event_id), 201)["status"] == "confirmed"

    assert statuses(client, event_id) == [
        (b, "confirmed", None),
        (c, "confirmed", None),
        (a, "confirmed", None),
    ]


# -- GET /users/{userId}/registrations -----------------------------------------------------


def test_a_user_without_registrations_has_an_empty_list(client: TestClient) -> None:
    user = create_user(client)

    assert json_of(client.get(f"/users/{user}/registrations"), 200) == {
        "registrations": [],
        "total": 0,
        "nextToken": None,
    }


def test_listing_the_registrations_of_an_unknown_user_answers_404(client: TestClient) -> None:
    error_of(client.get("/users/ghost/registrations"), 404, "USER_NOT_FOUND")


def test_a_users_list_holds_confirmed_and_waitlisted_but_not_left_registrations(
    client: TestClient,
) -> None:
    user = create_user(client)
    confirmed = create_event(client, title="Confirmed", date="2024-01-01")
    full = create_event(client, capacity=1, waitlistEnabled=True, title="Full", date="2024-02-02")
    register(client, create_user(client), full["eventId"])
    left = create_event(client, title="Left")
    for event in (confirmed, full, left):
        assert register(client, user, event["eventId"]).status_code == 201
    leave(client, user, left["eventId"])

    body = json_of(client.get(f"/users/{user}/registrations"), 200)

    assert set(body) == {"registrations", "total", "nextToken"}
    assert body["total"] == 2
    by_event = {r["eventId"]: r for r in body["registrations"]}
    assert set(by_event) == {confirmed["eventId"], full["eventId"]}
    assert by_event[confirmed["eventId"]]["status"] == "confirmed"
    assert by_event[confirmed["eventId"]]["eventTitle"] == "Confirmed"
    assert by_event[confirmed["eventId"]]["eventDate"] == "2024-01-01"
    assert "waitlistPosition" not in by_event[confirmed["eventId"]]
    assert by_event[full["eventId"]]["status"] == "waitlist"
    assert by_event[full["eventId"]]["waitlistPosition"] == 1
    assert (by_event[full["eventId"]]["eventTitle"], by_event[full["eventId"]]["eventDate"]) == (
        "Full",
        "2024-02-02",
    )
    for registration in body["registrations"]:
        assert registration["userId"] == user
        assert_utc_timestamp(registration["registeredAt"])


def test_a_users_list_pages_with_next_token(client: TestClient) -> None:
    user = create_user(client)
    events = {create_event(client)["eventId"] for _ in range(5)}
    for event_id in events:
        register(client, user, event_id)

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        body = json_of(client.get(f"/users/{user}/registrations", params=params), 200)
        assert body["total"] == 5
        seen.extend(r["eventId"] for r in body["registrations"])
        if body["nextToken"] is None:
            break
        params = {"limit": 2, "nextToken": body["nextToken"]}

    assert sorted(seen) == sorted(events)


# -- GET /events/{eventId}/registrations -----------------------------------------------------


def test_an_event_without_registrations_has_an_empty_list(client: TestClient) -> None:
    event = create_event(client)

    assert json_of(client.get(f"/events/{event['eventId']}/registrations"), 200) == {
        "registrations": [],
        "total": 0,
        "nextToken": None,
    }


def test_listing_the_registrations_of_an_unknown_event_answers_404(client: TestClient) -> None:
    error_of(client.get("/events/no-such-event/registrations"), 404, "EVENT_NOT_FOUND")


def test_an_events_list_pages_across_the_confirmed_and_waitlist_boundary(
    client: TestClient,
) -> None:
    event = create_event(client, capacity=3, waitlistEnabled=True)
    event_id = event["eventId"]
    users = [create_user(client, unique(f"u{n}")) for n in range(7)]
    for user in users:
        assert register(client, user, event_id).status_code == 201

    pages: list[list[tuple[str, str, int | None]]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        body = json_of(client.get(f"/events/{event_id}/registrations", params=params), 200)
        assert body["total"] == 7
        pages.append(
            [(r["userId"], r["status"], r.get("waitlistPosition")) for r in body["registrations"]]
        )
        if body["nextToken"] is None:
            break
        params = {"limit": 2, "nextToken": body["nextToken"]}

    assert pages == [
        [(users[0], "confirmed", None), (users[1], "confirmed", None)],
        [(users[2], "confirmed", None), (users[3], "waitlist", 1)],
        [(users[4], "waitlist", 2), (users[5], "waitlist", 3)],
        [(users[6], "waitlist", 4)],
    ]


@pytest.mark.parametrize("limit", [1, 3, 4, 7, 50])
def test_every_page_size_lists_each_registration_exactly_once_in_order(
    client: TestClient, limit: int
) -> None:
    event = create_event(client, capacity=3, waitlistEnabled=True)
    event_id = event["eventId"]
    users = [create_user(client) for _ in range(7)]
    for user in users:
        register(client, user, event_id)

    seen: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        body = json_of(client.get(f"/events/{event_id}/registrations", params=params), 200)
        assert len(body["registrations"]) <= limit
        seen.extend(r["userId"] for r in body["registrations"])
        if body["nextToken"] is None:
            break
        params = {"limit": limit, "nextToken": body["nextToken"]}

    assert seen == users


@pytest.mark.parametrize("path", ["/events/{event}/registrations", "/users/{user}/registrations"])
@pytest.mark.parametrize(
    ("param", "value"),
    [("limit", "0"), ("limit", "501"), ("limit", "abc"), ("nextToken", "garbage!!")],
)
def test_registration_lists_refuse_bad_paging_parameters(
    shared_client: TestClient, path: str, param: str, value: str
) -> None:
    user = create_user(shared_client)
    event = create_event(shared_client)
    register(shared_client, user, event["eventId"])

    response = shared_client.get(
        path.format(event=event["eventId"], user=user), params={param: value}
    )

    assert response.status_code != 422
    assert validation_fields(response) == [param]


def test_every_lists_last_page_says_next_token_null_and_a_seat_holder_has_no_place_in_line(
    client: TestClient,
) -> None:
    """One shape for every list: ``nextToken`` is there on each page, null on
    the last; ``waitlistPosition`` only on a waitlisted registration."""
    event = create_event(client, capacity=1, waitlistEnabled=True)["eventId"]
    seated, waiting = create_user(client), create_user(client)
    register(client, seated, event)
    register(client, waiting, event)

    for path in ("/events", f"/users/{seated}/registrations", f"/events/{event}/registrations"):
        body = json_of(client.get(path, params={"limit": 500}), 200)
        assert body["nextToken"] is None, path
    listed = json_of(client.get(f"/events/{event}/registrations"), 200)["registrations"]
    by_user = {r["userId"]: r for r in listed}
    assert "waitlistPosition" not in by_user[seated]
    assert by_user[waiting]["waitlistPosition"] == 1
