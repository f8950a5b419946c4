"""Property tests of the registration rules, driven through the HTTP API.

Every test gets one real application (the ``client`` fixture, on a fresh
SQLite store); the examples hypothesis runs inside a test share it and keep
apart by using fresh ``unique()`` ids for the events and users they create.
The REST contract they check is the README's (e.g. ``EVENT_NOT_OPEN`` and the
order of the registration checks).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from tests.support import create_event, create_user, leave, register, unique

# --------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,100}")

# Every character Python's str.isspace() accepts: Unicode White_Space plus the
# four information separators U+001C-U+001F.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)

whitespace_only = st.text(st.sampled_from(WHITESPACE), min_size=1, max_size=200)

# Names of any Unicode letters (with marks, digits, punctuation, symbols and
# spaces among them), 1-200 characters, not all whitespace.
names = st.text(
    st.characters(categories=("L", "M", "N", "P", "S", "Zs")), min_size=1, max_size=200
).filter(lambda s: not s.isspace())

# Characters a name may not hold: controls (C0, C1) and bidirectional overrides and isolates.
CONTROLS = "".join(
    map(chr, [*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)])
)
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"

# Any text a JSON body can carry (UTF-8: no lone surrogates) on one line, that shows
# something (not all whitespace or zero-width characters).
any_names = st.text(
    st.characters(codec="utf-8", exclude_characters=CONTROLS), min_size=1, max_size=200
).filter(lambda s: not all(c.isspace() or c in INVISIBLE for c in s))

titles = st.text(st.characters(categories=("L", "N", "P", "Zs")), min_size=1, max_size=200).filter(
    lambda s: not s.isspace()
)

event_dates = st.one_of(
    st.dates(min_value=date(1900, 1, 1), max_value=date(2199, 12, 31)).map(date.isoformat),
    st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2199, 12, 31),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    ).map(datetime.isoformat),
)

id_tails = st.from_regex(re.compile(r"[A-Za-z0-9_-]{1,80}"), fullmatch=True)

invalid_user_ids: st.SearchStrategy[Any] = st.one_of(
    # Any text that is not 1-100 characters of [A-Za-z0-9_-].
    st.text(st.characters(codec="utf-8"), max_size=110).filter(
        lambda s: ID_PATTERN.fullmatch(s) is None
    ),
    # Whitespace-only ids.
    st.text(st.sampled_from(WHITESPACE), min_size=1, max_size=5),
    # A valid id with whitespace before, inside or after it.
    st.tuples(
        st.from_regex(re.compile(r"[A-Za-z0-9_-]{0,10}"), fullmatch=True),
        st.text(st.sampled_from(WHITESPACE), min_size=1, max_size=3),
        st.from_regex(re.compile(r"[A-Za-z0-9_-]{0,10}"), fullmatch=True),
    ).map("".join),
    # Too long.
    st.integers(101, 130).map(lambda n: "u" * n),
    # Not a string at all.
    st.integers(),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)

CLOSED_STATUSES = ("draft", "cancelled", "completed")
OPEN_STATUSES = ("active", "published")

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is the contract's error envelope with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["code"] == code, error
    assert set(error) == {"code", "message", "details", "timestamp", "path", "requestId"}
    assert isinstance(error["details"], list)
    assert error["requestId"] == response.headers["x-request-id"]
    return error


def parse_utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0), value
    return parsed


def get_event(client: TestClient, event_id: str) -> dict[str, Any]:
    response = client.get(f"/events/{event_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def put_event(client: TestClient, event_id: str, **fields: Any) -> Any:
    return client.put(f"/events/{event_id}", json=fields)


def _pages(client: TestClient, url: str, limit: int | None) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    totals: set[int] = set()
    for _ in range(10_000):
        params: dict[str, Any] = {}
        if limit is not None:
            params["limit"] = limit
        if token is not None:
            params["nextToken"] = token
        response = client.get(url, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        page = body["registrations"]
        if limit is not None:
            assert len(page) <= limit
        items.extend(page)
        totals.add(body["total"])
        token = body.get("nextToken")
        if token is None:
            break
    assert len(totals) == 1, totals
    return items, totals.pop()


def user_registrations(
    client: TestClient, user_id: str, limit: int | None = None
) -> list[dict[str, Any]]:
    """Every entry of GET /users/{userId}/registrations, over all pages."""
    items, total = _pages(client, f"/users/{user_id}/registrations", limit)
    assert total == len(items)
    return items


def event_registrations(
    client: TestClient, event_id: str, limit: int | None = None
) -> list[dict[str, Any]]:
    """Every entry of GET /events/{eventId}/registrations, over all pages."""
    items, total = _pages(client, f"/events/{event_id}/registrations", limit)
    assert total == len(items)
    return items


def status_of(client: TestClient, user_id: str, event_id: str) -> str | None:
    """The user's registration status for the event, as their list shows it."""
    found = [r for r in user_registrations(client, user_id) if r["eventId"] == event_id]
    assert len(found) <= 1
    return str(found[0]["status"]) if found else None


def assert_conserved(event: dict[str, Any]) -> None:
    """The counts' invariants (seats conserved, waitlist counted and without
    duplicates), on one GET /events/{id} body."""
    assert event["registeredCount"] + event["availableSpots"] == event["capacity"], event
    assert 0 <= event["registeredCount"] <= event["capacity"], event
    assert event["waitlistCount"] == len(event["waitlist"]), event
    assert len(set(event["waitlist"])) == len(event["waitlist"]), event
    if event["availableSpots"] > 0:
        assert event["waitlist"] == [], event


