"""A gatherings row keeps a digest of its waitlist, so a read pairs the row only
with the waitlist that is its own, and serves it again from a cache for the same
row version without asking DynamoDB."""

from __future__ import annotations

from typing import Any

import pytest

from domain.application import GatheringChanges, GatheringSpec
from domain.errors import StoreUnavailableError
from infra.dynamodb import read_queries
from infra.dynamodb.read_schema import ORDER_GSI, order, plain
from infra.dynamodb.read_tables import DynamoDBReadModel
from infra.dynamodb.waitlists import DIGEST, DIGEST_KEPT, waiting_hash
from infra.wiring import Container


@pytest.fixture
def model(container: Container) -> DynamoDBReadModel:
    found = container.read_model
    assert isinstance(found, DynamoDBReadModel)
    return found


@pytest.fixture
def full(container: Container) -> Container:
    """Gathering ``g`` with one seat: ann holds it, bob and cid wait (in that order)."""
    service = container.service
    service.create_gathering(GatheringSpec("g", "G", "2030-01-01", 1, waitlist_enabled=True))
    for user in ("ann", "bob", "cid", "dan", "eve"):
        service.create_user(user, user.title())
    for user in ("ann", "bob", "cid"):
        service.register(user, "g")
    return container


class CallLog:
    """The read tables' calls a model sends (a botocore hook), leaving out the live
    pointer's reads of the state table."""

    def __init__(self, model: DynamoDBReadModel) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.state_table = model.tables().state
        model.client.meta.events.register("before-parameter-build.dynamodb", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if params.get("TableName") != self.state_table:
            self.calls.append((model.name, dict(params)))

    def during(self, action: Any) -> list[tuple[str, dict[str, Any]]]:
        self.calls.clear()
        action()
        return list(self.calls)


def _row(model: DynamoDBReadModel, event_id: str) -> dict[str, Any]:
    found = model.client.get_item(
        TableName=model.tables().gatherings, Key={"eventId": {"S": event_id}}, ConsistentRead=True
    )
    return plain(found["Item"])


def _waiting_rows(model: DynamoDBReadModel, event_id: str) -> list[dict[str, Any]]:
    """The registrations rows of the people waiting (the table itself, read consistently)."""
    found = model.client.scan(TableName=model.tables().registrations, ConsistentRead=True)
    rows = [plain(item) for item in found["Items"]]
    return [r for r in rows if r["eventId"] == event_id and r["status"] == "waitlist"]


def _digest_of_the_real_waitlist(model: DynamoDBReadModel, event_id: str) -> int:
    return sum(waiting_hash(r["userId"], int(r["sortKey"])) for r in _waiting_rows(model, event_id))


def _waitlist(model: DynamoDBReadModel, event_id: str) -> tuple[str, ...]:
    event = model.get_event(event_id)
    assert event is not None
    return event.waitlist


def test_the_digest_is_the_sum_over_the_people_waiting_after_every_change_and_a_rebuild(
    full: Container, model: DynamoDBReadModel
) -> None:
    service = full.service

    def digest_matches() -> None:
        row = _row(model, "g")
        assert row[DIGEST_KEPT] is True
        assert int(row[DIGEST]) == _digest_of_the_real_waitlist(model, "g")

    digest_matches()  # a seat, then two waitlisted
    assert int(_row(model, "g")[DIGEST]) != 0
    service.register("dan", "g")
    digest_matches()  # waitlisted
    service.leave("ann", "g")
    digest_matches()  # a confirmed person left: bob promoted
    service.leave("cid", "g")
    digest_matches()  # a waiting person left
    service.register("eve", "g")
    service.register("cid", "g")  # back, with a new ticket
    digest_matches()
    service.revise_gathering("g", GatheringChanges(capacity=3))
    digest_matches()  # a raise promoted dan and eve
    assert _waitlist(model, "g") == ("cid",)
    live = _row(model, "g")

    model.reset()
    full.projector.catch_up()

    assert _row(model, "g")[DIGEST] == live[DIGEST]
    digest_matches()


def test_a_read_of_a_row_version_seen_before_makes_one_call(
    full: Container, model: DynamoDBReadModel
) -> None:
    assert _waitlist(model, "g") == ("bob", "cid")  # queried, verified, cached
    log = CallLog(model)

    calls = log.during(lambda: _waitlist(model, "g"))

    assert [name for name, _ in calls] == ["GetItem"]
    assert _waitlist(model, "g") == ("bob", "cid")


def test_a_list_page_serves_cached_waitlists_without_querying_the_index(
    full: Container, model: DynamoDBReadModel
) -> None:
    model.list_events(None, 20, None)
    log = CallLog(model)

    calls = log.during(lambda: model.list_events(None, 20, None))

    assert not [params for _, params in calls if params.get("IndexName") == ORDER_GSI]
    page = model.list_events(None, 20, None)
    assert [row.waitlist for row in page.items] == [("bob", "cid")]


def test_a_new_commit_is_not_served_the_waitlist_cached_for_the_version_before(
    full: Container, model: DynamoDBReadModel
) -> None:
    assert _waitlist(model, "g") == ("bob", "cid")  # cached

    full.service.leave("bob", "g")
    full.service.register("dan", "g")  # as many waiting as before

    assert _waitlist(model, "g") == ("cid", "dan")


def test_an_index_showing_another_set_of_the_same_size_is_refused_and_not_cached(
    full: Container, model: DynamoDBReadModel
) -> None:
    registrations = model.tables().registrations
    bob = {"userId": {"S": "bob"}, "eventId": {"S": "g"}}
    # The index loses bob and shows a stray zed in his place: two people wait,
    # as the row counts, but not the row's two.
    model.client.update_item(
        TableName=registrations,
        Key=bob,
        UpdateExpression="REMOVE eventOrder",
    )
    model.client.put_item(
        TableName=registrations,
        Item={
            "userId": {"S": "zed"},
            "eventId": {"S": "g"},
            "status": {"S": "waitlist"},
            "sortKey": {"N": "7"},
            "eventOrder": {"S": order("waitlist", 7)},
            "registeredAt": {"S": "2030-01-01T00:00:00+00:00"},
        },
    )

    with pytest.raises(StoreUnavailableError):
        model.get_event("g")
    assert len(model.waitlists) == 0

    # Once the index shows the row's waitlist again, it is served (and cached).
    model.client.delete_item(
        TableName=registrations, Key={"userId": {"S": "zed"}, "eventId": {"S": "g"}}
    )
    model.client.update_item(
        TableName=registrations,
        Key=bob,
        UpdateExpression="SET eventOrder = :o",
        ExpressionAttributeValues={":o": {"S": order("waitlist", _ticket(model, "bob"))}},
    )
    assert _waitlist(model, "g") == ("bob", "cid")
    assert len(model.waitlists) == 1


def _ticket(model: DynamoDBReadModel, user_id: str) -> int:
    found = model.client.get_item(
        TableName=model.tables().registrations,
        Key={"userId": {"S": user_id}, "eventId": {"S": "g"}},
        ConsistentRead=True,
    )
    return int(plain(found["Item"])["sortKey"])


def test_a_row_without_the_digest_is_read_as_before_and_not_cached(
    full: Container, model: DynamoDBReadModel
) -> None:
    """Tables filled before the digest existed: their rows have no marker."""
    model.client.update_item(
        TableName=model.tables().gatherings,
        Key={"eventId": {"S": "g"}},
        UpdateExpression="REMOVE #k",
        ExpressionAttributeNames={"#k": DIGEST_KEPT},
    )
    full.service.register("dan", "g")  # an ADD gives the row a digest; it is not trusted

    assert _waitlist(model, "g") == ("bob", "cid", "dan")
    assert len(model.waitlists) == 0


def test_places_in_a_users_list_come_from_the_cached_waitlist(
    full: Container, model: DynamoDBReadModel
) -> None:
    assert _waitlist(model, "g") == ("bob", "cid")  # cached
    log = CallLog(model)

    calls = log.during(lambda: model.list_user_registrations("cid", 10, None))

    assert not [params for _, params in calls if params.get("IndexName") == ORDER_GSI]
    page = model.list_user_registrations("cid", 10, None)
    assert [(row.event_id, row.waitlist_position) for row in page.items] == [("g", 2)]


def test_an_index_still_showing_someone_at_the_place_they_left_is_refused(
    full: Container, model: DynamoDBReadModel
) -> None:
    """bob left and joined again, behind cid: an index that still shows him at his
    old ticket shows the same people, in another order."""
    old_ticket = _ticket(model, "bob")
    full.service.leave("bob", "g")
    full.service.register("bob", "g")
    assert _waitlist(model, "g") == ("cid", "bob")
    model.waitlists = type(model.waitlists)()  # forget what was verified

    model.client.update_item(
        TableName=model.tables().registrations,
        Key={"userId": {"S": "bob"}, "eventId": {"S": "g"}},
        UpdateExpression="SET sortKey = :t, eventOrder = :o",
        ExpressionAttributeValues={
            ":t": {"N": str(old_ticket)},
            ":o": {"S": order("waitlist", old_ticket)},
        },
    )

    with pytest.raises(StoreUnavailableError):
        model.get_event("g")


def _counts(calls: list[tuple[str, dict[str, Any]]]) -> int:
    return sum(1 for name, params in calls if name == "Query" and params.get("Select") == "COUNT")


def test_a_first_page_holding_the_whole_list_is_its_own_total(
    full: Container, model: DynamoDBReadModel
) -> None:
    log = CallLog(model)
    pages: list[Any] = []

    calls = log.during(lambda: pages.append(model.list_user_registrations("bob", 10, None)))
    assert (_counts(calls), pages[-1].total, len(pages[-1].items)) == (0, 1, 1)

    calls = log.during(lambda: pages.append(model.list_events("active", 10, None)))
    assert (_counts(calls), pages[-1].total, len(pages[-1].items)) == (0, 1, 1)


def test_a_first_page_reads_ahead_so_a_short_list_is_counted_by_the_same_read(
    full: Container, model: DynamoDBReadModel
) -> None:
    full.service.create_gathering(GatheringSpec("h", "H", "2030-01-02", 1))
    log = CallLog(model)
    pages: list[Any] = []

    calls = log.during(lambda: pages.append(model.list_events(None, 1, None)))

    assert (_counts(calls), pages[-1].total, len(pages[-1].items)) == (0, 2, 1)
    assert pages[-1].next_token is not None


def test_a_list_longer_than_the_read_ahead_counts_what_follows_it(
    full: Container, model: DynamoDBReadModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    full.service.create_gathering(GatheringSpec("h", "H", "2030-01-02", 1))
    full.service.create_gathering(GatheringSpec("i", "I", "2030-01-03", 1))
    monkeypatch.setattr(read_queries, "READ_AHEAD", 1)
    log = CallLog(model)
    pages: list[Any] = []

    calls = log.during(lambda: pages.append(model.list_events(None, 1, None)))
    first = pages[-1]
    assert (_counts(calls), first.total, len(first.items)) == (1, 3, 1)

    calls = log.during(lambda: pages.append(model.list_events(None, 1, first.next_token)))
    assert (_counts(calls), pages[-1].total, [r.event_id for r in pages[-1].items]) == (1, 3, ["h"])
