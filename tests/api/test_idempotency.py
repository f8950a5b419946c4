"""Idempotency-Key: a retried write is answered as the first time, and happens once."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from api import idempotency
from api.idempotency import fingerprint
from api.main import create_app
from infra.settings import Settings
from tests.api.conftest import ADMIN_KEY, CLIENT_KEY, bearer
from tests.api.helpers import error_of, json_of, validation_fields
from tests.support import create_event, create_user, unique


def keyed(key: str, **headers: str) -> dict[str, str]:
    return {"Idempotency-Key": key, **headers}


def test_a_retry_replays_the_first_answer_and_has_no_second_effect(
    keyed_client: TestClient,
) -> None:
    key = unique("key")
    body = {"title": "Retried", "date": "2025-03-01", "capacity": 5}
    first = keyed_client.post("/events", json=body, headers=keyed(key))
    again = keyed_client.post("/events", json=body, headers=keyed(key))
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["X-Request-ID"] != first.headers["X-Request-ID"]
    # No eventId in the body: without the key, the retry would have made a second event.
    titled = [
        e
        for e in json_of(keyed_client.get("/events?limit=500"), 200)["events"]
        if e["eventId"] == first.json()["eventId"]
    ]
    assert len(titled) == 1


def test_the_same_key_with_another_request_is_refused(keyed_client: TestClient) -> None:
    key = unique("key")
    user_id = unique("user")
    keyed_client.post("/users", json={"userId": user_id, "name": "A"}, headers=keyed(key))
    other_body = keyed_client.post(
        "/users", json={"userId": user_id, "name": "B"}, headers=keyed(key)
    )
    error_of(other_body, 422, "IDEMPOTENCY_KEY_REUSED")
    other_path = keyed_client.post(
        f"/users/{user_id}/registrations", json={"eventId": "x"}, headers=keyed(key)
    )
    error_of(other_path, 422, "IDEMPOTENCY_KEY_REUSED")
    assert json_of(keyed_client.get(f"/users/{user_id}"), 200)["name"] == "A"


def test_a_refusal_the_domain_decided_is_replayed(keyed_client: TestClient) -> None:
    event_id = create_event(keyed_client, capacity=1, waitlistEnabled=False)["eventId"]
    seated, late = create_user(keyed_client), create_user(keyed_client)
    keyed_client.post(f"/users/{seated}/registrations", json={"eventId": event_id})
    key = unique("key")
    path = f"/users/{late}/registrations"
    full = keyed_client.post(path, json={"eventId": event_id}, headers=keyed(key))
    error_of(full, 409, "EVENT_FULL")
    keyed_client.put(f"/events/{event_id}", json={"capacity": 2})
    again = keyed_client.post(path, json={"eventId": event_id}, headers=keyed(key))
    assert (again.status_code, again.json()) == (409, full.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert keyed_client.post(path, json={"eventId": event_id}).status_code == 201


def test_a_validation_error_is_not_kept_so_a_corrected_retry_runs(
    keyed_client: TestClient,
) -> None:
    key = unique("key")
    user_id = unique("user")
    bad = keyed_client.post("/users", json={"userId": user_id}, headers=keyed(key))
    assert "name" in validation_fields(bad)
    fixed = keyed_client.post("/users", json={"userId": user_id, "name": "Ok"}, headers=keyed(key))
    assert fixed.status_code == 201
    assert "Idempotent-Replayed" not in fixed.headers


def test_a_deletion_is_replayed_not_refused_as_already_gone(keyed_client: TestClient) -> None:
    event_id = create_event(keyed_client)["eventId"]
    key = unique("key")
    first = keyed_client.delete(f"/events/{event_id}", headers=keyed(key))
    again = keyed_client.delete(f"/events/{event_id}", headers=keyed(key))
    assert (first.status_code, again.status_code) == (204, 204)
    assert again.headers["Idempotent-Replayed"] == "true"
    error_of(keyed_client.delete(f"/events/{event_id}"), 404, "EVENT_NOT_FOUND")


def test_keys_are_scoped_to_the_caller(keyed_client: TestClient) -> None:
    key = unique("key")
    user_id = unique("user")
    body = {"userId": user_id, "name": "Scoped"}
    mine = keyed_client.post("/users", json=body, headers=keyed(key, **bearer(CLIENT_KEY)))
    theirs = keyed_client.post("/users", json=body, headers=keyed(key, **bearer(ADMIN_KEY)))
    anonymous = keyed_client.post("/users", json=body, headers=keyed(key))
    assert mine.status_code == 201
    error_of(theirs, 409, "DUPLICATE_USER")  # ran for this caller: not a replay
    assert "Idempotent-Replayed" not in theirs.headers
    error_of(anonymous, 409, "DUPLICATE_USER")
    replay = keyed_client.post("/users", json=body, headers=keyed(key, **bearer(CLIENT_KEY)))
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (201, "true")


def test_a_retry_while_the_first_runs_is_told_to_wait(keyed_client: TestClient) -> None:
    key = unique("key")
    body = b'{"userId": "someone-else", "name": "Busy"}'
    store = keyed_client.app.state.container.idempotency  # type: ignore[attr-defined]
    claim = store.claim("anonymous", key, fingerprint("POST", "/users", body), lease_seconds=60)
    assert claim.outcome == "new"
    busy = keyed_client.post(
        "/users", content=body, headers=keyed(key, **{"Content-Type": "application/json"})
    )
    error_of(busy, 409, "REQUEST_IN_PROGRESS")
    assert busy.headers["Retry-After"] == "1"


def test_a_claim_whose_request_died_is_taken_over_after_its_lease(
    keyed_client: TestClient,
) -> None:
    store = keyed_client.app.state.container.idempotency  # type: ignore[attr-defined]
    key = unique("key")
    assert store.claim("anonymous", key, "f", lease_seconds=0).outcome == "new"
    assert store.claim("anonymous", key, "f", lease_seconds=60).outcome == "new"
    assert store.claim("anonymous", key, "f", lease_seconds=60).outcome == "in_progress"


@pytest.mark.parametrize("key", ["", " ", " padded", "x" * 256, "caf\u00e9"])
def test_a_malformed_key_is_a_validation_error(keyed_client: TestClient, key: str) -> None:
    response = keyed_client.post(
        "/users",
        json={"userId": unique("user"), "name": "K"},
        headers={"Idempotency-Key": key.encode("utf-8")},
    )
    assert "Idempotency-Key" in validation_fields(response)


def test_the_longest_key_is_accepted(keyed_client: TestClient) -> None:
    response = keyed_client.post(
        "/users", json={"userId": unique("user"), "name": "K"}, headers=keyed("k" * 255)
    )
    assert response.status_code == 201


def test_keys_survive_a_restart_and_serve_every_process(settings: Settings) -> None:
    key = unique("key")
    body = {"title": "Once", "date": "2025-03-01", "capacity": 5}
    with TestClient(create_app(settings)) as first_process:
        first = first_process.post("/events", json=body, headers=keyed(key))
        with TestClient(create_app(settings)) as second_process:
            meanwhile = second_process.post("/events", json=body, headers=keyed(key))
    with TestClient(create_app(settings)) as restarted:
        later = restarted.post("/events", json=body, headers=keyed(key))
        listed = json_of(restarted.get("/events"), 200)
    assert first.status_code == meanwhile.status_code == later.status_code == 201
    assert first.json() == meanwhile.json() == later.json()
    assert len(listed["events"]) == 1


def test_the_answer_is_kept_before_the_client_sees_it(settings: Settings) -> None:
    """A retry sent the moment the first answer arrives is replayed, never told to wait."""
    app = create_app(settings)
    key = unique("key")
    body = b'{"title": "Kept first", "date": "2025-03-01", "capacity": 5}'
    seen_when_answered: list[str] = []

    async def watching(scope: Scope, receive: Receive, send: Send) -> None:
        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start" and scope["path"] == "/events":
                store = app.state.container.idempotency
                print_ = fingerprint("POST", "/events", body)
                claim = store.claim("anonymous", key, print_, lease_seconds=60)
                seen_when_answered.append(claim.outcome)
            await send(message)

        await app(scope, receive, observe)

    with TestClient(watching) as client:
        first = client.post(
            "/events", content=body, headers=keyed(key, **{"Content-Type": "application/json"})
        )
    assert first.status_code == 201, first.text
    assert seen_when_answered == ["done"]


def test_a_retry_after_a_crash_before_the_answer_was_kept_makes_no_second_event(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies between the command's commit and keeping its answer; once
    the claim's lease has lapsed, the retry runs again but cannot create a second
    event: the generated id derives from the caller and the key."""
    store = client.app.state.container.idempotency  # type: ignore[attr-defined]

    def dies(scope: str, key: str, response: object) -> None:
        raise RuntimeError("the process died before keeping the answer")

    monkeypatch.setattr(store, "complete", dies)
    monkeypatch.setattr(idempotency, "LEASE_SECONDS", -1.0)  # lapsed by the retry
    key = unique("key")
    body = {"title": "Once only", "date": "2025-03-01", "capacity": 5}
    first = client.post("/events", json=body, headers=keyed(key))
    assert first.status_code == 201, first.text
    retry = client.post("/events", json=body, headers=keyed(key))
    error_of(retry, 409, "DUPLICATE_EVENT")
    events = json_of(client.get("/events"), 200)["events"]
    assert [e["eventId"] for e in events] == [first.json()["eventId"]]


def test_generated_ids_differ_by_caller_and_by_key(keyed_client: TestClient) -> None:
    key = unique("key")
    body = {"title": "Mine", "date": "2025-03-01", "capacity": 5}
    mine = keyed_client.post("/events", json=body, headers=keyed(key, **bearer(CLIENT_KEY)))
    theirs = keyed_client.post("/events", json=body, headers=keyed(key, **bearer(ADMIN_KEY)))
    another = keyed_client.post("/events", json=body, headers=keyed(unique("key")))
    unkeyed = keyed_client.post("/events", json=body)
    ids = {r.json()["eventId"] for r in (mine, theirs, another, unkeyed)}
    assert len(ids) == 4