@dataclass
class EventModel:
    """A plain reference model of one event's seats and FIFO waitlist."""

    capacity: int
    waitlist_enabled: bool
    confirmed: list[str] = field(default_factory=list)
    waitlist: list[str] = field(default_factory=list)

    def register(self, user_id: str) -> tuple[int, str]:
        """Status code and outcome (registration status or error code)."""
        if user_id in self.confirmed:
            return 409, "ALREADY_REGISTERED"
        if user_id in self.waitlist:
            return 409, "ALREADY_ON_WAITLIST"
        if len(self.confirmed) < self.capacity and not self.waitlist:
            self.confirmed.append(user_id)
            return 201, "confirmed"
        if self.waitlist_enabled:
            self.waitlist.append(user_id)
            return 201, "waitlist"
        return 409, "EVENT_FULL"

    def leave(self, user_id: str) -> tuple[int, str]:
        if user_id in self.confirmed:
            self.confirmed.remove(user_id)
            self._promote()
            return 204, ""
        if user_id in self.waitlist:
            self.waitlist.remove(user_id)
            return 204, ""
        return 404, "REGISTRATION_NOT_FOUND"

    def set_capacity(self, capacity: int) -> tuple[int, str]:
        if capacity < len(self.confirmed):
            return 409, "CAPACITY_BELOW_REGISTERED"
        self.capacity = capacity
        self._promote()
        return 200, ""

    def set_waitlist(self, enabled: bool) -> tuple[int, str]:
        self.waitlist_enabled = enabled
        return 200, ""

    def _promote(self) -> None:
        while self.waitlist and len(self.confirmed) < self.capacity:
            self.confirmed.append(self.waitlist.pop(0))


def check_outcome(response: Any, expected: tuple[int, str]) -> None:
    status, outcome = expected
    if status >= 400:
        assert_error(response, status, outcome)
        return
    assert response.status_code == status, response.text
    if status == 201:
        assert response.json()["status"] == outcome


def assert_event_matches(client: TestClient, event_id: str, model: EventModel) -> None:
    """GET /events/{id} and GET /events/{id}/registrations agree with the model."""
    event = get_event(client, event_id)
    assert_conserved(event)
    assert event["capacity"] == model.capacity
    assert event["waitlistEnabled"] == model.waitlist_enabled
    assert event["registeredCount"] == len(model.confirmed)
    assert event["waitlist"] == model.waitlist
    listed = event_registrations(client, event_id)
    n = len(model.confirmed)
    assert {r["userId"] for r in listed[:n]} == set(model.confirmed)
    assert all(r["status"] == "confirmed" for r in listed[:n])
    assert [r["userId"] for r in listed[n:]] == model.waitlist
    assert [r["status"] for r in listed[n:]] == ["waitlist"] * len(model.waitlist)
    assert [r["waitlistPosition"] for r in listed[n:]] == list(range(1, len(model.waitlist) + 1))
    assert all("waitlistPosition" not in r for r in listed[:n])


def apply_op(client: TestClient, event_id: str, model: EventModel, op: tuple[str, Any]) -> None:
    kind, arg = op
    if kind == "register":
        check_outcome(register(client, arg, event_id), model.register(arg))
    elif kind == "leave":
        check_outcome(leave(client, arg, event_id), model.leave(arg))
    elif kind == "capacity":
        check_outcome(put_event(client, event_id, capacity=arg), model.set_capacity(arg))
    elif kind == "waitlist":
        check_outcome(put_event(client, event_id, waitlistEnabled=arg), model.set_waitlist(arg))
    else:  # pragma: no cover - the strategies make no other kinds
        raise AssertionError(kind)


POOL_SIZE = 6


@pytest.fixture
def pool(client: TestClient) -> list[str]:
    """Users shared by a test's examples; each example uses them on fresh events."""
    return [create_user(client, name=f"Pool user {n}") for n in range(POOL_SIZE)]


pool_index = st.integers(0, POOL_SIZE - 1)

# --------------------------------------------------------------------------
# Users
# --------------------------------------------------------------------------


@given(name=names, tail=id_tails)
def test_a_created_user_reads_back_exactly_as_sent(
    client: TestClient, name: str, tail: str
) -> None:
    """User creation round-trip.

    For any valid userId and any name of 1-200 Unicode characters that is not
    all whitespace, POST /users answers 201 with the user and GET /users/{id}
    returns the same user, name unchanged (no trimming, no normalisation).
    """
    user_id = f"{unique('u')}-{tail}"[:100]
    created = client.post("/users", json={"userId": user_id, "name": name})
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"userId", "name", "erased", "createdAt", "updatedAt"}
    assert body["userId"] == user_id
    assert body["name"] == name
    assert parse_utc(body["createdAt"]) == parse_utc(body["updatedAt"])
    assert created.headers["location"] == f"/users/{user_id}"
    fetched = client.get(f"/users/{user_id}")
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == body


@given(name=any_names)
def test_any_non_blank_name_round_trips_byte_for_byte(client: TestClient, name: str) -> None:
    """User creation round-trip, for names of arbitrary characters.

    Combining marks, emoji, format and private-use characters are stored and
    returned unchanged, as long as the name holds no control character and
    shows something.
    """
    user_id = unique("u")
    created = client.post("/users", json={"userId": user_id, "name": name})
    assert created.status_code == 201, created.text
    assert client.get(f"/users/{user_id}").json()["name"] == name


@given(name=any_names, control=st.sampled_from(CONTROLS), at=st.integers(0, 200))
def test_a_name_holding_a_control_character_is_refused(
    client: TestClient, name: str, control: str, at: int
) -> None:
    """A line break, tab, NUL or bidirectional override anywhere in a name: 400
    on ``name``, and no user is created."""
    user_id = unique("u")
    sent = (name[:at] + control + name[at:])[:200]
    if control not in sent:  # cut off by the length bound: put it last
        sent = sent[:-1] + control
    refused = client.post("/users", json={"userId": user_id, "name": sent})
    assert refused.status_code == 400, refused.text
    assert [d["field"] for d in refused.json()["error"]["details"]] == ["name"]
    assert client.get(f"/users/{user_id}").status_code == 404


def test_names_of_two_hundred_characters_pass_and_longer_ones_do_not(client: TestClient) -> None:
    """The name's bounds are 1 and 200 characters (code points)."""
    longest = "é" * 199 + "\U0001f600"
    assert client.post("/users", json={"userId": unique("u"), "name": longest}).status_code == 201
    for name in ("x" * 201, ""):
        error = assert_error(
            client.post("/users", json={"userId": unique("u"), "name": name}),
            400,
            "VALIDATION_ERROR",
        )
        assert [d["field"] for d in error["details"]] == ["name"]


