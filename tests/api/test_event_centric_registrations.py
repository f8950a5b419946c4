"""The original API's event-centric shape of registering and leaving.

``POST /events/{eventId}/registrations`` with ``{"userId"}`` and
``DELETE /events/{eventId}/registrations/{userId}`` answer exactly as
``POST /users/{userId}/registrations`` with ``{"eventId"}`` and
``DELETE /users/{userId}/registrations/{eventId}`` do. Each outcome is set up twice,
in two worlds alike but for their ids, and asked for once in each shape: the
answers (and what the event looks like afterwards), with the ids written as
placeholders, must be equal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import assert_utc_timestamp, error_of, json_of, validation_fields
from tests.support import create_event, create_user, register, unique

SHAPES = ("user-centric", "event-centric")


def register_via(client: TestClient, shape: str, user_id: str, event_id: str, **kw: Any) -> Any:
    if shape == "user-centric":
        return client.post(f"/users/{user_id}/registrations", json={"eventId": event_id}, **kw)
    return client.post(f"/events/{event_id}/registrations", json={"userId": user_id}, **kw)


def leave_via(client: TestClient, shape: str, user_id: str, event_id: str, **kw: Any) -> Any:
    if shape == "user-centric":
        return client.delete(f"/users/{user_id}/registrations/{event_id}", **kw)
    return client.delete(f"/events/{event_id}/registrations/{user_id}", **kw)


@dataclass(frozen=True)
class World:
    """A user and an event set up for one outcome; ``others`` are the other users in it."""

    user_id: str
    event_id: str
    others: tuple[str, ...] = ()

    def in_placeholders(self, text: str) -> str:
        """``text`` with this world's ids written as ``{userId}``, ``{eventId}``, ``{other1}``..."""
        for n, other in enumerate(self.others, 1):
            text = text.replace(other, f"{{other{n}}}")
        return text.replace(self.user_id, "{userId}").replace(self.event_id, "{eventId}")

    def answer(self, response: httpx.Response) -> dict[str, Any]:
        """Status, Location and body of an answer, in placeholders, without what differs
        between any two requests (their time, request id and path)."""
        text = self.in_placeholders(response.text)
        body = json.loads(text) if text else None
        if isinstance(body, dict) and "registeredAt" in body:
            assert_utc_timestamp(body.pop("registeredAt"))
        if isinstance(body, dict) and "error" in body:
            for varies in ("timestamp", "requestId", "path"):
                body["error"].pop(varies)
        location = response.headers.get("Location")
        return {
            "status": response.status_code,
            "location": location and self.in_placeholders(location),
            "body": body,
        }

    def event_now(self, client: TestClient) -> dict[str, Any] | None:
        """The event and its listed registrations, in placeholders (None when unknown)."""
        got = client.get(f"/events/{self.event_id}")
        if got.status_code == 404:
            return None
        event = json.loads(self.in_placeholders(got.text))
        for varies in ("createdAt", "updatedAt"):
            assert_utc_timestamp(event.pop(varies))
        listed = client.get(f"/events/{self.event_id}/registrations", params={"limit": 500})
        registrations = [
            (self.in_placeholders(r["userId"]), r["status"], r.get("waitlistPosition"))
            for r in json_of(listed, 200)["registrations"]
        ]
        return {"event": event, "registrations": registrations}


# -- the worlds, one per outcome --------------------------------------------------------------


def _seat_free(client: TestClient) -> World:
    return World(create_user(client), create_event(client, title="T", capacity=1)["eventId"])


def _seat_taken_with_waitlist(client: TestClient) -> World:
    event_id = create_event(client, title="T", capacity=1, waitlistEnabled=True)["eventId"]
    holder = create_user(client)
    register(client, holder, event_id)
    return World(create_user(client), event_id, (holder,))


def _unknown_user(client: TestClient) -> World:
    return World(unique("ghost"), create_event(client, title="T")["eventId"])


def _unknown_event(client: TestClient) -> World:
    return World(create_user(client), unique("no-event"))


def _closed_event(client: TestClient) -> World:
    return World(
        create_user(client), create_event(client, title="T", status="cancelled")["eventId"]
    )


def _already_registered(client: TestClient) -> World:
    world = _seat_free(client)
    register(client, world.user_id, world.event_id)
    return world


def _already_waiting(client: TestClient) -> World:
    world = _seat_taken_with_waitlist(client)
    register(client, world.user_id, world.event_id)
    return world


