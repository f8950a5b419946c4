"""The in-process shard reader in cases DynamoDB Local never produces (a
parent shard and its child, an expired iterator, records trimmed from the
stream, empty pages before records), with a scripted DynamoDB Streams client
serving real records of the events table's stream; the index and the
checkpoints are DynamoDB Local's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from uuid import uuid4

from botocore.exceptions import ClientError
from eventsourcing.persistence import StoredEvent

from infra.dynamodb.shards import ShardPoller
from tests.dynamodb.test_indexer import assert_is_the_log_of, core, recorder, stream_records

if TYPE_CHECKING:
    import pytest
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

    from infra.dynamodb import DynamoDBApplicationRecorder, DynamoDBDatastore
    from tests.dynamodb.test_indexer import Commit

__all__ = ["recorder"]  # the fixture, shared with test_indexer


@dataclass
class ScriptedShard:
    records: list[dict[str, Any]]
    parent: str | None = None
    closed: bool = False
    empty_pages: dict[int, int] = field(default_factory=dict)
    """Position -> how many empty pages GetRecords serves there before the
    records that follow (AWS documents such pages)."""
    arrivals: list[dict[str, Any]] = field(default_factory=list)
    """Records written while the reader reads: one joins the shard at each
    GetRecords call on it."""


@dataclass
class ScriptedStreams:
    """DescribeStream, GetShardIterator and GetRecords over scripted shards;
    ``faults`` are raised, one per call, by the operation they name. An
    iterator that expired stays expired, as on AWS."""

    shards: dict[str, ScriptedShard]
    faults: dict[str, list[str]] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)
    expired: set[str] = field(default_factory=set)
    issued: int = 0

    def _fault(self, operation: str) -> None:
        pending = self.faults.get(operation)
        if pending:
            code = pending.pop(0)
            raise ClientError({"Error": {"Code": code, "Message": code}}, operation)

    def _iterator(self, shard_id: str, at: int) -> str:
        self.issued += 1
        return f"{shard_id}@{at}#{self.issued}"

    def describe_stream(self, **_: Any) -> dict[str, Any]:
        shards = [
            {"ShardId": shard_id, **({"ParentShardId": s.parent} if s.parent else {})}
            for shard_id, s in self.shards.items()
        ]
        return {"StreamDescription": {"Shards": shards}}

    def get_shard_iterator(
        self, *, ShardId: str, ShardIteratorType: str, SequenceNumber: str | None = None, **_: Any
    ) -> dict[str, Any]:
        self._fault("GetShardIterator")
        records = self.shards[ShardId].records
        at = 0
        if ShardIteratorType == "LATEST":
            at = len(records)
        if ShardIteratorType == "AFTER_SEQUENCE_NUMBER":
            numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
            at = sum(1 for n in numbers if n <= int(str(SequenceNumber)))
        return {"ShardIterator": self._iterator(ShardId, at)}

    def get_records(self, *, ShardIterator: str, Limit: int, **_: Any) -> dict[str, Any]:
        if ShardIterator in self.expired:
            self.faults.setdefault("GetRecords", []).insert(0, "ExpiredIteratorException")
        try:
            self._fault("GetRecords")
        except ClientError as error:
            if error.response["Error"]["Code"] == "ExpiredIteratorException":
                self.expired.add(ShardIterator)
            raise
        shard_id, at_text = ShardIterator.split("#", maxsplit=1)[0].rsplit("@", 1)
        self.reads.append(shard_id)
        shard = self.shards[shard_id]
        if shard.arrivals:
            shard.records.append(shard.arrivals.pop(0))
        at = int(at_text)
        if shard.empty_pages.get(at, 0) > 0:
            shard.empty_pages[at] -= 1
            return {"Records": [], "NextShardIterator": self._iterator(shard_id, at)}
        page = shard.records[at : at + Limit]
        following = at + len(page)
        done = shard.closed and following >= len(shard.records)
        return {
            "Records": page,
            **({} if done else {"NextShardIterator": self._iterator(shard_id, following)}),
        }


def one_event_commits(
    recorder: DynamoDBApplicationRecorder, streams: int, versions: int
) -> list[Commit]:
    commits: list[Commit] = []
    for _ in range(streams):
        stream = uuid4()
        for version in range(1, versions + 1):
            commit = [StoredEvent(stream, version, "t", f"{stream}/{version}".encode())]
            recorder.insert_events(commit)
            commits.append(commit)
    return commits


def poller(recorder: DynamoDBApplicationRecorder, streams: ScriptedStreams) -> ShardPoller:
    return ShardPoller(core(recorder), cast("DynamoDBStreamsClient", streams), records_per_read=3)


def ids_of(recorder: DynamoDBApplicationRecorder) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for n in recorder.select_notifications(1, 1000):
        found.setdefault(str(n.originator_id), []).append(n.id)
    return found


def test_a_child_shard_is_read_only_after_its_parent_is_done(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    parents = one_event_commits(recorder, streams=2, versions=3)
    children = one_event_commits(recorder, streams=2, versions=3)
    records = stream_records(datastore, recorder)
    # Listed child first: the poller must still read the parent to its end first.
    streams = ScriptedStreams(
        {
            "shard-2": ScriptedShard(records[6:], parent="shard-1"),
            "shard-1": ScriptedShard(records[:6], closed=True),
        }
    )

    poller(recorder, streams).drain()

    assert_is_the_log_of(recorder, parents + children)
    ids = ids_of(recorder)
    parent_ids = [i for c in parents for i in ids[str(c[0].originator_id)]]
    child_ids = [i for c in children for i in ids[str(c[0].originator_id)]]
    assert max(parent_ids) < min(child_ids)
    assert streams.reads.index("shard-2") > len(streams.reads) - 1 - streams.reads[::-1].index(
        "shard-1"
    )


def test_an_expired_iterator_is_renewed_from_the_checkpoint(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    commits = one_event_commits(recorder, streams=3, versions=3)
    streams = ScriptedStreams(
        {"shard-1": ScriptedShard(stream_records(datastore, recorder))},
        faults={"GetRecords": ["ExpiredIteratorException"]},
    )

    poller(recorder, streams).drain()

    assert streams.faults["GetRecords"] == []  # it was raised
    assert_is_the_log_of(recorder, commits)


def test_trimmed_records_are_counted_logged_and_recovered_when_their_stream_goes_on(
    datastore: DynamoDBDatastore,
    recorder: DynamoDBApplicationRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    commits = one_event_commits(recorder, streams=1, versions=10)
    records = stream_records(datastore, recorder)
    poller(recorder, ScriptedStreams({"shard-1": ScriptedShard(records[:4])})).drain()
    # A restart a day later: v5 and v6 left the stream (24 h retention) unindexed.
    trimmed = ScriptedStreams(
        {"shard-1": ScriptedShard(records[6:])},
        faults={"GetShardIterator": ["TrimmedDataAccessException"]},
    )
    restarted = poller(recorder, trimmed)

    with caplog.at_level(logging.ERROR):
        restarted.drain()

    assert restarted.lag().trimmed_shards == 1
    assert any("24 h retention" in r.getMessage() for r in caplog.records)
    assert_is_the_log_of(recorder, commits)  # v5, v6: read as v7's predecessors


def test_a_drains_poll_follows_empty_pages_to_the_records_behind_them(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    one_event_commits(recorder, streams=1, versions=3)
    streams = ScriptedStreams(
        {"shard-1": ScriptedShard(stream_records(datastore, recorder), empty_pages={0: 2})}
    )

    assert poller(recorder, streams).poll_once(every_shard=True, since=time.time()) == 3
    assert streams.reads == ["shard-1"] * 3


def test_drain_does_not_return_while_a_shard_holds_records_behind_empty_pages(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    commits = one_event_commits(recorder, streams=2, versions=4)
    records = stream_records(datastore, recorder)
    streams = ScriptedStreams(
        {
            # Records behind empty pages at the start, in the middle and
            # after the first read, in a shard left open; another at its tip.
            "shard-1": ScriptedShard(records[:4], empty_pages={0: 2, 3: 2, 4: 1}),
            "shard-2": ScriptedShard(records[4:], empty_pages={3: 2}),
        }
    )

    poller(recorder, streams).drain()

    assert_is_the_log_of(recorder, commits)
    assert all(
        count == 0 for shard in streams.shards.values() for count in shard.empty_pages.values()
    )


def test_consecutive_empty_pages_are_taken_as_the_tip_as_evidence_not_proof(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    one_event_commits(recorder, streams=1, versions=2)
    streams = ScriptedStreams(
        {"shard-1": ScriptedShard(stream_records(datastore, recorder), empty_pages={0: 8})}
    )
    reader = ShardPoller(
        core(recorder), cast("DynamoDBStreamsClient", streams), empty_pages_at_tip=3
    )

    assert [reader.poll_once(), reader.poll_once()] == [0, 0]
    assert reader.lag().seconds_since_caught_up is None  # two empty pages: not the tip
    assert reader.poll_once() == 0
    assert reader.lag().seconds_since_caught_up is not None  # three: the tip, as evidence only
    assert sum(reader.poll_once() for _ in range(6)) == 2  # the records behind them


def test_drain_ends_while_writes_go_on_once_it_read_past_a_record_written_after_the_call(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    commits = one_event_commits(recorder, streams=1, versions=40)
    records = stream_records(datastore, recorder)
    # The shard never shows an empty page while the drain runs, and every
    # record's creation time is before the call (DynamoDB Local rounds it
    # down to the minute): only the LATEST probe can tell where the call was.
    shard = ScriptedShard(records[:8], arrivals=records[8:])
    streams = ScriptedStreams({"shard-1": shard})

    poller(recorder, streams).drain(timeout=20)

    assert shard.arrivals  # writes were still going on
    indexed = ids_of(recorder)[str(commits[0][0].originator_id)]
    assert len(indexed) >= 8  # everything before the call, and some after


def modified(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records a rewrite of the same items would add (``regsvc seal-names``):
    MODIFY, the same new images, later sequence numbers."""
    last = max(int(r["dynamodb"]["SequenceNumber"]) for r in records)
    return [
        {
            **r,
            "eventName": "MODIFY",
            "dynamodb": {**r["dynamodb"], "SequenceNumber": str(last + i)},
        }
        for i, r in enumerate(records, start=1)
    ]


def test_a_rewritten_event_item_is_not_indexed_as_a_new_event(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    one_event_commits(recorder, streams=2, versions=2)
    rewrites = modified(stream_records(datastore, recorder))

    poller(recorder, ScriptedStreams({"shard-1": ScriptedShard(rewrites)})).drain()

    assert recorder.max_notification_id() is None


def test_the_log_is_unchanged_by_the_records_of_rewritten_event_items(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    commits = one_event_commits(recorder, streams=2, versions=3)
    records = stream_records(datastore, recorder)
    streams = ScriptedStreams({"shard-1": ScriptedShard([*records, *modified(records)])})

    poller(recorder, streams).drain()

    assert_is_the_log_of(recorder, commits)