@given(first=names, second=names)
def test_a_second_user_with_the_same_id_is_refused_and_the_first_is_kept(
    client: TestClient, first: str, second: str
) -> None:
    """Duplicate userId rejection.

    Creating a user whose userId exists answers 409 DUPLICATE_USER, whatever
    the new name, and the original user (name and timestamps) is unchanged.
    """
    user_id = unique("u")
    original = client.post("/users", json={"userId": user_id, "name": first})
    assert original.status_code == 201
    assert_error(
        client.post("/users", json={"userId": user_id, "name": second}), 409, "DUPLICATE_USER"
    )
    assert client.get(f"/users/{user_id}").json() == original.json()


@given(name=whitespace_only)
def test_a_name_of_only_whitespace_is_refused(client: TestClient, name: str) -> None:
    """Whitespace name rejection.

    A name made only of Unicode whitespace (spaces, tabs, newlines, U+3000,
    U+00A0, U+2028, ...) answers 400 VALIDATION_ERROR naming the field
    ``name``, and no user is created.
    """
    assert name.isspace()
    user_id = unique("u")
    error = assert_error(
        client.post("/users", json={"userId": user_id, "name": name}), 400, "VALIDATION_ERROR"
    )
    assert [d["field"] for d in error["details"]] == ["name"]
    assert_error(client.get(f"/users/{user_id}"), 404, "USER_NOT_FOUND")


def test_the_whitespace_alphabet_is_all_whitespace() -> None:
    """The strategy's alphabet is exactly what 'whitespace' means here."""
    assert all(ch.isspace() for ch in WHITESPACE)
    assert "\u3000" in WHITESPACE
    assert "\t" in WHITESPACE
    assert "\n" in WHITESPACE


@given(user_id=invalid_user_ids)
def test_a_user_id_that_is_not_1_to_100_id_characters_is_refused(
    client: TestClient, user_id: Any
) -> None:
    """Whitespace (and otherwise invalid) userId rejection.

    A userId that is empty, has whitespace or any character outside
    [A-Za-z0-9_-], is longer than 100 characters or is not a string answers
    400 VALIDATION_ERROR naming the field ``userId``.
    """
    error = assert_error(
        client.post("/users", json={"userId": user_id, "name": "Valid Name"}),
        400,
        "VALIDATION_ERROR",
    )
    assert "userId" in [d["field"] for d in error["details"]]


@given(tail=id_tails.filter(lambda t: t.lower() != t.upper()))
def test_user_ids_that_differ_only_in_case_are_different_users(
    client: TestClient, tail: str
) -> None:
    """User ids are case-sensitive; 'Ab' and 'aB' are two users."""
    base = f"{unique('u')}-{tail}"[:100]
    first, second = base.lower(), base.upper()
    assert client.post("/users", json={"userId": first, "name": "Lower"}).status_code == 201
    assert client.post("/users", json={"userId": second, "name": "Upper"}).status_code == 201
    assert client.get(f"/users/{first}").json()["name"] == "Lower"
    assert client.get(f"/users/{second}").json()["name"] == "Upper"


def test_a_user_body_without_a_user_id_is_a_validation_error(client: TestClient) -> None:
    """A missing userId is a 400 VALIDATION_ERROR, never FastAPI's 422."""
    error = assert_error(client.post("/users", json={"name": "A"}), 400, "VALIDATION_ERROR")
    assert "userId" in [d["field"] for d in error["details"]]


# --------------------------------------------------------------------------
# Capacity and waitlist
# --------------------------------------------------------------------------


@given(capacity=st.integers(1, 5), count=st.integers(0, POOL_SIZE))
def test_confirmed_registrations_stop_at_capacity(
    client: TestClient, pool: list[str], capacity: int, count: int
) -> None:
    """Capacity enforcement.

    Without a waitlist, the first ``capacity`` distinct users are confirmed
    and every later one is refused with 409 EVENT_FULL; registeredCount is
    min(count, capacity).
    """
    event_id = create_event(client, capacity=capacity)["eventId"]
    for n, user_id in enumerate(pool[:count]):
        response = register(client, user_id, event_id)
        if n < capacity:
            assert response.status_code == 201, response.text
            assert response.json()["status"] == "confirmed"
        else:
            assert_error(response, 409, "EVENT_FULL")
    event = get_event(client, event_id)
    assert event["registeredCount"] == min(count, capacity)
    assert event["availableSpots"] == capacity - min(count, capacity)
    assert event["waitlist"] == []


@given(capacity=st.integers(1, 3), extra=st.integers(1, 3))
def test_a_full_event_with_a_waitlist_accepts_newcomers_onto_the_waitlist(
    client: TestClient, pool: list[str], capacity: int, extra: int
) -> None:
    """Waitlist acceptance / addition when full.

    Once an event with a waitlist is full, each further registration answers
    201 with status ``waitlist`` and its 1-based waitlistPosition, the user
    is appended to the event's waitlist, and registeredCount stays at
    capacity.
    """
    event_id = create_event(client, capacity=capacity, waitlistEnabled=True)["eventId"]
    seated, waiting = pool[:capacity], pool[capacity : capacity + extra]
    for user_id in seated:
        assert register(client, user_id, event_id).json()["status"] == "confirmed"
    for position, user_id in enumerate(waiting, start=1):
        response = register(client, user_id, event_id)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "waitlist"
        assert body["waitlistPosition"] == position
        assert status_of(client, user_id, event_id) == "waitlist"
    event = get_event(client, event_id)
    assert event["registeredCount"] == capacity
    assert event["availableSpots"] == 0
    assert event["waitlist"] == waiting
    assert event["waitlistCount"] == len(waiting)


@given(capacity=st.integers(1, 4))
def test_a_full_event_without_a_waitlist_refuses_newcomers(
    client: TestClient, pool: list[str], capacity: int
) -> None:
    """Rejection when full without waitlist.

    A registration for a full event whose waitlist is disabled answers 409
    EVENT_FULL and changes nothing: not the counts, not the waitlist, not
    the user's registration list.
    """
    event_id = create_event(client, capacity=capacity)["eventId"]
    for user_id in pool[:capacity]:
        assert register(client, user_id, event_id).status_code == 201
    before = get_event(client, event_id)
    newcomer = pool[capacity]
    assert_error(register(client, newcomer, event_id), 409, "EVENT_FULL")
    assert get_event(client, event_id) == before
    assert status_of(client, newcomer, event_id) is None


