"""Each stream's events of one commit in one item (infra.dynamodb.packing): what
a commit writes, that every read expands items (and still reads one-event items
written before packing), that the per-stream condition stays exact for writers
that append after what they read, and that an item stays under 400 KB."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from infra.dynamodb import DynamoDBApplicationRecorder
from infra.dynamodb.layout import EVENTS, MAX_ITEM_BYTES, item_size
from infra.dynamodb.packing import expand, pack
from tests.dynamodb.utils import indexed_ids

if TYPE_CHECKING:
    from infra.dynamodb import DynamoDBDatastore


@pytest.fixture
def recorder(datastore: DynamoDBDatastore) -> DynamoDBApplicationRecorder:
    recorder = DynamoDBApplicationRecorder(datastore)
    recorder.create_table()
    return recorder


def ev(oid: UUID, version: int, state: bytes | None = None) -> StoredEvent:
    return StoredEvent(oid, version, f"topic{version}", state or f"{oid}/{version}".encode())


def items_of(recorder: DynamoDBApplicationRecorder) -> list[dict[str, Any]]:
    """Every item of the events table (a consistent Scan)."""
    found: list[dict[str, Any]] = []
    scan: dict[str, Any] = {"TableName": recorder.events_table_name, "ConsistentRead": True}
    while True:
        response = recorder.client.scan(**scan)
        found.extend(response.get("Items", []))
        if "LastEvaluatedKey" not in response:
            return found
        scan["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def keys_of_items(recorder: DynamoDBApplicationRecorder) -> set[tuple[str, int]]:
    return {(i["oid"]["S"], int(i["ver"]["N"])) for i in items_of(recorder)}


def versions_held(recorder: DynamoDBApplicationRecorder, oid: UUID) -> list[int]:
    """Every version the stream's items hold, with repeats if two items hold one."""
    return sorted(
        int(event["ver"]["N"])
        for item in items_of(recorder)
        if item["oid"]["S"] == str(oid)
        for event in expand(item)
    )


def test_a_commit_writes_one_item_per_stream_keyed_by_its_first_version(
    recorder: DynamoDBApplicationRecorder,
) -> None:
    gathering, registration = uuid4(), uuid4()
    recorder.insert_events([ev(gathering, 1)])
    commit = [ev(gathering, 2), ev(registration, 1), ev(gathering, 3), ev(gathering, 4)]
    recorder.insert_events(commit)

    assert keys_of_items(recorder) == {
        (str(gathering), 1),
        (str(gathering), 2),
        (str(registration), 1),
    }
    assert recorder.select_events(gathering) == [ev(gathering, v) for v in (1, 2, 3, 4)]
    assert recorder.select_events(registration) == [ev(registration, 1)]
    # The index places the commit's events in append order, one id each.
    assert indexed_ids(recorder, commit) == [2, 3, 4, 5]
    notifications = recorder.select_notifications(1, 10)
    assert [(n.originator_id, n.originator_version) for n in notifications] == [
        (gathering, 1),
        (gathering, 2),
        (registration, 1),
        (gathering, 3),
        (gathering, 4),
    ]
    assert [n.state for n in notifications[1:]] == [s.state for s in commit]
    # From the middle of a commit: the events of an item keyed below the start.
    middle = recorder.select_notifications(4, 2)
    assert [(n.id, n.originator_version, n.state) for n in middle] == [
        (4, 3, commit[2].state),
        (5, 4, commit[3].state),
    ]
    positions = recorder.stream_notifications(gathering)
    assert [(s.originator_version, p) for s, p in positions] == [(1, 1), (2, 2), (3, 4), (4, 5)]


def test_every_range_of_a_stream_reads_the_events_of_items_that_straddle_it(
    recorder: DynamoDBApplicationRecorder,
) -> None:
    a = uuid4()
    # Items hold versions 1-3, 4, 5-9, 10-11.
    for versions in ((1, 2, 3), (4,), (5, 6, 7, 8, 9), (10, 11)):
        recorder.insert_events([ev(a, v) for v in versions])
    every = list(range(1, 12))
    for gt in (None, 0, 1, 3, 4, 6, 9, 11):
        for lte in (None, 2, 4, 7, 11):
            for desc in (False, True):
                for limit in (None, 1, 2, 5):
                    expected = [
                        v for v in every if (gt is None or v > gt) and (lte is None or v <= lte)
                    ]
                    expected = (expected[::-1] if desc else expected)[:limit]
                    found = recorder.select_events(a, gt=gt, lte=lte, desc=desc, limit=limit)
                    assert [e.originator_version for e in found] == expected, (gt, lte, desc, limit)
    assert recorder.stored_states([(a, v) for v in (2, 4, 7, 11)]) == {
        (str(a), v): f"{a}/{v}".encode() for v in (2, 4, 7, 11)
    }


def test_two_writers_that_read_the_same_version_race_for_one_key_and_one_wins(
    recorder: DynamoDBApplicationRecorder,
) -> None:
    a = uuid4()
    recorder.insert_events([ev(a, 1), ev(a, 2)])  # one item, keyed 1
    # Both read version 2 as the last; one appends 3-5 in one item, keyed 3.
    recorder.insert_events([ev(a, 3), ev(a, 4), ev(a, 5)])
    # The other appends 3 (alone, or with more): key 3 is taken.
    for late in ([ev(a, 3, b"late")], [ev(a, 3, b"late"), ev(a, 4, b"late")]):
        with pytest.raises(IntegrityError):
            recorder.insert_events(late)
    # A writer cannot append 6 without having read 3-5's item: then key 6 is new.
    recorder.insert_events([ev(a, 6)])
    assert versions_held(recorder, a) == [1, 2, 3, 4, 5, 6]