def _full_without_waitlist(client: TestClient) -> World:
    event_id = create_event(client, title="T", capacity=1)["eventId"]
    holder = create_user(client)
    register(client, holder, event_id)
    return World(create_user(client), event_id, (holder,))


def _confirmed_with_two_waiting(client: TestClient) -> World:
    event_id = create_event(client, title="T", capacity=1, waitlistEnabled=True)["eventId"]
    user_id, head, second = create_user(client), create_user(client), create_user(client)
    for who in (user_id, head, second):
        register(client, who, event_id)
    return World(user_id, event_id, (head, second))


# outcome: (world, status, the body's status or error code)
Outcomes = dict[str, tuple[Callable[[TestClient], World], int, str | None]]
REGISTERING: Outcomes = {
    "confirmed": (_seat_free, 201, "confirmed"),
    "waitlisted": (_seat_taken_with_waitlist, 201, "waitlist"),
    "unknown-user": (_unknown_user, 404, "USER_NOT_FOUND"),
    "unknown-event": (_unknown_event, 404, "EVENT_NOT_FOUND"),
    "closed-event": (_closed_event, 409, "EVENT_NOT_OPEN"),
    "already-registered": (_already_registered, 409, "ALREADY_REGISTERED"),
    "already-waiting": (_already_waiting, 409, "ALREADY_ON_WAITLIST"),
    "full": (_full_without_waitlist, 409, "EVENT_FULL"),
}
LEAVING: Outcomes = {
    "promotes-the-head": (_confirmed_with_two_waiting, 204, None),
    "unknown-user": (_unknown_user, 404, "USER_NOT_FOUND"),
    "unknown-event": (_unknown_event, 404, "EVENT_NOT_FOUND"),
    "not-registered": (_seat_free, 404, "REGISTRATION_NOT_FOUND"),
}


def check_outcome(response: httpx.Response, status: int, code: str | None) -> None:
    if status >= 400:
        error_of(response, status, code or "")
    elif status == 204:
        assert response.status_code == 204, response.text
        assert response.content == b""
    else:
        assert json_of(response, status)["status"] == code


OUTCOMES = {f"registering, {name}": (register_via, *case) for name, case in REGISTERING.items()} | {
    f"leaving, {name}": (leave_via, *case) for name, case in LEAVING.items()
}


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_each_outcome_answers_and_changes_alike_through_both_shapes(
    shared_client: TestClient, outcome: str
) -> None:
    via, set_up, status, code = OUTCOMES[outcome]
    results = []
    for shape in SHAPES:
        world = set_up(shared_client)
        response = via(shared_client, shape, world.user_id, world.event_id)
        check_outcome(response, status, code)
        results.append((world.answer(response), world.event_now(shared_client)))

    by_user, by_event = results
    assert by_event == by_user


@pytest.mark.parametrize("shape", SHAPES)
def test_a_confirmed_user_leaving_through_either_shape_promotes_the_head_of_the_waitlist(
    shared_client: TestClient, shape: str
) -> None:
    world = _confirmed_with_two_waiting(shared_client)
    head = world.others[0]

    assert leave_via(shared_client, shape, world.user_id, world.event_id).status_code == 204

    listed = world.event_now(shared_client)
    assert listed is not None
    assert listed["registrations"] == [("{other1}", "confirmed", None), ("{other2}", "waitlist", 1)]
    promoted = json_of(shared_client.get(f"/users/{head}/registrations/{world.event_id}"), 200)
    assert promoted["status"] == "confirmed"


def test_the_event_centric_location_answers_the_registration_it_created(
    shared_client: TestClient,
) -> None:
    world = _seat_free(shared_client)

    created = register_via(shared_client, "event-centric", world.user_id, world.event_id)

    assert created.headers["Location"] == f"/users/{world.user_id}/registrations/{world.event_id}"
    assert json_of(shared_client.get(created.headers["Location"]), 200) == json_of(created, 201)


# -- Idempotency-Key ----------------------------------------------------------------------