@given(
    capacity=st.integers(1, 4),
    waitlist=st.booleans(),
    attempts=st.lists(pool_index, max_size=14),
)
def test_registered_count_never_exceeds_capacity(
    client: TestClient, pool: list[str], capacity: int, waitlist: bool, attempts: list[int]
) -> None:
    """Registration capacity invariant.

    For any sequence of registrations (repeats included), registeredCount
    never exceeds capacity and every answer is what the reference model
    expects.
    """
    event_id = create_event(client, capacity=capacity, waitlistEnabled=waitlist)["eventId"]
    model = EventModel(capacity, waitlist)
    for index in attempts:
        check_outcome(register(client, pool[index], event_id), model.register(pool[index]))
        event = get_event(client, event_id)
        assert event["registeredCount"] <= event["capacity"]
        assert_conserved(event)
    assert_event_matches(client, event_id, model)


@given(capacity=st.integers(1, 4), waitlist=st.booleans())
def test_registering_twice_for_a_seat_is_refused(
    client: TestClient, pool: list[str], capacity: int, waitlist: bool
) -> None:
    """Duplicate registration rejection.

    A confirmed user registering again answers 409 ALREADY_REGISTERED,
    whether or not the event is full, and the event is unchanged.
    """
    event_id = create_event(client, capacity=capacity, waitlistEnabled=waitlist)["eventId"]
    for user_id in pool[:capacity]:
        assert register(client, user_id, event_id).json()["status"] == "confirmed"
    before = get_event(client, event_id)
    for user_id in pool[:capacity]:
        assert_error(register(client, user_id, event_id), 409, "ALREADY_REGISTERED")
    assert get_event(client, event_id) == before


@given(capacity=st.integers(1, 3), waiting=st.integers(1, 3), disable_waitlist=st.booleans())
def test_registering_twice_for_the_waitlist_is_refused(
    client: TestClient, pool: list[str], capacity: int, waiting: int, disable_waitlist: bool
) -> None:
    """Duplicate waitlist rejection.

    A waitlisted user registering again answers 409 ALREADY_ON_WAITLIST (also
    after the waitlist was disabled, since that check comes before
    EVENT_FULL); the waitlist order is unchanged.
    """
    event_id = create_event(client, capacity=capacity, waitlistEnabled=True)["eventId"]
    for user_id in pool[: capacity + waiting]:
        assert register(client, user_id, event_id).status_code == 201
    if disable_waitlist:
        assert put_event(client, event_id, waitlistEnabled=False).status_code == 200
    before = get_event(client, event_id)
    for user_id in pool[capacity : capacity + waiting]:
        assert_error(register(client, user_id, event_id), 409, "ALREADY_ON_WAITLIST")
    assert get_event(client, event_id) == before


# --------------------------------------------------------------------------
# Registration round trip and missing entities
# --------------------------------------------------------------------------


@given(title=titles, event_date=event_dates, capacity=st.integers(1, 2), before=st.integers(0, 3))
def test_a_registration_reads_back_exactly_as_the_post_answered(
    client: TestClient,
    pool: list[str],
    title: str,
    event_date: str,
    capacity: int,
    before: int,
) -> None:
    """Registration persistence round-trip.

    The body of a 201 from POST /users/{id}/registrations equals the entry
    GET /users/{id}/registrations lists and GET
    /users/{id}/registrations/{eventId} returns: userId, eventId, status,
    registeredAt, eventTitle, eventDate and (when waitlisted) the
    waitlistPosition.
    """
    event_id = create_event(
        client, title=title, date=event_date, capacity=capacity, waitlistEnabled=True
    )["eventId"]
    for user_id in pool[:before]:
        assert register(client, user_id, event_id).status_code == 201
    user_id = create_user(client)
    response = register(client, user_id, event_id)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/users/{user_id}/registrations/{event_id}"
    posted = response.json()
    assert posted["userId"] == user_id
    assert posted["eventId"] == event_id
    assert posted["eventTitle"] == title
    assert posted["eventDate"] == event_date
    assert posted["status"] == ("confirmed" if before < capacity else "waitlist")
    if posted["status"] == "waitlist":
        assert posted["waitlistPosition"] == before - capacity + 1
    else:
        assert "waitlistPosition" not in posted
    parse_utc(posted["registeredAt"])
    assert user_registrations(client, user_id) == [posted]
    single = client.get(f"/users/{user_id}/registrations/{event_id}")
    assert single.status_code == 200, single.text
    assert single.json() == posted
    in_event = [r for r in event_registrations(client, event_id) if r["userId"] == user_id]
    assert in_event == [posted]


@given(user_exists=st.booleans())
def test_registering_for_a_missing_event_is_refused(
    client: TestClient, pool: list[str], user_exists: bool
) -> None:
    """Non-existent event rejection.

    Registering an existing user for an eventId that was never created (or
    was deleted) answers 404 EVENT_NOT_FOUND; for a missing user the user
    check comes first (404 USER_NOT_FOUND).
    """
    user_id = pool[0] if user_exists else unique("ghost")
    deleted = create_event(client)["eventId"]
    assert client.delete(f"/events/{deleted}").status_code == 204
    code = "EVENT_NOT_FOUND" if user_exists else "USER_NOT_FOUND"
    for event_id in (unique("no-event"), deleted):
        assert_error(register(client, user_id, event_id), 404, code)
    if user_exists:
        assert status_of(client, user_id, deleted) is None


@given(capacity=st.integers(1, 3))
def test_registering_a_missing_user_is_refused(client: TestClient, capacity: int) -> None:
    """Non-existent user rejection.

    Registering a userId that was never created answers 404 USER_NOT_FOUND
    and the event's counts do not move.
    """
    event_id = create_event(client, capacity=capacity, waitlistEnabled=True)["eventId"]
    before = get_event(client, event_id)
    assert_error(register(client, unique("ghost"), event_id), 404, "USER_NOT_FOUND")
    assert get_event(client, event_id) == before


