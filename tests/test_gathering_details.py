"""A gathering's details are said once, in ``GatheringDetails``: every one of
them is a field of the read row and of the command results, a field of the
request and response schemas, a column of the SQLite DDL, and survives a round
trip through the store under test (SQLite, or DynamoDB with ``--store dynamodb``).

A new detail that one of these misses fails here by name.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_type_hints
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from fastapi.testclient import TestClient
from pydantic.alias_generators import to_camel

from api.schemas import Event, EventCreate, EventUpdate
from domain.application import GatheringChanges, GatheringSpec, GatheringState
from domain.model import DETAIL_NAMES, Gathering, GatheringDetails, _details_defaulted
from infra.dynamodb.read_schema import event_attributes, event_row
from infra.sqlite.read_tables import TABLES_SCHEMA, create_read_tables
from infra.sqlite.rebuild import NEXT, SQLiteRebuildTarget
from infra.wiring import Container
from projections.views import EventRow
from tests.api.helpers import json_of

HINTS = get_type_hints(GatheringDetails)
DEFAULTS = {f.name: f.default for f in fields(GatheringDetails)}
# Details the API constrains beyond their type: a value it accepts, twice.
CONSTRAINED = {"date": ("2031-01-02", "2032-03-04"), "status": ("published", "draft")}
RECORDED = json.loads((Path(__file__).parent / "contract" / "stored_events_v1.json").read_text())


def sample(name: str, second: bool = False) -> Any:
    """A value of detail ``name`` that is not its default (``second``: another one)."""
    if name in CONSTRAINED:
        return CONSTRAINED[name][second]
    if HINTS[name] is bool:
        return bool(DEFAULTS[name]) if second else not DEFAULTS[name]
    return f"{name} {'two' if second else 'one'}"


def details(second: bool = False) -> dict[str, Any]:
    return {name: sample(name, second) for name in DETAIL_NAMES}


def on_the_wire(values: dict[str, Any]) -> dict[str, Any]:
    return {to_camel(name): value for name, value in values.items()}


def test_every_detail_is_a_field_of_the_read_row_and_of_the_command_results() -> None:
    for holder in (EventRow, GatheringSpec, GatheringState):
        missing = set(DETAIL_NAMES) - {f.name for f in fields(holder)}
        assert not missing, f"{holder.__name__} lacks {sorted(missing)}"


def test_every_detail_is_a_field_of_the_request_and_response_schemas() -> None:
    for schema in (EventCreate, EventUpdate, Event):
        missing = set(DETAIL_NAMES) - set(schema.model_fields)
        assert not missing, f"{schema.__name__} lacks {sorted(missing)}"
    # The update route hands every field it was sent to the command by name.
    assert set(EventUpdate.model_fields) == {*DETAIL_NAMES, "capacity"}


def test_every_detail_is_a_column_of_the_sqlite_gatherings_table() -> None:
    connection = sqlite3.connect(":memory:")
    connection.row_factory = sqlite3.Row
    create_read_tables(connection.cursor())
    columns = {row["name"] for row in connection.execute("PRAGMA table_info(gatherings)")}
    missing = set(DETAIL_NAMES) - columns
    assert not missing, f"the gatherings table's DDL lacks {sorted(missing)}"


def test_a_gatherings_table_of_an_earlier_version_gains_a_new_detail_at_start() -> None:
    """A table without a detail's column (created before the detail existed)
    gets it when the read tables are opened; its rows hold NULL, read as None."""
    connection = sqlite3.connect(":memory:")
    earlier = TABLES_SCHEMA.replace("    organizer TEXT,\n", "").format(t="")
    assert "organizer" not in earlier
    connection.executescript(earlier)
    connection.execute(
        "INSERT INTO gatherings (event_id, stream_id, title, description, date, status, capacity, "
        "waitlist_enabled, registered_count, waitlist_count, created_at, updated_at) "
        "VALUES ('e', 's', 'T', '', '2030-01-01', 'active', 1, 0, 0, 0, 'c', 'u')"
    )
    create_read_tables(connection.cursor())
    assert connection.execute("SELECT organizer FROM gatherings").fetchall() == [(None,)]
    create_read_tables(connection.cursor())  # and again: nothing more to add


def test_a_rebuild_resumed_by_a_newer_version_gets_the_columns_it_adds(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    target = SQLiteRebuildTarget(path)
    target.claim("older version", lease_seconds=30.0)
    with sqlite3.connect(path) as connection:  # its tables lack a detail added since
        connection.execute(f"ALTER TABLE gatherings{NEXT} DROP COLUMN organizer")
    target.claim("newer version", lease_seconds=0.0)  # the lease lapsed: taken over
    with sqlite3.connect(path) as connection:
        found = connection.execute(f"SELECT name FROM pragma_table_info('gatherings{NEXT}')")
        columns = {name for (name,) in found}
    target.close()
    assert set(DETAIL_NAMES) <= columns


def test_every_detail_is_an_attribute_of_the_dynamodb_item_and_reads_back() -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    row = EventRow(
        event_id="e",
        capacity=3,
        registered_count=1,
        waitlist_count=0,
        created_at=at,
        updated_at=at,
        **details(),
    )
    attributes = event_attributes(row)
    assert {to_camel(name) for name in DETAIL_NAMES} <= set(attributes)
    assert event_row(attributes, ()) == row


def test_every_detail_survives_a_round_trip_through_the_api(client: TestClient) -> None:
    created = json_of(
        client.post("/events", json={"eventId": "e", "capacity": 5, **on_the_wire(details())}),
        201,
    )
    assert created | on_the_wire(details()) == created
    assert json_of(client.get("/events/e"), 200) == created
    for name in DETAIL_NAMES:  # each detail changes alone
        changed = on_the_wire({name: sample(name, second=True)})
        updated = json_of(client.put("/events/e", json=changed), 200)
        assert updated | changed == updated, name
    read = json_of(client.get("/events/e"), 200)
    assert read | on_the_wire(details(second=True)) == read


def test_every_detail_survives_a_rebuild_of_the_read_tables(container: Container) -> None:
    service = container.service
    service.create_gathering(GatheringSpec(gathering_id="kept", capacity=5, **details()))
    service.create_gathering(GatheringSpec(gathering_id="changed", capacity=5, **details()))
    service.revise_gathering("changed", GatheringChanges(**details(second=True)))
    container.read_model.reset()
    container.projector.catch_up()
    for event_id, second in (("kept", False), ("changed", True)):
        row = container.read_model.get_event(event_id)
        assert row is not None
        assert GatheringDetails(**{n: getattr(row, n) for n in DETAIL_NAMES}).payload() == (
            GatheringDetails(**details(second)).payload()
        )


def test_an_amend_records_only_the_details_that_differ() -> None:
    gathering = Gathering.create("g", 5, GatheringDetails(**details()))
    gathering.collect_events()
    gathering.amend(details() | {"title": "Renamed", "location": None})
    (revised,) = gathering.collect_events()
    assert isinstance(revised, Gathering.Revised)
    assert {n: getattr(revised, n) for n in DETAIL_NAMES if getattr(revised, n) is not None} == {
        "title": "Renamed"
    }
    gathering.amend(details() | {"title": "Renamed"})
    assert gathering.collect_events() == []


def _created_v1() -> dict[str, Any]:
    (record,) = [
        r
        for r in RECORDED["notifications"]
        if r["topic"] == "domain.model:Gathering.Created" and r["state"]["gathering_id"] == "e1"
    ]
    return dict(record)


def test_a_created_event_stored_before_a_detail_existed_reads_its_default(
    container: Container,
) -> None:
    record = _created_v1()
    state = {k: v for k, v in record["state"].items() if k not in {"description", "organizer"}}
    stored = StoredEvent(
        originator_id=UUID(record["originator_id"]),
        originator_version=record["originator_version"],
        topic=record["topic"],
        state=json.dumps(state).encode(),
    )
    created = container.service.mapper.to_domain_event(stored)
    assert isinstance(created, Gathering.Created)
    gathering = created.mutate(None)
    assert isinstance(gathering, Gathering)
    # The two it lacks have their defaults; the rest are as recorded.
    assert gathering.details == GatheringDetails(
        "T", "2024-12-15", location="Berlin", status="active", waitlist_enabled=True
    )


def test_a_snapshot_stored_before_a_detail_existed_is_upcast_to_its_default() -> None:
    state: dict[str, Any] = {"title": "T", "date": "2024-12-15", "gathering_id": "g"}
    _details_defaulted(state)
    assert {n: state[n] for n in DETAIL_NAMES} == GatheringDetails("T", "2024-12-15").payload()
