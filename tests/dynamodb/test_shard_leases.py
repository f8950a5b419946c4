"""Shard leases: with several pollers on one stream, at most one reads each
shard. The leases' conditions run on DynamoDB Local's index table; the stream
is the scripted Streams client of ``test_shards`` over the events table's real
records, in four shards (DynamoDB Local makes one). The pollers share a clock
that the tests move, so a lease's end is reached without waiting for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from infra.dynamodb.layout import LEASE_OWNER
from infra.dynamodb.shards import ShardPoller
from tests.dynamodb.test_indexer import assert_is_the_log_of, core, recorder, stream_records
from tests.dynamodb.test_shards import ScriptedShard, ScriptedStreams, one_event_commits

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

    from infra.dynamodb import DynamoDBApplicationRecorder, DynamoDBDatastore
    from tests.dynamodb.test_indexer import Commit

__all__ = ["recorder"]  # the fixture, shared with test_indexer

LEASE_SECONDS = 15.0
RENEW_SECONDS = 5.0


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def four_shards(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> tuple[list[Commit], dict[str, ScriptedShard]]:
    """Four streams of three events, each stream's records in a shard of its own."""
    commits = one_event_commits(recorder, streams=4, versions=3)
    by_stream: dict[str, list[dict[str, Any]]] = {}
    for record in stream_records(datastore, recorder):
        by_stream.setdefault(record["dynamodb"]["Keys"]["oid"]["S"], []).append(record)
    shards = {f"shard-{i}": ScriptedShard(records) for i, records in enumerate(by_stream.values())}
    return commits, shards


def leasing_poller(
    recorder: DynamoDBApplicationRecorder,
    shards: dict[str, ScriptedShard],
    clock: Clock,
    owner: str,
) -> tuple[ShardPoller, ScriptedStreams]:
    streams = ScriptedStreams(shards)  # its own client: its own list of reads
    poller = ShardPoller(
        core(recorder),
        cast("DynamoDBStreamsClient", streams),
        records_per_read=3,
        lease_seconds=LEASE_SECONDS,
        renew_seconds=RENEW_SECONDS,
        owner=owner,
        clock=clock,
    )
    return poller, streams


def test_two_pollers_on_one_stream_never_both_read_a_shard(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    commits, shards = four_shards(datastore, recorder)
    clock = Clock()
    a, a_streams = leasing_poller(recorder, shards, clock, "a")
    b, b_streams = leasing_poller(recorder, shards, clock, "b")

    for _ in range(12):  # a minute of rounds: every lease renewed several times
        a.poll_once()
        b.poll_once()
        clock.now += 5.5

    assert set(a_streams.reads) | set(b_streams.reads) == set(shards)
    assert not set(a_streams.reads) & set(b_streams.reads)
    assert a.leased_shards | b.leased_shards == set(shards)
    assert not a.leased_shards & b.leased_shards
    assert_is_the_log_of(recorder, commits)


def test_a_lease_of_a_killed_poller_is_taken_over_once_it_expires(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    commits, shards = four_shards(datastore, recorder)
    clock = Clock()
    killed, _ = leasing_poller(recorder, shards, clock, "killed")
    killed.poll_once()  # takes every lease, then is killed: no stop, no release
    survivor, streams = leasing_poller(recorder, shards, clock, "survivor")

    survivor.poll_once()
    clock.now += LEASE_SECONDS - 1
    survivor.poll_once()
    assert streams.reads == []  # the leases are still live

    clock.now += 2
    survivor.poll_once()

    assert set(streams.reads) == set(shards)
    assert survivor.leased_shards == set(shards)
    assert_is_the_log_of(recorder, commits)


def test_a_poller_that_lost_its_lease_stops_reading_the_shard(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    _, shards = four_shards(datastore, recorder)
    clock = Clock()
    stalled, stalled_streams = leasing_poller(recorder, shards, clock, "stalled")
    stalled.poll_once()
    clock.now += LEASE_SECONDS + 1  # it stalls past its leases' end...
    other, other_streams = leasing_poller(recorder, shards, clock, "other")
    other.poll_once()  # ...and another poller takes them over
    assert set(other_streams.reads) == set(shards)
    reads_before = len(stalled_streams.reads)

    for _ in range(3):  # it wakes up: its renewals fail
        stalled.poll_once()
        other.poll_once()
        clock.now += RENEW_SECONDS

    assert len(stalled_streams.reads) == reads_before
    assert stalled.leased_shards == frozenset()
    assert other.leased_shards == set(shards)


def test_a_stopped_poller_releases_its_leases_at_once(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    _, shards = four_shards(datastore, recorder)
    clock = Clock()
    first, _ = leasing_poller(recorder, shards, clock, "first")
    first.poll_once()
    first.stop()
    second, streams = leasing_poller(recorder, shards, clock, "second")

    second.poll_once()  # at the same instant: no lease to wait out

    assert set(streams.reads) == set(shards)


def test_leases_are_written_once_per_shard_per_renewal_not_per_poll(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    _, shards = four_shards(datastore, recorder)
    clock = Clock()
    poller, _ = leasing_poller(recorder, shards, clock, "one")
    lease_writes: list[str] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        if LEASE_OWNER in params.get("ExpressionAttributeNames", {}).values():
            lease_writes.append(params["Key"]["p"]["S"])

    events = recorder.client.meta.events
    events.register("provide-client-params.dynamodb.UpdateItem", count)
    try:
        for _ in range(40):  # 40 polls over 10 s
            poller.poll_once()
            clock.now += 0.25
    finally:
        events.unregister("provide-client-params.dynamodb.UpdateItem", count)

    # Taken at 0 s, renewed at 5 s: two writes per shard, not forty.
    assert sorted(lease_writes) == sorted([f"k#{shard}" for shard in shards] * 2)
