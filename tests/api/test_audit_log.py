"""The ordered feed (/audit/log): every domain event in log order, with its metadata."""

from __future__ import annotations

import re
from contextvars import copy_context
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infra.logs import set_actor, set_request_id
from infra.wiring import Container
from projections.audit import AuditLog
from projections.catch_up import wait_until_logged
from tests.api.conftest import AUDITOR_KEY, CLIENT_KEY, bearer
from tests.api.helpers import json_of, validation_fields
from tests.support import create_event, register, unique

OCCURRED_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
AUDITOR = bearer(AUDITOR_KEY)


def settled(client: TestClient) -> int:
    """The log's head once it holds every write so far (DynamoDB indexes after the write)."""
    recorder = client.app.state.container.service.recorder  # type: ignore[attr-defined]
    wait_until_logged(recorder)
    return int(recorder.max_notification_id() or 0)


def feed(client: TestClient, after: int = 0, limit: int = 1000) -> dict[str, Any]:
    return json_of(client.get(f"/audit/log?after={after}&limit={limit}", headers=AUDITOR), 200)


def everything_after(client: TestClient, after: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    following: int | None = after
    while following is not None:
        page = feed(client, following)
        entries += page["entries"]
        following = page["next"]
    return entries


def test_each_write_appears_in_the_feed_with_its_request_id_and_actor(
    keyed_client: TestClient,
) -> None:
    start = settled(keyed_client)
    user_id = unique("user")
    keyed_client.post(
        "/users",
        json={"userId": user_id, "name": "Ada"},
        headers={**bearer(CLIENT_KEY), "X-Request-ID": "create-ada-1"},
    )
    event = create_event(keyed_client, capacity=1)
    register(keyed_client, user_id, event["eventId"])
    settled(keyed_client)
    entries = everything_after(keyed_client, start)
    created = [e for e in entries if e["type"] == "UserCreated"]
    assert [e["data"]["userId"] for e in created] == [user_id]
    assert created[0]["metadata"]["requestId"] == "create-ada-1"
    assert created[0]["metadata"]["actor"] == "reporting"  # the client key's name
    seat = next(e for e in entries if e["type"] == "SeatTaken")
    assert seat["data"]["userId"] == user_id
    assert seat["metadata"]["actor"] == "anonymous"
    assert {e["type"] for e in entries} >= {"GatheringCreated", "RegistrationCreated"}
    for entry in entries:
        # A sealed name's entry also shows what is stored (projections/personal.py).
        sealed = {"sealed"} if entry["type"] == "UserCreated" else set()
        assert set(entry) == {
            "position", "stream", "version", "type", "occurredAt", "data", "metadata"
        } | sealed  # fmt: skip
        assert OCCURRED_AT.fullmatch(entry["occurredAt"]), entry
        assert re.fullmatch(r"[0-9a-f]{64}", entry["metadata"]["hash"]), entry


def test_pages_follow_one_another_without_gaps_or_repeats(keyed_client: TestClient) -> None:
    for _ in range(3):
        create_event(keyed_client)
    head = settled(keyed_client)
    whole = feed(keyed_client, 0, 1000)["entries"]
    paged: list[dict[str, Any]] = []
    following: int | None = 0
    while following is not None:
        page = feed(keyed_client, following, 2)
        assert len(page["entries"]) <= 2
        paged += page["entries"]
        following = page["next"]
    assert paged == whole
    positions = [e["position"] for e in paged]
    assert positions == sorted(set(positions))
    assert positions[0] == 1
    assert positions[-1] == head


def test_next_is_null_at_the_head_and_a_page_past_it_is_empty(keyed_client: TestClient) -> None:
    for _ in range(3):  # at least three positions, whatever ran before on this client
        create_event(keyed_client)
    head = settled(keyed_client)
    assert feed(keyed_client, head - 1)["next"] is None
    assert feed(keyed_client, head) == {"entries": [], "next": None}
    assert feed(keyed_client, head + 1000) == {"entries": [], "next": None}
    assert feed(keyed_client, head - 2, 1)["next"] == head - 1


def test_the_feed_keeps_each_streams_versions_in_order(keyed_client: TestClient) -> None:
    event = create_event(keyed_client, capacity=50)
    for _ in range(5):
        user_id = unique("user")
        keyed_client.post("/users", json={"userId": user_id, "name": "N"})
        register(keyed_client, user_id, event["eventId"])
    settled(keyed_client)
    last: dict[str, int] = {}
    for entry in everything_after(keyed_client, 0):
        assert entry["version"] == last.get(entry["stream"], 0) + 1, entry
        last[entry["stream"]] = entry["version"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("after=-1", "after"),
        ("after=one", "after"),
    ],
)
def test_a_bad_after_or_limit_is_a_validation_error(
    keyed_client: TestClient, query: str, field: str
) -> None:
    response = keyed_client.get(f"/audit/log?{query}", headers=AUDITOR)
    assert field in validation_fields(response)