def test_the_condition_is_exact_only_for_writers_that_key_their_first_new_version(
    recorder: DynamoDBApplicationRecorder,
) -> None:
    """The precondition, shown: a version inside an item (2 of the item keyed 1)
    written again by a writer that never read it is not refused, since its key
    is free. An application never does that: it appends the version after the
    last one it loaded, which is always an item's end."""
    a = uuid4()
    recorder.insert_events([ev(a, 1), ev(a, 2)])
    recorder.insert_events([ev(a, 2, b"blind")])
    assert versions_held(recorder, a) == [1, 2, 2]


def test_writers_that_append_after_what_they_read_keep_each_version_in_one_item(
    recorder: DynamoDBApplicationRecorder,
) -> None:
    """Interleaved writers, each appending 1-3 events after the version it read
    (a stale read loses its race): the stream's items tile its versions, every
    version in exactly one item, and every append that succeeded is in it."""
    rng = random.Random(18)
    a = uuid4()
    read: list[int] = [0, 0, 0]  # the version each writer last read
    written: list[StoredEvent] = []
    conflicts = 0
    for _ in range(60):
        writer = rng.randrange(3)
        if rng.random() < 0.4:
            read[writer] = len(recorder.select_events(a))
            continue
        count = rng.randint(1, 3)
        appended = [
            ev(a, read[writer] + i, f"{writer}/{rng.random()}".encode())
            for i in range(1, count + 1)
        ]
        try:
            recorder.insert_events(appended)
        except IntegrityError:
            conflicts += 1
            continue
        written.extend(appended)
        read[writer] += count
    assert conflicts > 0, "the writers never raced: the test shows nothing"
    assert versions_held(recorder, a) == list(range(1, len(written) + 1))
    assert recorder.select_events(a) == written


def test_items_written_one_per_event_before_packing_stay_readable(
    recorder: DynamoDBApplicationRecorder,
) -> None:
    a, b = uuid4(), uuid4()
    old = [ev(a, 1), ev(b, 1), ev(a, 2)]
    for item in recorder._linked_items(old):  # as writers before packing wrote them
        recorder.client.put_item(TableName=recorder.events_table_name, Item=item)
    new = [ev(a, 3), ev(a, 4), ev(b, 2)]
    recorder.insert_events(new)
    assert len(items_of(recorder)) == 5
    assert recorder.select_events(a) == [ev(a, v) for v in (1, 2, 3, 4)]
    assert recorder.select_events(a, gt=1, lte=3) == [ev(a, 2), ev(a, 3)]
    assert indexed_ids(recorder, old) == [1, 2, 3]
    assert indexed_ids(recorder, new) == [4, 5, 6]
    assert [n.state for n in recorder.select_notifications(1, 10)] == [s.state for s in old + new]
    assert recorder.stored_states([(a, 2), (a, 4)]) == {
        (str(a), 2): f"{a}/2".encode(),
        (str(a), 4): f"{a}/4".encode(),
    }


def test_a_stream_whose_events_would_pass_an_items_bound_goes_on_in_a_second_item(
    recorder: DynamoDBApplicationRecorder,
) -> None:
    a, b = uuid4(), uuid4()
    big = b"x" * (MAX_ITEM_BYTES // 3)
    commit = [ev(b, 1), *(ev(a, v, big + bytes([v])) for v in range(1, 6))]
    recorder.insert_events(commit)
    items = items_of(recorder)
    assert all(item_size(item) <= MAX_ITEM_BYTES for item in items)
    assert sorted(
        (i["oid"]["S"], int(i["ver"]["N"]), len(i.get(EVENTS, {}).get("L", []))) for i in items
    ) == sorted([(str(b), 1, 0), (str(a), 1, 1), (str(a), 3, 1), (str(a), 5, 0)])
    assert recorder.select_events(a) == commit[1:]
    assert indexed_ids(recorder, commit) == [1, 2, 3, 4, 5, 6]
    assert [n.state for n in recorder.select_notifications(1, 10)] == [s.state for s in commit]


def test_packing_bounds_every_item_and_keeps_each_streams_versions_in_order() -> None:
    rng = random.Random(5)
    streams = [str(uuid4()) for _ in range(3)]
    versions = dict.fromkeys(streams, 0)
    events: list[dict[str, Any]] = []
    for _ in range(40):
        oid = rng.choice(streams)
        versions[oid] += 1
        size = rng.randint(1, 300)
        events.append(
            {
                "oid": {"S": oid},
                "ver": {"N": str(versions[oid])},
                "topic": {"S": "t"},
                "state": {"B": b"s" * size},
            }
        )
    packed = pack(events, max_bytes=1000)
    assert packed[0][1] == 0  # the first event's item first
    assert all(item_size(item) <= 1000 for item, _ in packed)
    expanded = [
        (e["oid"]["S"], int(e["ver"]["N"]), bytes(e["state"]["B"]))
        for item, _ in packed
        for e in expand(item)
    ]
    assert sorted(expanded) == sorted(
        (e["oid"]["S"], int(e["ver"]["N"]), e["state"]["B"]) for e in events
    )
    assert len(packed) < len(events)