def test_a_keyed_event_centric_registration_retried_is_replayed_and_registers_once(
    shared_client: TestClient,
) -> None:
    world = _seat_taken_with_waitlist(shared_client)
    key = {"Idempotency-Key": unique("key")}

    first = register_via(shared_client, "event-centric", world.user_id, world.event_id, headers=key)
    again = register_via(shared_client, "event-centric", world.user_id, world.event_id, headers=key)

    assert json_of(again, 201) == json_of(first, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    event = json_of(shared_client.get(f"/events/{world.event_id}"), 200)
    assert event["waitlist"] == [world.user_id]


def test_a_keyed_event_centric_leave_retried_is_replayed_and_promotes_once(
    shared_client: TestClient,
) -> None:
    world = _confirmed_with_two_waiting(shared_client)
    second = world.others[1]
    key = {"Idempotency-Key": unique("key")}

    first = leave_via(shared_client, "event-centric", world.user_id, world.event_id, headers=key)
    again = leave_via(shared_client, "event-centric", world.user_id, world.event_id, headers=key)

    assert first.status_code == again.status_code == 204
    assert again.headers["Idempotent-Replayed"] == "true"
    event = json_of(shared_client.get(f"/events/{world.event_id}"), 200)
    assert (event["registeredCount"], event["waitlist"]) == (1, [second])
    # Without the key the retry is the domain's refusal, not the first answer.
    error_of(
        leave_via(shared_client, "event-centric", world.user_id, world.event_id),
        404,
        "REGISTRATION_NOT_FOUND",
    )


def test_a_key_used_for_one_event_centric_registration_is_refused_for_another(
    shared_client: TestClient,
) -> None:
    world = _seat_free(shared_client)
    other = create_user(shared_client)
    key = {"Idempotency-Key": unique("key")}
    register_via(shared_client, "event-centric", world.user_id, world.event_id, headers=key)

    refused = register_via(shared_client, "event-centric", other, world.event_id, headers=key)

    error_of(refused, 422, "IDEMPOTENCY_KEY_REUSED")
    error_of(
        shared_client.get(f"/users/{other}/registrations/{world.event_id}"),
        404,
        "REGISTRATION_NOT_FOUND",
    )


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "{}",
        '{"userId": ""}',
        '{"userId": "a b"}',
        '{"userId": "' + "a" * 101 + '"}',
        '{"userId": 5}',
        '{"userId": null}',
        '{"userId": "\\ud800"}',
    ],
    ids=["missing", "empty", "space", "too-long", "number", "null", "lone-surrogate"],
)
def test_a_missing_or_malformed_user_id_in_the_body_is_a_validation_error_naming_it(
    shared_client: TestClient, body: str
) -> None:
    event_id = create_event(shared_client)["eventId"]

    response = shared_client.post(
        f"/events/{event_id}/registrations",
        content=body,
        headers={"Content-Type": "application/json"},
    )

    assert validation_fields(response) == ["userId"]
    assert json_of(shared_client.get(f"/events/{event_id}"), 200)["registeredCount"] == 0


def test_an_unknown_field_beside_the_user_id_is_a_validation_error(
    shared_client: TestClient,
) -> None:
    world = _seat_free(shared_client)

    response = shared_client.post(
        f"/events/{world.event_id}/registrations",
        json={"userId": world.user_id, "eventId": world.event_id},
    )

    assert validation_fields(response) == ["eventId"]
    error_of(
        shared_client.get(f"/users/{world.user_id}/registrations/{world.event_id}"),
        404,
        "REGISTRATION_NOT_FOUND",
    )


def test_an_event_centric_registration_without_a_body_is_a_validation_error(
    shared_client: TestClient,
) -> None:
    response = shared_client.post(f"/events/{unique('event')}/registrations")

    validation_fields(response)


def test_validation_is_checked_before_an_unknown_event_or_user(shared_client: TestClient) -> None:
    response = shared_client.post("/events/no-such-event/registrations", json={"userId": "a b"})

    assert validation_fields(response) == ["userId"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/events/{event}/registrations/a%20b", "userId"),
        ("/events/{event}/registrations/" + "a" * 101, "userId"),
        ("/events/a%20b/registrations/{user}", "eventId"),
    ],
    ids=["user-space", "user-too-long", "event-space"],
)
def test_a_malformed_id_in_the_event_centric_delete_path_is_a_validation_error_naming_it(
    shared_client: TestClient, path: str, field: str
) -> None:
    world = _already_registered(shared_client)

    response = shared_client.delete(path.format(event=world.event_id, user=world.user_id))

    assert validation_fields(response) == [field]
    assert json_of(shared_client.get(f"/events/{world.event_id}"), 200)["registeredCount"] == 1


def test_a_malformed_event_id_in_the_event_centric_post_path_is_a_validation_error(
    shared_client: TestClient,
) -> None:
    response = shared_client.post("/events/a%20b/registrations", json={"userId": "alice"})

    assert validation_fields(response) == ["eventId"]