def test_commands_decided_together_keep_each_their_own_request_and_actor(
    container: Container,
) -> None:
    """The batcher decides many requests' commands in one thread and saves them in
    one transaction: each event still carries the request that caused it."""
    service = container.service
    futures = []
    for n in range(40):
        context = copy_context()
        context.run(set_request_id, f"request-{n}")
        context.run(set_actor, f"caller-{n % 3}")
        command = service.create_user_command(f"user-{n}", f"User {n}")
        futures.append(context.run(service.submit, command))
    for future in futures:
        future.result(timeout=30)
    wait_until_logged(service.recorder)
    audit = AuditLog(service.recorder, service.mapper.decode_state)
    entries, _ = audit.page(0, 1000)
    assert len(entries) == 40
    for entry in entries:
        n = int(entry["data"]["userId"].removeprefix("user-"))
        assert entry["metadata"]["requestId"] == f"request-{n}"
        assert entry["metadata"]["actor"] == f"caller-{n % 3}"


def test_an_after_beyond_any_position_is_a_validation_error_not_a_500(
    keyed_client: TestClient,
) -> None:
    for after in (2**63 - 1, 2**63, 2**53 + 1):
        response = keyed_client.get(f"/audit/log?after={after}", headers=AUDITOR)
        assert "after" in validation_fields(response)
    assert feed(keyed_client, after=2**53)["entries"] == []


def test_a_withdrawal_in_the_feed_names_its_event_and_no_storage_details(
    keyed_client: TestClient,
) -> None:
    start = settled(keyed_client)
    event_id = create_event(keyed_client, capacity=1)["eventId"]
    user_id = unique("user")
    keyed_client.post("/users", json={"userId": user_id, "name": "Ada"})
    register(keyed_client, user_id, event_id)
    before_leaving = settled(keyed_client)
    keyed_client.delete(f"/users/{user_id}/registrations/{event_id}")
    settled(keyed_client)
    # Read one entry a page, without its registration's creation on any page read.
    alone = [
        *feed(keyed_client, after=before_leaving, limit=1)["entries"],
        *feed(keyed_client, after=before_leaving + 1, limit=1)["entries"],
    ]
    (withdrawn,) = [e for e in alone if e["type"] == "RegistrationWithdrawn"]
    assert withdrawn["data"] == {"userId": user_id, "eventId": event_id}
    for entry in everything_after(keyed_client, start):
        assert not {"classVersion", "originatorTopic"} & set(entry["data"]), entry


# ---------------------------------------------------------------- filtered feed


def filtered(client: TestClient, query: str, after: int, limit: int) -> list[dict[str, Any]]:
    """Every page of the filtered feed after ``after``, following ``next`` to its end."""
    entries: list[dict[str, Any]] = []
    following: int | None = after
    while following is not None:
        page = json_of(
            client.get(f"/audit/log?{query}&after={following}&limit={limit}", headers=AUDITOR),
            200,
        )
        assert len(page["entries"]) <= limit
        entries += page["entries"]
        following = page["next"]
    return entries


def writes_of_one_request_among_others(client: TestClient) -> str:
    """A request id whose request wrote several events, among other requests' writes."""
    request_id = unique("req")
    event_id = create_event(client, capacity=1, waitlistEnabled=True)["eventId"]
    for n in range(3):
        user_id = unique("user")
        client.post("/users", json={"userId": user_id, "name": "N"})
        client.post(
            f"/users/{user_id}/registrations",
            json={"eventId": event_id},
            # The second registration (waitlisted) is the one request to find.
            headers={"X-Request-ID": request_id} if n == 1 else {},
        )
        create_event(client)
    return request_id


def one_requests_entries_among_others(client: TestClient) -> tuple[int, str, list[dict[str, Any]]]:
    """The log's position before, the request id, and that request's entries (in
    log order) among other requests' writes."""
    start = settled(client)
    request_id = writes_of_one_request_among_others(client)
    settled(client)
    entries = everything_after(client, start)
    return start, request_id, [e for e in entries if e["metadata"]["requestId"] == request_id]