@st.composite
def registration_situations(draw: st.DrawFn) -> dict[str, Any]:
    body_valid = draw(st.booleans())
    user_exists = draw(st.booleans())
    event_state = draw(st.sampled_from(["present", "present", "missing", "deleted"]))
    present = event_state == "present"
    prior = draw(st.sampled_from(["none", "confirmed", "waitlist"])) if present else "none"
    if not user_exists:
        prior = "none"
    full = draw(st.booleans()) if present else False
    waitlist_on = draw(st.booleans()) if present else True
    status = draw(st.sampled_from(OPEN_STATUSES + CLOSED_STATUSES)) if present else "active"
    return {
        "body_valid": body_valid,
        "user_exists": user_exists,
        "event_state": event_state,
        "prior": prior,
        "full": full or prior == "waitlist",
        "waitlist_on": waitlist_on,
        "status": status,
        "bad_body": draw(
            st.sampled_from(
                [{}, {"eventId": "has space"}, {"eventId": 7}, {"eventId": ""}, {"x": "y"}]
            )
        ),
    }


@given(situation=registration_situations())
def test_registration_checks_run_in_the_contracts_order(
    client: TestClient, pool: list[str], situation: dict[str, Any]
) -> None:
    """Non-existent entity rejection, in the documented check order.

    Whatever combination of problems a registration has, the answer is the
    first that applies of: 400 VALIDATION_ERROR, 404 USER_NOT_FOUND, 404
    EVENT_NOT_FOUND, 409 EVENT_NOT_OPEN, 409 ALREADY_REGISTERED or
    ALREADY_ON_WAITLIST, 409 EVENT_FULL; otherwise 201.
    """
    s = situation
    user_id = create_user(client) if s["user_exists"] else unique("ghost")
    event_id = unique("ev")
    if s["event_state"] != "missing":
        create_event(client, eventId=event_id, capacity=2, waitlistEnabled=True)
    if s["event_state"] == "deleted":
        assert client.delete(f"/events/{event_id}").status_code == 204
    if s["event_state"] == "present":
        if s["prior"] == "confirmed":
            assert register(client, user_id, event_id).json()["status"] == "confirmed"
        if s["full"]:
            for filler in pool:
                if get_event(client, event_id)["availableSpots"] == 0:
                    break
                assert register(client, filler, event_id).status_code == 201
        if s["prior"] == "waitlist":
            assert register(client, user_id, event_id).json()["status"] == "waitlist"
        changes: dict[str, Any] = {}
        if not s["waitlist_on"]:
            changes["waitlistEnabled"] = False
        if s["status"] != "active":
            changes["status"] = s["status"]
        if changes:
            assert put_event(client, event_id, **changes).status_code == 200

    body = {"eventId": event_id} if s["body_valid"] else s["bad_body"]
    response = client.post(f"/users/{user_id}/registrations", json=body)

    if not s["body_valid"]:
        assert_error(response, 400, "VALIDATION_ERROR")
    elif not s["user_exists"]:
        assert_error(response, 404, "USER_NOT_FOUND")
    elif s["event_state"] != "present":
        assert_error(response, 404, "EVENT_NOT_FOUND")
    elif s["status"] not in OPEN_STATUSES:
        assert_error(response, 409, "EVENT_NOT_OPEN")
    elif s["prior"] == "confirmed":
        assert_error(response, 409, "ALREADY_REGISTERED")
    elif s["prior"] == "waitlist":
        assert_error(response, 409, "ALREADY_ON_WAITLIST")
    elif s["full"] and not s["waitlist_on"]:
        assert_error(response, 409, "EVENT_FULL")
    else:
        assert response.status_code == 201, response.text
        assert response.json()["status"] == ("waitlist" if s["full"] else "confirmed")


def test_a_malformed_user_id_in_the_path_is_a_validation_error(client: TestClient) -> None:
    """A path userId outside the id pattern is 400, before any lookup."""
    event_id = create_event(client)["eventId"]
    for bad in ("has%20space", "x" * 101, "%E2%80%83", "trailing-newline%0A"):
        assert_error(
            client.post(f"/users/{bad}/registrations", json={"eventId": event_id}),
            400,
            "VALIDATION_ERROR",
        )


# --------------------------------------------------------------------------
# Waitlist order and promotion
# --------------------------------------------------------------------------


@given(capacity=st.integers(1, 2), waiting=st.integers(1, POOL_SIZE - 2))
def test_the_waitlist_is_served_first_in_first_out(
    client: TestClient, pool: list[str], capacity: int, waiting: int
) -> None:
    """Waitlist FIFO ordering.

    The waitlist lists users in the order they registered, with positions
    1..n, and as confirmed users leave, seats go to them in that same order.
    """
    event_id = create_event(client, capacity=capacity, waitlistEnabled=True)["eventId"]
    seated, queue = pool[:capacity], pool[capacity : capacity + waiting]
    for user_id in seated + queue:
        assert register(client, user_id, event_id).status_code == 201
    assert get_event(client, event_id)["waitlist"] == queue
    promoted: list[str] = []
    for user_id in seated + queue:
        if not get_event(client, event_id)["waitlist"]:
            break
        if status_of(client, user_id, event_id) != "confirmed":
            continue
        before = get_event(client, event_id)["waitlist"]
        assert leave(client, user_id, event_id).status_code == 204
        after = get_event(client, event_id)["waitlist"]
        assert after == before[1:]
        promoted.append(before[0])
    assert promoted == queue[: len(promoted)]


@given(capacity=st.integers(1, 4), data=st.data())
def test_leaving_a_seat_with_nobody_waiting_frees_it(
    client: TestClient, pool: list[str], capacity: int, data: st.DataObject
) -> None:
    """Unregistration capacity invariant.

    A confirmed user leaving an event with an empty waitlist lowers
    registeredCount by one and raises availableSpots by one.
    """
    event_id = create_event(client, capacity=capacity, waitlistEnabled=True)["eventId"]
    seated = pool[: data.draw(st.integers(1, capacity))]
    for user_id in seated:
        assert register(client, user_id, event_id).status_code == 201
    leaver = data.draw(st.sampled_from(seated))
    before = get_event(client, event_id)
    assert leave(client, leaver, event_id).status_code == 204
    after = get_event(client, event_id)
    assert after["registeredCount"] == before["registeredCount"] - 1
    assert after["availableSpots"] == before["availableSpots"] + 1
    assert after["waitlist"] == []
    assert_conserved(after)


