"""Tamper evidence: every stored event is chained to its stream's previous one, and
verify names the first link that does not hold, on each store, when an event is
altered or removed in the store itself."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any, cast
from uuid import UUID

import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper, StoredEvent

from domain.application import GatheringChanges, GatheringSpec
from domain.model import Gathering, GatheringDetails, gathering_aggregate_id
from infra.dynamodb import DynamoDBApplicationRecorder
from infra.dynamodb.errors import NotificationLogCorruptedError
from infra.dynamodb.layout import EVENT_PK, EVENT_SK, EVENTS, STATE
from infra.dynamodb.packing import item_holding
from infra.wiring import Container
from projections.audit import GENESIS, META, AuditLog, body, link
from projections.catch_up import wait_until_logged
from projections.fold import InlineChanges


def audit_of(container: Container) -> AuditLog:
    wait_until_logged(container.service.recorder)
    return container.audit


def a_gathering_with_history(container: Container, capacity: int = 2) -> str:
    service = container.service
    gathering_id = "pycon"
    service.create_gathering(
        GatheringSpec(gathering_id, "PyCon", "2025-05-01", capacity, waitlist_enabled=True)
    )
    for name in ("ada", "bob", "cy"):
        service.create_user(name, name.title())
        service.register(name, gathering_id)
    service.leave("ada", gathering_id)
    return gathering_id


def stored_event(container: Container, stream: UUID, version: int) -> StoredEvent:
    (found,) = container.service.recorder.select_events(stream, gt=version - 1, lte=version)
    return found


def altered(state: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    decoded = json.loads(state)
    change(decoded)
    return json.dumps(decoded, separators=(",", ":")).encode()


def overwrite(container: Container, stream: UUID, version: int, state: bytes) -> None:
    """Replaces an event's stored state in the store itself, behind the service's back
    (on DynamoDB in the events table: the feed references it)."""
    recorder = container.service.recorder
    if isinstance(recorder, DynamoDBApplicationRecorder):
        # The item holding the version: keyed by it, or by an earlier version
        # of the same commit, which holds it in its list of further events.
        holder = item_holding(
            recorder.client, recorder.events_table_name, (str(stream), version), consistent=True
        )
        assert holder is not None
        offset = version - int(holder[EVENT_SK]["N"])
        recorder.client.update_item(
            TableName=recorder.events_table_name,
            Key={EVENT_PK: holder[EVENT_PK], EVENT_SK: holder[EVENT_SK]},
            UpdateExpression="SET #s = :s" if offset == 0 else f"SET #e[{offset - 1}][1] = :s",
            ExpressionAttributeNames={"#s": STATE} if offset == 0 else {"#e": EVENTS},
            ExpressionAttributeValues={":s": {"B": state}},
        )
        return
    path = container.settings.event_store_path
    with sqlite3.connect(path) as db:
        changed = db.execute(
            "UPDATE stored_events SET state = ? WHERE originator_id = ? AND originator_version = ?",
            (state, stream.hex, version),
        ).rowcount
    assert changed == 1


def position_of(container: Container, stream: UUID, version: int) -> int:
    for notification in audit_of(container).notifications():
        if (notification.originator_id, notification.originator_version) == (stream, version):
            return notification.id
    raise AssertionError((stream, version))


def test_an_untouched_history_verifies(container: Container) -> None:
    a_gathering_with_history(container)
    report = audit_of(container).verify().report()
    head = container.service.recorder.max_notification_id()
    assert report["ok"] is True
    assert report["checked"] == head
    assert report["unsealed"] == 0
    assert report["firstBroken"] is None


def test_each_event_is_sealed_with_the_digest_chained_to_its_predecessor(
    container: Container,
) -> None:
    gathering_id = a_gathering_with_history(container)
    stream = gathering_aggregate_id(gathering_id)
    previous = GENESIS
    mapper = container.service.mapper
    for stored in container.service.recorder.select_events(stream):
        state = mapper.decode_state(stored)
        sealed = body(stream, stored.originator_version, stored.topic, state)
        previous = link(previous, sealed)
        assert state[META]["hash"] == previous


def test_an_altered_event_is_named_as_the_first_broken_link(container: Container) -> None:
    gathering_id = a_gathering_with_history(container)
    stream = gathering_aggregate_id(gathering_id)
    original = stored_event(container, stream, 3)
    assert original.topic.endswith("SeatTaken")
    position = position_of(container, stream, 3)

    def steal_the_seat(state: dict[str, Any]) -> None:
        state["user_id"] = "mallory"

    overwrite(container, stream, 3, altered(original.state, steal_the_seat))
    report = audit_of(container).verify().report()
    assert report["ok"] is False
    assert report["firstBroken"]["stream"] == str(stream)
    assert report["firstBroken"]["version"] == 3
    assert report["firstBroken"]["position"] == position
    assert report["checked"] == container.service.recorder.max_notification_id()


def test_an_event_committed_with_others_of_its_stream_is_checked_on_its_own(
    container: Container,
) -> None:
    """ada's leave promotes cy: SeatReleased (v5) and Promoted (v6) are one
    commit of the gathering (on DynamoDB one item); altering the second is
    caught, at its own version and position."""
    gathering_id = a_gathering_with_history(container)
    stream = gathering_aggregate_id(gathering_id)
    original = stored_event(container, stream, 6)
    assert original.topic.endswith("Promoted")
    position = position_of(container, stream, 6)
    recorder = container.service.recorder
    if isinstance(recorder, DynamoDBApplicationRecorder):
        holder = item_holding(
            recorder.client, recorder.events_table_name, (str(stream), 6), consistent=True
        )
        assert holder is not None
        assert holder[EVENT_SK]["N"] == "5"
    overwrite(container, stream, 6, altered(original.state, lambda s: s.update(user_id="mallory")))
    assert stored_event(container, stream, 5).topic.endswith("SeatReleased")  # untouched
    report = audit_of(container).verify().report()
    assert report["firstBroken"]["version"] == 6
    assert report["firstBroken"]["position"] == position


def test_an_event_altered_with_a_recomputed_digest_breaks_its_successor(
    container: Container,
) -> None:
    """Whoever rewrites an event and its own digest still breaks the next link."""
    gathering_id = a_gathering_with_history(container)
    stream = gathering_aggregate_id(gathering_id)
    mapper = container.service.mapper
    previous = json.loads(stored_event(container, stream, 1).state)[META]["hash"]
    original = stored_event(container, stream, 2)
    forged = mapper.decode_state(original) | {"user_id": "mallory"}
    state = json.loads(original.state) | {"user_id": "mallory"}
    state[META]["hash"] = link(previous, body(stream, 2, original.topic, forged))
    overwrite(container, stream, 2, json.dumps(state).encode())
    report = audit_of(container).verify().report()
    assert report["firstBroken"]["version"] == 3
    assert report["firstBroken"]["stream"] == str(stream)


def test_a_removed_event_breaks_the_chain(container: Container) -> None:
    gathering_id = a_gathering_with_history(container)
    stream = gathering_aggregate_id(gathering_id)
    recorder = container.service.recorder
    if isinstance(recorder, DynamoDBApplicationRecorder):
        wait_until_logged(recorder)
        recorder.client.delete_item(
            TableName=recorder.events_table_name,
            Key={EVENT_PK: {"S": str(stream)}, EVENT_SK: {"N": "2"}},
        )
        # The feed references the event the table no longer holds: reading the
        # log refuses to pass it (never a silent hole).
        with pytest.raises(NotificationLogCorruptedError, match=str(stream)):
            audit_of(container).verify()
        return
    with sqlite3.connect(container.settings.event_store_path) as db:
        db.execute(
            "DELETE FROM stored_events WHERE originator_id = ? AND originator_version = 2",
            (stream.hex,),
        )
    report = audit_of(container).verify().report()
    assert report["firstBroken"]["version"] == 3
    assert "follows version 1" in report["firstBroken"]["reason"]


def test_on_dynamodb_an_event_altered_in_the_events_table_is_caught(
    container: Container,
) -> None:
    recorder = container.service.recorder
    if not isinstance(recorder, DynamoDBApplicationRecorder):
        pytest.skip("DynamoDB's events table")
    gathering_id = a_gathering_with_history(container)
    stream = gathering_aggregate_id(gathering_id)
    position = position_of(container, stream, 2)
    original = stored_event(container, stream, 2)
    recorder.client.update_item(
        TableName=recorder.events_table_name,
        Key={EVENT_PK: {"S": str(stream)}, EVENT_SK: {"N": "2"}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": STATE},
        ExpressionAttributeValues={
            ":s": {"B": altered(original.state, lambda s: s.update(user_id="mallory"))}
        },
    )
    report = audit_of(container).verify().report()
    assert report["firstBroken"]["position"] == position
    assert report["firstBroken"]["version"] == 2


def test_a_history_recorded_before_sealing_stays_readable_and_is_sealed_by_what_follows(
    container: Container,
) -> None:
    """Events stored without metadata (before this version) decode as before; the
    chain runs through them, so the first sealed event after them seals them too."""
    service = container.service
    plain: Mapper[UUID] = Mapper(transcoder=service.mapper.transcoder)
    old = Gathering.create("legacy", 5, GatheringDetails(title="Old", date="2020-01-01"))
    old.revise(title="Older", description=None, date=None, location=None, organizer=None,
               status=None, waitlist_enabled=None)  # fmt: skip
    events = old.collect_events()
    service.recorder.insert_events(
        [plain.to_stored_event(e) for e in events],
        inline=InlineChanges(tuple(cast("list[Aggregate.Event]", events)), {old.id: "legacy"}),
    )
    service.revise_gathering("legacy", GatheringChanges(title="Newest"))
    assert service.get_gathering("legacy").title == "Newest"
    report = audit_of(container).verify().report()
    assert report["ok"] is True
    assert report["unsealed"] == 2

    stream = gathering_aggregate_id("legacy")
    first = stored_event(container, stream, 1)
    overwrite(container, stream, 1, altered(first.state, lambda s: s.update(capacity=500)))
    report = audit_of(container).verify().report()
    assert report["firstBroken"]["version"] == 3  # the first sealed event after it
