"""Histories and time travel: what auditors read about one event or one user."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from projections.paging import encode_token, event_history, user_history
from tests.api.conftest import AUDITOR_KEY, CLIENT_KEY, bearer
from tests.api.helpers import error_of, json_of, validation_fields
from tests.support import create_event, create_user, leave, register, unique

AUDITOR = bearer(AUDITOR_KEY)


def history(client: TestClient, path: str, limit: int = 500) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        query = f"limit={limit}" + (f"&nextToken={token}" if token else "")
        page = json_of(client.get(f"{path}?{query}", headers=AUDITOR), 200)
        entries += page["history"]
        token = page["nextToken"]
        if token is None:
            return entries


def state(client: TestClient, path: str, **query: object) -> dict[str, Any]:
    text = "&".join(f"{k}={quote(str(v))}" for k, v in query.items())
    return json_of(client.get(f"{path}?{text}", headers=AUDITOR), 200)


@pytest.fixture
def story(keyed_client: TestClient) -> dict[str, str]:
    """One seat, then: ada takes it, bob and cy wait, the title changes, ada leaves
    (bob is promoted)."""
    ids = {name: create_user(keyed_client, unique(name)) for name in ("ada", "bob", "cy")}
    event_id = create_event(keyed_client, capacity=1, waitlistEnabled=True, title="Before")[
        "eventId"
    ]
    for name in ("ada", "bob", "cy"):
        assert register(keyed_client, ids[name], event_id).status_code == 201
    assert keyed_client.put(f"/events/{event_id}", json={"title": "After"}).status_code == 200
    assert leave(keyed_client, ids["ada"], event_id).status_code == 204
    return {**ids, "event": event_id}


def test_an_events_history_holds_its_details_seats_waitlist_and_promotions(
    keyed_client: TestClient, story: dict[str, str]
) -> None:
    entries = history(keyed_client, f"/audit/events/{story['event']}/history")
    assert [(e["type"], e["data"].get("userId")) for e in entries] == [
        ("GatheringCreated", None),
        ("SeatTaken", story["ada"]),
        ("WaitlistJoined", story["bob"]),
        ("WaitlistJoined", story["cy"]),
        ("GatheringRevised", None),
        ("SeatReleased", story["ada"]),
        ("PromotedFromWaitlist", story["bob"]),
    ]
    assert [e["version"] for e in entries] == list(range(1, 8))
    positions = [e["position"] for e in entries]
    assert positions == sorted(positions)
    assert all(isinstance(p, int) for p in positions)


def test_a_users_history_holds_their_account_and_their_registrations(
    keyed_client: TestClient, story: dict[str, str]
) -> None:
    ada = history(keyed_client, f"/audit/users/{story['ada']}/history")
    assert [e["type"] for e in ada] == [
        "UserCreated",
        "RegistrationCreated",
        "RegistrationWithdrawn",
    ]
    assert all(e["data"]["userId"] == story["ada"] for e in ada)
    bob = history(keyed_client, f"/audit/users/{story['bob']}/history")
    assert [e["type"] for e in bob][-1] == "RegistrationPromoted"
    assert bob[-1]["data"]["userId"] == story["bob"]
    assert [e["position"] for e in bob] == sorted(e["position"] for e in bob)


def test_history_pages_follow_one_another(keyed_client: TestClient, story: dict[str, str]) -> None:
    path = f"/audit/events/{story['event']}/history"
    assert history(keyed_client, path, limit=2) == history(keyed_client, path)
    user_path = f"/audit/users/{story['ada']}/history"
    assert history(keyed_client, user_path, limit=1) == history(keyed_client, user_path)
    first = json_of(keyed_client.get(f"{path}?limit=7", headers=AUDITOR), 200)
    assert first["nextToken"] is None


def test_a_deleted_events_history_stays_readable(keyed_client: TestClient) -> None:
    event_id = create_event(keyed_client)["eventId"]
    assert keyed_client.delete(f"/events/{event_id}").status_code == 204
    entries = history(keyed_client, f"/audit/events/{event_id}/history")
    assert [e["type"] for e in entries] == ["GatheringCreated", "GatheringDeleted"]
    gone = keyed_client.get(f"/audit/events/{event_id}/state", headers=AUDITOR)
    error_of(gone, 404, "EVENT_NOT_FOUND")
    before = state(keyed_client, f"/audit/events/{event_id}/state", version=1)
    assert before["eventId"] == event_id


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/audit/events/{id}/history", "EVENT_NOT_FOUND"),
        ("/audit/users/{id}/history", "USER_NOT_FOUND"),
        ("/audit/events/{id}/state", "EVENT_NOT_FOUND"),
        ("/audit/users/{id}/state", "USER_NOT_FOUND"),
    ],
)
def test_an_unknown_id_is_not_found(keyed_client: TestClient, path: str, code: str) -> None:
    response = keyed_client.get(path.format(id=unique("never")), headers=AUDITOR)
    error_of(response, 404, code)


@pytest.mark.parametrize(
    "path",
    [
        "/audit/events/x/history",
        "/audit/users/x/history",
        "/audit/events/x/state",
        "/audit/users/x/state",
    ],
)
def test_histories_and_states_need_an_auditor(keyed_client: TestClient, path: str) -> None:
    error_of(keyed_client.get(path), 401, "UNAUTHORIZED")
    error_of(keyed_client.get(path, headers=bearer(CLIENT_KEY)), 403, "FORBIDDEN")


def test_an_event_as_it_was_at_each_moment_of_its_history(
    keyed_client: TestClient, story: dict[str, str]
) -> None:
    event_path = f"/audit/events/{story['event']}/state"
    entries = history(keyed_client, f"/audit/events/{story['event']}/history")
    at = {e["type"] + str(e["data"].get("userId")): e["occurredAt"] for e in entries}
    waiting = state(keyed_client, event_path, asOf=at[f"WaitlistJoined{story['cy']}"])
    assert waiting["waitlist"] == [story["bob"], story["cy"]]
    assert (waiting["title"], waiting["registeredCount"], waiting["waitlistCount"]) == (
        "Before",
        1,
        2,
    )
    # An entry whose occurredAt equals asOf is included; the one before is not.
    assert state(keyed_client, event_path, asOf=at[f"WaitlistJoined{story['bob']}"])[
        "waitlist"
    ] == [story["bob"]]
    by_version = state(keyed_client, event_path, version=4)
    assert by_version == waiting
    now = json_of(keyed_client.get(f"/events/{story['event']}"), 200)
    assert state(keyed_client, event_path) == now
    assert state(keyed_client, event_path, version=10_000) == now
    assert state(keyed_client, event_path, asOf="2999-01-01T00:00:00Z") == now
    assert now["waitlist"] == [story["cy"]]
    assert now["title"] == "After"


def test_before_its_creation_an_event_is_not_found(
    keyed_client: TestClient, story: dict[str, str]
) -> None:
    response = keyed_client.get(
        f"/audit/events/{story['event']}/state?asOf=2000-01-01T00:00:00Z", headers=AUDITOR
    )
    error_of(response, 404, "EVENT_NOT_FOUND")


def test_a_user_as_they_were_with_the_events_title_as_it_was(
    keyed_client: TestClient, story: dict[str, str]
) -> None:
    entries = history(keyed_client, f"/audit/events/{story['event']}/history")
    before_revision = entries[3]["occurredAt"]
    then = state(keyed_client, f"/audit/users/{story['bob']}/state", asOf=before_revision)
    assert then["user"]["userId"] == story["bob"]
    (registration,) = then["registrations"]
    assert (registration["status"], registration["waitlistPosition"]) == ("waitlist", 1)
    assert registration["eventTitle"] == "Before"
    now = state(keyed_client, f"/audit/users/{story['bob']}/state")
    (current,) = now["registrations"]
    assert (current["status"], current["eventTitle"]) == ("confirmed", "After")
    listed = json_of(keyed_client.get(f"/users/{story['bob']}/registrations"), 200)
    assert listed["registrations"] == now["registrations"]
    assert state(keyed_client, f"/audit/users/{story['ada']}/state")["registrations"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("asOf=yesterday", "asOf"),
        ("version=0", "version"),
        ("version=x", "version"),
        ("asOf=2024-01-01T00:00:00Z&version=2", "asOf"),
    ],
)
def test_a_bad_moment_is_a_validation_error(
    keyed_client: TestClient, story: dict[str, str], query: str, field: str
) -> None:
    response = keyed_client.get(f"/audit/events/{story['event']}/state?{query}", headers=AUDITOR)
    assert field in validation_fields(response)


def test_a_bad_history_token_or_limit_is_a_validation_error(
    keyed_client: TestClient, story: dict[str, str]
) -> None:
    path = f"/audit/events/{story['event']}/history"
    assert "limit" in validation_fields(keyed_client.get(f"{path}?limit=0", headers=AUDITOR))
    assert "limit" in validation_fields(keyed_client.get(f"{path}?limit=501", headers=AUDITOR))
    response = keyed_client.get(f"{path}?nextToken=forged", headers=AUDITOR)
    assert "nextToken" in validation_fields(response)


def test_a_history_token_pages_only_the_history_that_issued_it(
    keyed_client: TestClient, story: dict[str, str]
) -> None:
    ada, bob = story["ada"], story["bob"]
    ada_page = json_of(
        keyed_client.get(f"/audit/users/{ada}/history?limit=1", headers=AUDITOR), 200
    )
    event_page = json_of(
        keyed_client.get(f"/audit/events/{story['event']}/history?limit=1", headers=AUDITOR), 200
    )
    token, other_token = ada_page["nextToken"], event_page["nextToken"]
    assert token
    assert other_token

    for path, wrong in (
        (f"/audit/users/{bob}/history", token),
        (f"/audit/events/{story['event']}/history", token),
        (f"/audit/users/{ada}/history", other_token),
    ):
        response = keyed_client.get(f"{path}?nextToken={wrong}", headers=AUDITOR)
        assert validation_fields(response) == ["nextToken"], path


@pytest.mark.parametrize(("kind", "field"), [("users", "n"), ("events", "v")])
def test_a_minted_history_token_with_a_negative_position_is_refused(
    keyed_client: TestClient, story: dict[str, str], kind: str, field: str
) -> None:
    # The default signing key is public (development only): a token minted with it
    # must still not start a page before the first entry.
    subject = story["ada"] if kind == "users" else story["event"]
    list_of = user_history(subject) if kind == "users" else event_history(subject)
    minted = encode_token({field: -1}, list_of=list_of)

    response = keyed_client.get(
        f"/audit/{kind}/{subject}/history?nextToken={minted}", headers=AUDITOR
    )

    assert validation_fields(response) == ["nextToken"]


@pytest.mark.parametrize("kind", ["events", "users"])
def test_an_empty_history_token_is_refused_as_the_lists_refuse_it(
    keyed_client: TestClient, story: dict[str, str], kind: str
) -> None:
    subject = story["event"] if kind == "events" else story["ada"]
    response = keyed_client.get(f"/audit/{kind}/{subject}/history?nextToken=", headers=AUDITOR)
    assert validation_fields(response) == ["nextToken"]
    listed = keyed_client.get("/events?nextToken=")
    assert validation_fields(listed) == ["nextToken"]


def test_entries_hold_what_happened_not_how_it_is_stored(
    keyed_client: TestClient, story: dict[str, str]
) -> None:
    entries = history(keyed_client, f"/audit/events/{story['event']}/history") + history(
        keyed_client, f"/audit/users/{story['bob']}/history"
    )
    assert {"GatheringCreated", "UserCreated", "RegistrationCreated"} <= {
        e["type"] for e in entries
    }
    for entry in entries:
        assert not {"classVersion", "originatorTopic"} & set(entry["data"]), entry


def test_every_entry_of_a_registration_names_its_event(
    keyed_client: TestClient, story: dict[str, str]
) -> None:
    ada = history(keyed_client, f"/audit/users/{story['ada']}/history")
    withdrawn = [e for e in ada if e["type"] == "RegistrationWithdrawn"]
    assert [e["data"]["eventId"] for e in withdrawn] == [story["event"]]
    bob = history(keyed_client, f"/audit/users/{story['bob']}/history")
    registration = [e for e in bob if e["type"].startswith("Registration")]
    assert registration
    assert {e["data"]["eventId"] for e in registration} == {story["event"]}