@given(capacity=st.integers(1, 3), waiting=st.integers(1, 3), data=st.data())
def test_a_leaving_confirmed_user_hands_the_seat_to_the_head_of_the_waitlist(
    client: TestClient,
    pool: list[str],
    capacity: int,
    waiting: int,
    data: st.DataObject,
) -> None:
    """Automatic waitlist promotion.

    When a confirmed user leaves an event with a non-empty waitlist, the
    head of the waitlist becomes confirmed, everyone else moves up one
    place, and registeredCount stays at capacity.
    """
    event_id = create_event(client, capacity=capacity, waitlistEnabled=True)["eventId"]
    seated, queue = pool[:capacity], pool[capacity : capacity + waiting]
    for user_id in seated + queue:
        assert register(client, user_id, event_id).status_code == 201
    leaver = data.draw(st.sampled_from(seated))
    assert leave(client, leaver, event_id).status_code == 204
    event = get_event(client, event_id)
    assert event["registeredCount"] == capacity
    assert event["waitlist"] == queue[1:]
    head = client.get(f"/users/{queue[0]}/registrations/{event_id}").json()
    assert head["status"] == "confirmed"
    assert "waitlistPosition" not in head
    for position, user_id in enumerate(queue[1:], start=1):
        entry = client.get(f"/users/{user_id}/registrations/{event_id}").json()
        assert entry["waitlistPosition"] == position
    assert status_of(client, leaver, event_id) is None