@pytest.mark.parametrize("limit", [1, 2, 1000])
def test_the_request_id_filter_returns_exactly_that_requests_entries_across_pages(
    keyed_client: TestClient, limit: int
) -> None:
    start, request_id, expected = one_requests_entries_among_others(keyed_client)
    assert len(expected) >= 2  # the registration and its waitlist place
    assert filtered(keyed_client, f"requestId={request_id}", start, limit) == expected
    assert filtered(keyed_client, f"requestId={request_id}", 0, limit) == expected


def test_a_filtered_page_examines_no_more_entries_than_the_bound_and_next_reads_on(
    keyed_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    start, request_id, expected = one_requests_entries_among_others(keyed_client)
    assert expected
    audit = keyed_client.app.state.container.audit  # type: ignore[attr-defined]
    read = audit.recorder.select_notifications
    examined: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        notifications = read(*args, **kwargs)
        examined[-1] += len(notifications)
        return notifications

    monkeypatch.setattr(audit, "scan_bound", 3)
    monkeypatch.setattr(audit.recorder, "select_notifications", counted)
    entries: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    following: int | None = start
    while following is not None:
        examined.append(0)
        page = feed_page(keyed_client, f"requestId={request_id}", following, 1000)
        pages.append(page)
        entries += page["entries"]
        following = page["next"]
    assert entries == expected
    assert max(examined) <= 3
    # Every entry up to the last match was examined, three at most a request.
    assert sum(examined) >= expected[-1]["position"] - start
    # Pages that stopped at the bound with nothing found still said where to read on.
    assert any(not page["entries"] and page["next"] is not None for page in pages)


def feed_page(client: TestClient, query: str, after: int, limit: int) -> dict[str, Any]:
    return json_of(
        client.get(f"/audit/log?{query}&after={after}&limit={limit}", headers=AUDITOR), 200
    )


def test_the_event_and_user_filters_keep_the_entries_that_name_them(
    keyed_client: TestClient,
) -> None:
    start = settled(keyed_client)
    event_id = create_event(keyed_client, capacity=1, waitlistEnabled=True)["eventId"]
    other_event = create_event(keyed_client)["eventId"]
    ada, bob = unique("user"), unique("user")
    for user_id in (ada, bob):
        keyed_client.post("/users", json={"userId": user_id, "name": "N"})
        register(keyed_client, user_id, event_id)
    register(keyed_client, ada, other_event)
    keyed_client.delete(f"/users/{ada}/registrations/{event_id}")  # bob is promoted
    settled(keyed_client)
    whole = everything_after(keyed_client, start)
    assert whole[0]["type"] == "GatheringCreated"
    event_stream = whole[0]["stream"]
    about_event = [
        e for e in whole if e["stream"] == event_stream or e["data"].get("eventId") == event_id
    ]
    naming_ada = [e for e in whole if e["data"].get("userId") == ada]
    assert {e["type"] for e in about_event} >= {
        "GatheringCreated", "SeatTaken", "RegistrationCreated", "RegistrationWithdrawn",
        "PromotedFromWaitlist", "RegistrationPromoted",
    }  # fmt: skip
    assert filtered(keyed_client, f"eventId={event_id}", start, 2) == about_event
    assert {e["type"] for e in naming_ada} >= {"UserCreated", "RegistrationWithdrawn"}
    assert filtered(keyed_client, f"userId={ada}", start, 2) == naming_ada
    both = [e for e in about_event if e["data"].get("userId") == ada]
    assert both
    assert len(both) < len(naming_ada)
    assert filtered(keyed_client, f"eventId={event_id}&userId={ada}", start, 1000) == both


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("requestId=", "requestId"),
        ("requestId=two%20words", "requestId"),
        ("requestId=" + "r" * 129, "requestId"),
        ("requestId=caf%C3%A9", "requestId"),
        ("requestId=a%0A", "requestId"),
        ("eventId=a.b", "eventId"),
        ("userId=" + "u" * 101, "userId"),
    ],
)
def test_a_malformed_filter_is_a_validation_error(
    keyed_client: TestClient, query: str, field: str
) -> None:
    response = keyed_client.get(f"/audit/log?{query}", headers=AUDITOR)
    assert field in validation_fields(response)
