"""The read tables on DynamoDB: which writes reach the listing index, withdrawn
registrations kept as rows, and the one table-creation path."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from domain.application import GatheringChanges, GatheringSpec
from domain.model import GatheringStatus
from infra.dynamodb import DynamoDBApplicationRecorder
from infra.dynamodb.read_schema import (
    EVENT_LISTING,
    EVENTS_GSI,
    RETIRED_EVENTS_GSI,
    WITHDRAWN,
    item,
)
from infra.dynamodb.read_tables import DynamoDBReadModel, read_table_specs
from infra.dynamodb.tables import IndexSpec, TableSpec, ensure_tables
from infra.settings import Settings
from infra.wiring import Container, build_container
from tests.dynamodb.utils import new_datastore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

WRITE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")


def _parts(container: Container) -> tuple[DynamoDBReadModel, DynamoDBClient]:
    model = container.read_model
    recorder = container.service.recorder
    assert isinstance(model, DynamoDBReadModel)
    assert isinstance(recorder, DynamoDBApplicationRecorder)
    return model, recorder.client


class WriteLog:
    """Every item write sent by the clients it listens on (a botocore hook), as
    (operation, table, request of that item)."""

    def __init__(self, *clients: DynamoDBClient) -> None:
        self.writes: list[tuple[str, str, dict[str, Any]]] = []
        for client in {id(c): c for c in clients}.values():
            client.meta.events.register("before-parameter-build.dynamodb", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        operation = model.name
        if operation == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((kind, request),) = entry.items()
                self.writes.append((kind, request["TableName"], request))
        elif operation == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                for entry in requests:
                    ((kind, request),) = entry.items()
                    self.writes.append((kind, table, request))
        elif operation in WRITE_OPERATIONS:
            self.writes.append((operation, params["TableName"], params))

    def clear(self) -> None:
        self.writes.clear()


def _top_level(body: str) -> list[str]:
    """The comma-separated actions of a clause (commas inside a function's
    parentheses, as in ``if_not_exists(#a, :v)``, do not separate)."""
    actions, depth, start = [], 0, 0
    for n, char in enumerate(body):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            actions.append(body[start:n])
            start = n + 1
    actions.append(body[start:])
    return [action for action in actions if action.strip()]


def _updated_attributes(request: dict[str, Any]) -> set[str]:
    """The attributes an UpdateExpression sets, removes, adds or deletes (the
    path before ``=`` in SET, each path in REMOVE, the path before the value
    in ADD and DELETE)."""
    names = request.get("ExpressionAttributeNames", {})
    clauses = re.split(r"\b(SET|REMOVE|ADD|DELETE)\b", request["UpdateExpression"])
    found = set()
    for keyword, body in zip(clauses[1::2], clauses[2::2], strict=True):
        for action in _top_level(body):
            target = action.split("=")[0] if keyword == "SET" else action
            path = target.split()[0]
            found.add(names.get(path, path))
    return found


def _index_attributes(client: DynamoDBClient, table: str) -> dict[str, frozenset[str] | None]:
    """Per GSI of ``table`` (read back with DescribeTable): the attributes that
    key it or are projected into it; None when it projects ALL."""
    description: Any = client.describe_table(TableName=table)["Table"]
    table_keys = {key["AttributeName"] for key in description["KeySchema"]}
    found: dict[str, frozenset[str] | None] = {}
    for index in description.get("GlobalSecondaryIndexes", []):
        projection = index["Projection"]
        if projection["ProjectionType"] == "ALL":
            found[index["IndexName"]] = None
            continue
        keys = {key["AttributeName"] for key in index["KeySchema"]}
        found[index["IndexName"]] = frozenset(
            keys | table_keys | set(projection.get("NonKeyAttributes", []))
        )
    return found


def _index_writes(
    log: WriteLog, client: DynamoDBClient, events_table: str
) -> list[tuple[str, str, str]]:
    """(operation, index, why) of every logged write to ``events_table`` that
    writes one of its GSIs."""
    indexes = _index_attributes(client, events_table)
    assert indexes, "the events table has no index"
    found = []
    for kind, table, request in log.writes:
        if table != events_table:
            continue
        for index, attributes in indexes.items():
            if kind in ("Put", "PutItem", "Delete", "DeleteItem", "PutRequest", "DeleteRequest"):
                found.append((kind, index, "writes the whole row"))
            elif kind in ("Update", "UpdateItem"):
                changed = _updated_attributes(request)
                if attributes is None or changed & attributes:
                    found.append((kind, index, ", ".join(sorted(changed))))
    return found


def test_registrations_leaves_and_capacity_changes_never_write_the_listing_index(
    container: Container,
) -> None:
    model, client = _parts(container)
    service = container.service
    service.create_gathering(GatheringSpec("hot", "Hot", "2030-01-01", 1, waitlist_enabled=True))
    for user in ("ann", "bob", "cid"):
        service.create_user(user, user.title())
    log = WriteLog(client, model.client)

    service.register("ann", "hot")  # a seat
    service.register("bob", "hot")  # waitlisted
    service.register("cid", "hot")  # waitlisted
    service.leave("ann", "hot")  # bob is promoted
    service.revise_gathering("hot", GatheringChanges(capacity=2))  # cid is promoted

    events_table = model.tables().gatherings
    counted = [w for w in log.writes if w[1] == events_table]
    assert len(counted) == 5, counted  # each command updated the event's counts
    assert _index_writes(log, client, events_table) == []
    # And the listing still serves the event with its new counts.
    page = model.list_events(None, 10, None)
    assert [(row.event_id, row.registered_count, row.waitlist_count) for row in page.items] == [
        ("hot", 2, 0)
    ]


def test_creating_deleting_and_changing_the_status_of_an_event_write_the_listing_index(
    container: Container,
) -> None:
    """The check above sees index writes when there are some."""
    model, client = _parts(container)
    service = container.service
    log = WriteLog(client, model.client)
    service.create_gathering(GatheringSpec("soon", "Soon", "2030-01-01", 5))
    service.revise_gathering("soon", GatheringChanges(status=GatheringStatus.CANCELLED))
    service.delete_gathering("soon")
    writes = _index_writes(log, client, model.tables().gatherings)
    assert [(kind, index) for kind, index, _ in writes] == [
        ("Put", EVENTS_GSI),
        ("Update", EVENTS_GSI),
        ("Delete", EVENTS_GSI),
    ]


def _registration_item(model: DynamoDBReadModel, user: str, event: str) -> dict[str, Any] | None:
    found = model.client.get_item(
        TableName=model.tables().registrations,
        Key={"userId": {"S": user}, "eventId": {"S": event}},
        ConsistentRead=True,
    )
    item: dict[str, Any] | None = found.get("Item")
    return item


def test_a_withdrawn_registration_stays_as_a_row_out_of_every_list(container: Container) -> None:
    model, _ = _parts(container)
    service = container.service
    for event in ("e1", "e2"):
        service.create_gathering(
            GatheringSpec(event, event, "2030-01-01", 1, waitlist_enabled=True)
        )
    service.create_user("ann", "Ann")
    service.create_user("bob", "Bob")
    service.register("ann", "e1")
    service.register("ann", "e2")
    service.register("bob", "e2")  # waitlisted
    service.leave("ann", "e1")
    service.leave("bob", "e2")  # off the waitlist

    for user, event in (("ann", "e1"), ("bob", "e2")):
        item = _registration_item(model, user, event)
        assert item is not None
        assert item["status"] == {"S": WITHDRAWN}
        assert "eventOrder" not in item  # so out of the sparse ORDER_GSI
        assert model.get_registration(user, event) is None
    mine = model.list_user_registrations("ann", 10, None)
    assert [(r.event_id, r.status) for r in mine.items] == [("e2", "confirmed")]
    assert mine.total == 1
    assert model.list_user_registrations("bob", 10, None).total == 0
    listed = model.list_event_registrations("e2", 10, None)
    assert [r.user_id for r in listed.items] == ["ann"]
    row = model.get_event("e2")
    assert row is not None
    assert row.waitlist == ()
    # The history: every event the user ever registered for.
    assert model.registered_event_ids("ann") == ["e1", "e2"]
    assert model.registered_event_ids("bob") == ["e2"]
    # No separate history table.
    names = set(model.client.list_tables()["TableNames"])
    assert f"{model.prefix}user_events" not in names
    assert container.check("read-tables").ok


def test_a_withdrawn_registration_made_again_is_listed_again(container: Container) -> None:
    model, _ = _parts(container)
    service = container.service
    service.create_gathering(GatheringSpec("e1", "E1", "2030-01-01", 1, waitlist_enabled=True))
    service.create_user("ann", "Ann")
    service.create_user("bob", "Bob")
    service.register("ann", "e1")
    service.leave("ann", "e1")
    service.register("bob", "e1")
    service.register("ann", "e1")  # back, now on the waitlist

    row = model.get_registration("ann", "e1")
    assert row is not None
    assert (row.status, row.waitlist_position) == ("waitlist", 1)
    listed = model.list_event_registrations("e1", 10, None)
    assert [(r.user_id, r.status) for r in listed.items] == [
        ("bob", "confirmed"),
        ("ann", "waitlist"),
    ]
    assert model.registered_event_ids("ann") == ["e1"]
    assert container.check("read-tables").ok


def test_tables_of_the_earlier_version_fail_the_check_until_one_rebuild(
    container: Container,
) -> None:
    """The earlier version deleted a withdrawn registration's row (its history
    was a user_events item): ``check`` reports the missing history, and the one
    ``make rebuild`` the README asks for brings it back."""
    model, client = _parts(container)
    service = container.service
    service.create_gathering(GatheringSpec("e1", "E1", "2030-01-01", 5))
    service.create_user("ann", "Ann")
    service.register("ann", "e1")
    service.leave("ann", "e1")
    client.delete_item(  # as the earlier version left it
        TableName=model.tables().registrations,
        Key={"userId": {"S": "ann"}, "eventId": {"S": "e1"}},
    )
    assert model.registered_event_ids("ann") == []
    assert not container.check("read-tables").ok

    container.rebuilder.begin()
    container.rebuilder.run()

    assert model.registered_event_ids("ann") == ["e1"]
    assert model.get_registration("ann", "e1") is None
    assert container.check("read-tables").ok


def test_a_rebuild_folds_withdrawn_registrations_into_rows(container: Container) -> None:
    model, _ = _parts(container)
    service = container.service
    service.create_gathering(GatheringSpec("e1", "E1", "2030-01-01", 1, waitlist_enabled=True))
    for user in ("ann", "bob"):
        service.create_user(user, user)
    service.register("ann", "e1")
    service.register("bob", "e1")
    service.leave("ann", "e1")  # bob promoted
    before = model.dump()

    container.rebuilder.begin()
    container.rebuilder.run()

    assert model.tables().generation == "green"
    item = _registration_item(model, "ann", "e1")
    assert item is not None
    assert item["status"] == {"S": WITHDRAWN}
    assert model.dump() == before
    assert container.check("read-tables").ok


def _index_names(client: DynamoDBClient, table: str) -> set[str]:
    description: Any = client.describe_table(TableName=table)["Table"]
    return {index["IndexName"] for index in description.get("GlobalSecondaryIndexes", [])}


def test_starting_on_tables_with_the_old_listing_index_builds_the_new_one_and_drops_the_old(
    settings: Settings, dynamodb_endpoint: str
) -> None:
    client = new_datastore(dynamodb_endpoint).client
    (spec,) = [
        s
        for s in read_table_specs(settings.dynamodb_table_prefix, ("blue",))
        if s.name.endswith("gatherings")
    ]
    # The events table as the previous version created it: the listing
    # projected ALL, under its old name; rows in it.
    old = TableSpec(
        spec.name, "eventId", "S", indexes=(IndexSpec(RETIRED_EVENTS_GSI, "listing", "eventId"),)
    )
    ensure_tables(client, [old])
    for event_id, status in (("e1", "active"), ("e2", "draft")):
        client.put_item(
            TableName=spec.name,
            Item=item(
                {
                    "eventId": event_id,
                    "listing": EVENT_LISTING,
                    "title": event_id,
                    "date": "2030-01-01",
                    "status": status,
                    "capacity": 3,
                    "waitlistEnabled": False,
                    "registeredCount": 0,
                    "waitlistCount": 0,
                    "createdAt": "2026-01-01T00:00:00+00:00",
                    "updatedAt": "2026-01-01T00:00:00+00:00",
                }
            ),
        )
    assert _index_names(client, spec.name) == {RETIRED_EVENTS_GSI}

    started = build_container(settings)  # the new version starts on that table
    started.start()
    try:
        model, _ = _parts(started)
        assert _index_names(client, spec.name) == {EVENTS_GSI}
        everything = model.list_events(None, 1, None)
        assert ([r.event_id for r in everything.items], everything.total) == (["e1"], 2)
        assert everything.next_token is not None
        rest = model.list_events(None, 1, everything.next_token)
        assert [r.event_id for r in rest.items] == ["e2"]
        drafts = model.list_events("draft", 10, None)
        assert ([r.event_id for r in drafts.items], drafts.total) == (["e2"], 1)
    finally:
        started.close()
        client.close()


def test_a_table_that_has_the_new_listing_index_keeps_the_old_one_for_its_manager(
    container: Container,
) -> None:
    """As the stack's first migrating deployment leaves it: both indexes. The
    code leaves the old one for the stack's next deployment to drop."""
    model, client = _parts(container)
    (spec,) = [
        s for s in read_table_specs(model.prefix, ("blue",)) if s.name.endswith("gatherings")
    ]
    client.delete_table(TableName=spec.name)
    client.get_waiter("table_not_exists").wait(TableName=spec.name, WaiterConfig={"Delay": 1})
    both = replace(
        spec, indexes=(*spec.indexes, IndexSpec(RETIRED_EVENTS_GSI, "listing", "eventId"))
    )
    ensure_tables(client, [both])

    ensure_tables(client, [spec])

    assert _index_names(client, spec.name) == {EVENTS_GSI, RETIRED_EVENTS_GSI}


def test_every_table_is_created_through_the_one_table_creation_path() -> None:
    # Client calls that create or change a table, anywhere in the DynamoDB package.
    sources = Path(__file__).resolve().parents[2] / "infra" / "dynamodb"
    creating = sorted(
        path.relative_to(sources).as_posix()
        for path in sources.rglob("*.py")
        if re.search(r"client\.(create_table|update_table|update_time_to_live)\(", path.read_text())
    )
    assert creating == ["tables.py"]