@given(capacity=st.integers(1, 2), waiting=st.integers(2, 4))
def test_a_promotion_is_never_seen_half_done(
    client: TestClient, pool: list[str], capacity: int, waiting: int
) -> None:
    """Atomic waitlist promotion.

    As soon as the DELETE returns, the promoted user is confirmed and
    registeredCount is unchanged; and a reader polling the event during the
    leaves never sees a freed seat while somebody waits, nor a waitlist
    count that disagrees with the waitlist.
    """
    event_id = create_event(client, capacity=capacity, waitlistEnabled=True)["eventId"]
    seated, queue = pool[:capacity], pool[capacity : capacity + waiting]
    for user_id in seated + queue:
        assert register(client, user_id, event_id).status_code == 201
    seen: list[dict[str, Any]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            seen.append(get_event(client, event_id))

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        leavers = list(seated)
        for expected_head in queue:
            leaver = leavers.pop(0)
            assert leave(client, leaver, event_id).status_code == 204
            # Immediately after the DELETE: the head holds the freed seat.
            assert status_of(client, expected_head, event_id) == "confirmed"
            assert get_event(client, event_id)["registeredCount"] == capacity
            leavers.append(expected_head)
    finally:
        stop.set()
        reader.join()
    for snapshot in seen:
        assert_conserved(snapshot)
        assert snapshot["registeredCount"] == capacity


@given(capacity=st.integers(1, 2), waiting=st.integers(2, 4), data=st.data())
def test_leaving_the_waitlist_keeps_everyone_elses_order(
    client: TestClient,
    pool: list[str],
    capacity: int,
    waiting: int,
    data: st.DataObject,
) -> None:
    """Waitlist removal preserves order.

    A waitlisted user leaving is removed from the waitlist; the others keep
    their relative order and their positions close up (1..n-1); nobody is
    promoted and registeredCount is unchanged.
    """
    event_id = create_event(client, capacity=capacity, waitlistEnabled=True)["eventId"]
    seated, queue = pool[:capacity], pool[capacity : capacity + waiting]
    for user_id in seated + queue:
        assert register(client, user_id, event_id).status_code == 201
    leaver = data.draw(st.sampled_from(queue))
    assert leave(client, leaver, event_id).status_code == 204
    rest = [u for u in queue if u != leaver]
    event = get_event(client, event_id)
    assert event["waitlist"] == rest
    assert event["registeredCount"] == capacity
    listed = event_registrations(client, event_id)
    assert [r["userId"] for r in listed[capacity:]] == rest
    assert [r["waitlistPosition"] for r in listed[capacity:]] == list(range(1, len(rest) + 1))


# --------------------------------------------------------------------------
# Unregistration
# --------------------------------------------------------------------------


@given(kind=st.sampled_from(["never", "left", "rejected", "other-event"]))
def test_leaving_without_a_registration_is_refused(
    client: TestClient, pool: list[str], kind: str
) -> None:
    """Invalid unregistration rejection.

    DELETE /users/{id}/registrations/{eventId} for a user who never
    registered, already left, was refused, or registered only for another
    event answers 404 REGISTRATION_NOT_FOUND and changes nothing.
    """
    event_id = create_event(client, capacity=1)["eventId"]
    user_id = create_user(client)
    if kind == "left":
        assert register(client, user_id, event_id).status_code == 201
        assert leave(client, user_id, event_id).status_code == 204
    elif kind == "rejected":
        assert register(client, pool[0], event_id).status_code == 201
        assert_error(register(client, user_id, event_id), 409, "EVENT_FULL")
    elif kind == "other-event":
        other = create_event(client)["eventId"]
        assert register(client, user_id, other).status_code == 201
    before = get_event(client, event_id)
    assert_error(leave(client, user_id, event_id), 404, "REGISTRATION_NOT_FOUND")
    assert get_event(client, event_id) == before


def test_leaving_names_the_first_missing_thing(client: TestClient) -> None:
    """A missing user is USER_NOT_FOUND, then a missing event EVENT_NOT_FOUND."""
    user_id = create_user(client)
    event_id = create_event(client)["eventId"]
    assert_error(leave(client, unique("ghost"), unique("no-event")), 404, "USER_NOT_FOUND")
    assert_error(leave(client, unique("ghost"), event_id), 404, "USER_NOT_FOUND")
    assert_error(leave(client, user_id, unique("no-event")), 404, "EVENT_NOT_FOUND")
    assert_error(leave(client, user_id, event_id), 404, "REGISTRATION_NOT_FOUND")


@given(waitlisted=st.booleans())
def test_a_left_registration_is_gone_everywhere(
    client: TestClient, pool: list[str], waitlisted: bool
) -> None:
    """Unregistration persistence round-trip.

    After a 204 from DELETE, the registration is in neither the user's list
    nor the event's list, GET of it answers 404 REGISTRATION_NOT_FOUND, and a
    second DELETE answers 404 too.
    """
    event_id = create_event(client, capacity=1, waitlistEnabled=True)["eventId"]
    if waitlisted:
        assert register(client, pool[0], event_id).status_code == 201
    user_id = create_user(client)
    expected = "waitlist" if waitlisted else "confirmed"
    assert register(client, user_id, event_id).json()["status"] == expected
    assert leave(client, user_id, event_id).status_code == 204
    assert user_registrations(client, user_id) == []
    assert user_id not in [r["userId"] for r in event_registrations(client, event_id)]
    assert_error(
        client.get(f"/users/{user_id}/registrations/{event_id}"), 404, "REGISTRATION_NOT_FOUND"
    )
    assert_error(leave(client, user_id, event_id), 404, "REGISTRATION_NOT_FOUND")
    assert user_id not in get_event(client, event_id)["waitlist"]


# --------------------------------------------------------------------------
# Listing registrations
# --------------------------------------------------------------------------


@given(
    plans=st.lists(
        st.sampled_from(["confirmed", "waitlist", "full", "left", "closed"]),
        min_size=0,
        max_size=6,
    ),
    limit=st.one_of(st.none(), st.integers(1, 3)),
)
def test_a_users_list_holds_exactly_their_live_registrations(
    client: TestClient, pool: list[str], plans: list[str], limit: int | None
) -> None:
    """Complete registration list, status inclusion and accuracy.

    GET /users/{id}/registrations lists every confirmed and every waitlisted
    registration of the user (over all pages of any ``limit``), each with the
    right status, eventTitle and eventDate, and nothing they left, were
    refused, or never joined; ``total`` counts them all.
    """
    user_id = create_user(client)
    expected: dict[str, dict[str, str]] = {}
    for n, plan in enumerate(plans):
        title, event_date = f"Event {n} \u2013 {plan}", f"2025-0{1 + n % 9}-1{n % 10}"
        event = create_event(
            client, title=title, date=event_date, capacity=1, waitlistEnabled=plan == "waitlist"
        )
        event_id = event["eventId"]
        if plan in {"waitlist", "full"}:
            assert register(client, pool[0], event_id).status_code == 201
        if plan == "closed":
            assert put_event(client, event_id, status="cancelled").status_code == 200
            assert_error(register(client, user_id, event_id), 409, "EVENT_NOT_OPEN")
            continue
        response = register(client, user_id, event_id)
        if plan == "full":
            assert_error(response, 409, "EVENT_FULL")
            continue
        assert response.status_code == 201, response.text
        if plan == "left":
            assert leave(client, user_id, event_id).status_code == 204
            continue
        expected[event_id] = {"status": plan, "eventTitle": title, "eventDate": event_date}
    listed = user_registrations(client, user_id, limit)
    assert len({r["eventId"] for r in listed}) == len(listed)
    assert {
        r["eventId"]: {
            "status": r["status"],
            "eventTitle": r["eventTitle"],
            "eventDate": r["eventDate"],
        }
        for r in listed
    } == expected
    for entry in listed:
        assert entry["userId"] == user_id
        assert entry["status"] in {"confirmed", "waitlist"}
        assert ("waitlistPosition" in entry) == (entry["status"] == "waitlist")


def test_an_unknown_users_list_is_not_found_and_a_new_users_is_empty(client: TestClient) -> None:
    """An empty list is ``[]`` with total 0; an unknown user is 404."""
    user_id = create_user(client)
    response = client.get(f"/users/{user_id}/registrations")
    assert response.status_code == 200
    assert response.json()["registrations"] == []
    assert response.json()["total"] == 0
    assert_error(client.get(f"/users/{unique('ghost')}/registrations"), 404, "USER_NOT_FOUND")


@given(
    capacity=st.integers(1, 3),
    joiners=st.lists(pool_index, min_size=0, max_size=8, unique=True),
    limit=st.one_of(st.none(), st.integers(1, 3)),
)
def test_an_events_list_shows_confirmed_first_then_the_waitlist_in_order(
    client: TestClient,
    pool: list[str],
    capacity: int,
    joiners: list[int],
    limit: int | None,
) -> None:
    """GET /events/{id}/registrations is complete and ordered.

    Confirmed registrations come first, then the waitlist in FIFO order with
    positions 1..n, over all pages of any ``limit``; ``total`` equals
    registeredCount + waitlistCount.
    """
    event_id = create_event(client, capacity=capacity, waitlistEnabled=True)["eventId"]
    users = [pool[i] for i in joiners]
    for user_id in users:
        assert register(client, user_id, event_id).status_code == 201
    listed = event_registrations(client, event_id, limit)
    seated, queue = users[:capacity], users[capacity:]
    assert {r["userId"] for r in listed[: len(seated)]} == set(seated)
    assert [r["status"] for r in listed] == ["confirmed"] * len(seated) + ["waitlist"] * len(queue)
    assert [r["userId"] for r in listed[len(seated) :]] == queue
    assert [r["waitlistPosition"] for r in listed[len(seated) :]] == list(range(1, len(queue) + 1))
    assert_error(client.get(f"/events/{unique('no-event')}/registrations"), 404, "EVENT_NOT_FOUND")


@given(title=titles, event_date=event_dates, waitlisted=st.booleans())
def test_title_and_date_changes_show_in_registration_lists(
    client: TestClient, pool: list[str], title: str, event_date: str, waitlisted: bool
) -> None:
    """Registration status accuracy, after the event's title and date change."""
    event_id = create_event(client, capacity=1, waitlistEnabled=True)["eventId"]
    if waitlisted:
        assert register(client, pool[0], event_id).status_code == 201
    user_id = create_user(client)
    assert register(client, user_id, event_id).status_code == 201
    assert put_event(client, event_id, title=title, date=event_date).status_code == 200
    (entry,) = user_registrations(client, user_id)
    assert (entry["eventTitle"], entry["eventDate"]) == (title, event_date)
    assert entry["status"] == ("waitlist" if waitlisted else "confirmed")


# --------------------------------------------------------------------------
# Capacity changes, queue jumping, coming back
# --------------------------------------------------------------------------


@given(capacity=st.integers(1, 2), waiting=st.integers(0, 4), raise_by=st.integers(1, 5))
def test_raising_capacity_promotes_the_waitlist_in_fifo_order(
    client: TestClient, pool: list[str], capacity: int, waiting: int, raise_by: int
) -> None:
    """Raising capacity fills the new seats from the
    head of the waitlist, FIFO.

    The PUT's own response already shows the promotions (read-your-writes).
    """
    event_id = create_event(client, capacity=capacity, waitlistEnabled=True)["eventId"]
    seated, queue = pool[:capacity], pool[capacity : capacity + waiting]
    for user_id in seated + queue:
        assert register(client, user_id, event_id).status_code == 201
    response = put_event(client, event_id, capacity=capacity + raise_by)
    assert response.status_code == 200, response.text
    promoted = min(raise_by, len(queue))
    body = response.json()
    assert body["capacity"] == capacity + raise_by
    assert body["registeredCount"] == capacity + promoted
    assert body["waitlist"] == queue[promoted:]
    assert_conserved(body)
    assert get_event(client, event_id) == body
    for user_id in queue[:promoted]:
        assert status_of(client, user_id, event_id) == "confirmed"
    for user_id in queue[promoted:]:
        assert status_of(client, user_id, event_id) == "waitlist"


@given(capacity=st.integers(2, 5), data=st.data())
def test_capacity_cannot_drop_below_the_confirmed_count(
    client: TestClient, pool: list[str], capacity: int, data: st.DataObject
) -> None:
    """Lowering capacity below registeredCount answers
    409 CAPACITY_BELOW_REGISTERED.

    The event is unchanged; lowering to exactly registeredCount (or above)
    is allowed.
    """
    event_id = create_event(client, capacity=capacity, waitlistEnabled=True)["eventId"]
    seated = pool[: data.draw(st.integers(1, capacity))]
    for user_id in seated:
        assert register(client, user_id, event_id).status_code == 201
    before = get_event(client, event_id)
    if len(seated) > 1:
        too_low = data.draw(st.integers(1, len(seated) - 1))
        assert_error(
            put_event(client, event_id, capacity=too_low), 409, "CAPACITY_BELOW_REGISTERED"
        )
        # A refused update changes nothing, not even the other fields sent with it.
        assert_error(
            put_event(client, event_id, capacity=too_low, title="Renamed", waitlistEnabled=False),
            409,
            "CAPACITY_BELOW_REGISTERED",
        )
        assert get_event(client, event_id) == before
    fine = data.draw(st.integers(len(seated), capacity))
    response = put_event(client, event_id, capacity=fine)
    assert response.status_code == 200, response.text
    assert response.json()["availableSpots"] == fine - len(seated)


@given(capacity=st.integers(1, 3), waiting=st.integers(1, 2))
def test_a_newcomer_never_jumps_the_queue(
    client: TestClient, pool: list[str], capacity: int, waiting: int
) -> None:
    """While anyone waits, a newcomer is
    waitlisted at the tail.

    A seat freed by a leaving user goes to the head of the waitlist, not to
    whoever registers next.
    """
    event_id = create_event(client, capacity=capacity, waitlistEnabled=True)["eventId"]
    seated, queue = pool[:capacity], pool[capacity : capacity + waiting]
    for user_id in seated + queue:
        assert register(client, user_id, event_id).status_code == 201
    assert leave(client, seated[0], event_id).status_code == 204
    newcomer = create_user(client)
    response = register(client, newcomer, event_id)
    assert response.status_code == 201
    assert response.json()["status"] == "waitlist"
    assert response.json()["waitlistPosition"] == waiting
    assert get_event(client, event_id)["waitlist"] == [*queue[1:], newcomer]
    assert status_of(client, queue[0], event_id) == "confirmed"


@given(capacity=st.integers(1, 2), waiting=st.integers(0, 3), was_waiting=st.booleans())
def test_a_user_who_left_registers_again_as_a_newcomer(
    client: TestClient, pool: list[str], capacity: int, waiting: int, was_waiting: bool
) -> None:
    """A user who left may register again, as a
    newcomer: at the tail of any waitlist."""
    event_id = create_event(client, capacity=capacity, waitlistEnabled=True)["eventId"]
    model = EventModel(capacity, True)
    users = pool[: capacity + waiting]
    for user_id in users:
        check_outcome(register(client, user_id, event_id), model.register(user_id))
    returner = create_user(client)
    check_outcome(register(client, returner, event_id), model.register(returner))
    if was_waiting and returner not in model.waitlist and model.confirmed:
        # Make the returner a waiting user first when possible.
        check_outcome(leave(client, returner, event_id), model.leave(returner))
        check_outcome(register(client, returner, event_id), model.register(returner))
    check_outcome(leave(client, returner, event_id), model.leave(returner))
    response = register(client, returner, event_id)
    check_outcome(response, model.register(returner))
    if model.waitlist:
        assert model.waitlist[-1] == returner
        assert response.json()["waitlistPosition"] == len(model.waitlist)
    assert_event_matches(client, event_id, model)


# --------------------------------------------------------------------------
# Conservation over any history
# --------------------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("register"), pool_index),
        st.tuples(st.just("register"), pool_index),
        st.tuples(st.just("leave"), pool_index),
        st.tuples(st.just("capacity"), st.integers(1, 5)),
        st.tuples(st.just("waitlist"), st.booleans()),
    ),
    max_size=16,
)


@given(capacity=st.integers(1, 4), waitlist=st.booleans(), ops=operations)
def test_counts_are_conserved_after_every_step(
    client: TestClient,
    pool: list[str],
    capacity: int,
    waitlist: bool,
    ops: list[tuple[str, Any]],
) -> None:
    """Capacity conservation invariant.

    After every register, leave, capacity change and waitlist toggle,
    registeredCount + availableSpots == capacity, waitlistCount equals the
    waitlist's length, free spots imply an empty waitlist, and the event
    agrees with a reference model.
    """
    event_id = create_event(client, capacity=capacity, waitlistEnabled=waitlist)["eventId"]
    model = EventModel(capacity, waitlist)
    for kind, arg in ops:
        op: tuple[str, Any] = (kind, pool[arg] if kind in {"register", "leave"} else arg)
        apply_op(client, event_id, model, op)
        event = get_event(client, event_id)
        assert_conserved(event)
        assert event["registeredCount"] == len(model.confirmed)
        assert event["waitlist"] == model.waitlist
    assert_event_matches(client, event_id, model)
    for user_id in pool:
        expected = (
            "confirmed"
            if user_id in model.confirmed
            else "waitlist"
            if user_id in model.waitlist
            else None
        )
        assert status_of(client, user_id, event_id) == expected
