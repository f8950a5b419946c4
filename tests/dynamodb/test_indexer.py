"""The stream indexer builds one correct notification log from the events table's
DynamoDB Stream: dense ids, every stream's order kept, each commit together and
contiguous, each event exactly once, whatever order, repetition, interruption or
concurrency the records come with. Real DynamoDB Local, real Streams.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from infra.devtools.dynamodb_local import LOCAL_CREDENTIALS
from infra.dynamodb import DynamoDBApplicationRecorder, DynamoDBDatastore
from infra.dynamodb.indexer import ShardPoller, StreamIndexer
from tests.dynamodb.utils import new_datastore
from tests.wire import on_the_wire

if TYPE_CHECKING:
    from collections.abc import Sequence

Commit = list[StoredEvent]


@pytest.fixture
def recorder(datastore: DynamoDBDatastore) -> DynamoDBApplicationRecorder:
    recorder = DynamoDBApplicationRecorder(datastore)
    recorder.create_table()
    return recorder


def another_index(recorder: DynamoDBApplicationRecorder, name: str) -> DynamoDBApplicationRecorder:
    """A second notification log over the same events table (a reference to compare with)."""
    prefix = recorder.datastore.table_prefix
    other = DynamoDBApplicationRecorder(
        recorder.datastore,
        events_table_name=recorder.events_table_name.removeprefix(prefix),
        notifications_table_name=name,
    )
    other.create_table()
    return other


def core(recorder: DynamoDBApplicationRecorder) -> StreamIndexer:
    return StreamIndexer(
        recorder.client, recorder.events_table_name, recorder.notifications_table_name
    )


def write_commits(
    recorder: DynamoDBApplicationRecorder, count: int, seed: int, streams: int = 8
) -> list[Commit]:
    """``count`` commits of 1 to 6 events over a few streams, as commands write them."""
    rng = random.Random(seed)
    ids = [uuid4() for _ in range(streams)]
    versions = dict.fromkeys(ids, 0)
    commits: list[Commit] = []
    for _ in range(count):
        commit: Commit = []
        for stream in rng.sample(ids, rng.randint(1, 3)):
            for _ in range(rng.randint(1, 2)):
                versions[stream] += 1
                state = f"{stream}/{versions[stream]}".encode()
                commit.append(StoredEvent(stream, versions[stream], f"t{len(commit)}", state))
        recorder.insert_events(commit)
        commits.append(commit)
    return commits


def stream_records(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> list[Any]:
    """Every record the events table's stream holds, shard by shard, in order."""
    streams = datastore.streams_client
    arn = recorder.client.describe_table(TableName=recorder.events_table_name)["Table"][
        "LatestStreamArn"
    ]
    records: list[Any] = []
    description = streams.describe_stream(StreamArn=arn)["StreamDescription"]
    for shard in description["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        ).get("ShardIterator")
        while iterator:
            response = streams.get_records(ShardIterator=iterator, Limit=1000)
            records.extend(response["Records"])
            if not response["Records"]:
                break
            iterator = response.get("NextShardIterator")
    return records


def index_of(recorder: DynamoDBApplicationRecorder) -> list[tuple[int, str, int, bool]]:
    """The whole notification log: (id, oid, ver, ends a commit)."""
    ends = set(recorder.commit_ends(1, recorder.max_notification_id() or 0))
    rows: list[tuple[int, str, int, bool]] = []
    while True:
        page = recorder.select_notifications(len(rows) + 1, 500)
        if not page:
            return rows
        rows.extend((n.id, str(n.originator_id), n.originator_version, n.id in ends) for n in page)


def assert_is_the_log_of(recorder: DynamoDBApplicationRecorder, commits: Sequence[Commit]) -> None:
    """Dense ids, each event once, every stream in version order, each commit
    contiguous in append order and ended where it ends."""
    rows = index_of(recorder)
    total = sum(len(commit) for commit in commits)
    assert [row[0] for row in rows] == list(range(1, total + 1))
    assert recorder.max_notification_id() == (total or None)
    position = {(oid, ver): nid for nid, oid, ver, _ in rows}
    assert len(position) == total
    ends = {nid for nid, _, _, end in rows if end}
    for commit in commits:
        ids = [position[str(s.originator_id), s.originator_version] for s in commit]
        assert ids == list(range(ids[0], ids[0] + len(commit)))
        assert ids[-1] in ends
        assert not ends & set(ids[:-1])
    last_version: dict[str, int] = {}
    for _, oid, ver, _ in rows:
        assert ver == last_version.get(oid, 0) + 1, f"{oid} v{ver} out of stream order"
        last_version[oid] = ver
    assert len(ends) == len(commits)
    notifications = recorder.select_notifications(1, total or 1)
    for n in notifications:
        assert n.state == f"{n.originator_id}/{n.originator_version}".encode()


# ----- order and shape -----


def test_positions_are_dense_and_follow_every_streams_order(
    recorder: DynamoDBApplicationRecorder,
) -> None:
    commits = write_commits(recorder, 40, seed=1)

    recorder.wait_until_indexed()

    assert_is_the_log_of(recorder, commits)


def test_one_commits_events_are_contiguous_in_append_order_and_end_it(
    recorder: DynamoDBApplicationRecorder,
) -> None:
    a, b, c = uuid4(), uuid4(), uuid4()
    first = [StoredEvent(b, 1, "x", b"b1"), StoredEvent(a, 1, "x", b"a1")]
    second = [StoredEvent(c, 1, "x", b"c1")]
    third = [
        StoredEvent(a, 2, "x", b"a2"),
        StoredEvent(c, 2, "x", b"c2"),
        StoredEvent(b, 2, "x", b"b2"),
    ]
    for commit in (first, second, third):
        recorder.insert_events(commit)

    recorder.wait_until_indexed()

    assert [(oid, ver) for _, oid, ver, _ in index_of(recorder)] == [
        (str(b), 1), (str(a), 1), (str(c), 1), (str(a), 2), (str(c), 2), (str(b), 2),
    ]  # fmt: skip
    assert list(recorder.commit_ends(1, 6)) == [2, 3, 6]
    assert recorder.indexed_positions(third) == [4, 5, 6]


def test_an_appended_commit_is_not_in_the_log_until_indexed(
    recorder: DynamoDBApplicationRecorder,
) -> None:
    commit = [StoredEvent(uuid4(), 1, "x", b"s")]

    assert recorder.insert_events(commit) is None

    assert recorder.max_notification_id() is None
    assert recorder.indexed_positions(commit) is None
    recorder.wait_until_indexed()
    assert recorder.indexed_positions(commit) == [1]


# ----- exactly once -----


def test_redelivered_records_index_nothing_twice(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    commits = write_commits(recorder, 25, seed=2)
    records = stream_records(datastore, recorder)
    indexer = core(recorder)

    assert indexer.index_records(records) == sum(len(c) for c in commits)
    assert indexer.index_records(records) == 0
    assert core(recorder).index_records(records) == 0  # a fresh indexer, nothing remembered
    assert core(recorder).index_records(records[7:19]) == 0

    assert_is_the_log_of(recorder, commits)


def test_commits_whose_records_arrive_out_of_order_still_index_correctly(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    commits = write_commits(recorder, 40, seed=3)
    records = stream_records(datastore, recorder)
    rng = random.Random(3)
    rng.shuffle(records)
    indexer = core(recorder)

    start = 0
    while start < len(records):  # shuffled, in chunks of any size
        size = rng.randint(1, 15)
        indexer.index_records(records[start : start + size])
        start += size

    assert_is_the_log_of(recorder, commits)


def test_records_as_a_lambda_event_delivers_them_index_the_same(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    """An event source mapping delivers binary values as base64 text and
    times as epoch seconds; the same records in that form index the same."""
    commits = write_commits(recorder, 10, seed=4)

    event = {"Records": [on_the_wire(r) for r in stream_records(datastore, recorder)]}

    assert core(recorder).index_records(event["Records"]) == sum(len(c) for c in commits)
    assert_is_the_log_of(recorder, commits)


def test_two_indexers_running_at_once_produce_one_correct_index(
    dynamodb_endpoint: str, datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    commits = write_commits(recorder, 60, seed=5)
    records = stream_records(datastore, recorder)
    other_datastore = new_datastore(dynamodb_endpoint, table_prefix=datastore.table_prefix)
    indexers = [
        core(recorder),
        StreamIndexer(
            other_datastore.client, recorder.events_table_name, recorder.notifications_table_name
        ),
    ]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(n: int) -> None:
        mine = list(records)
        random.Random(n).shuffle(mine)  # each in its own order, in small batches
        try:
            start.wait()
            for i in range(0, len(mine), 6):
                indexers[n].index_records(mine[i : i + 6])
        except BaseException as error:  # pragma: no cover
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other_datastore.close()

    assert not errors, errors
    assert indexers[0].indexed_events + indexers[1].indexed_events == sum(len(c) for c in commits)
    assert_is_the_log_of(recorder, commits)


# ----- checkpoints and restarts -----


def test_an_indexer_restarted_from_its_checkpoint_continues_with_no_duplicates_or_holes(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    commits = write_commits(recorder, 30, seed=6)
    reference = another_index(recorder, "reference_index")
    reference.wait_until_indexed()  # an uninterrupted run, into its own table
    first = ShardPoller(core(recorder), datastore.streams_client, records_per_read=7)
    first.poll_once()
    first.poll_once()  # ...then it stops, as if killed

    second = ShardPoller(core(recorder), datastore.streams_client, records_per_read=7)
    second.drain()

    assert 0 < first.lag().indexed_events < second.lag().head
    assert_is_the_log_of(recorder, commits)
    assert index_of(recorder) == index_of(reference)


def test_an_indexer_killed_mid_stream_and_restarted_builds_the_index_of_an_uninterrupted_run(
    dynamodb_endpoint: str, datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    commits = write_commits(recorder, 80, seed=7)
    reference = another_index(recorder, "reference_index")
    reference.wait_until_indexed()
    script = textwrap.dedent(
        f"""
        from infra.dynamodb.indexer import ShardPoller, StreamIndexer
        from tests.dynamodb.utils import new_datastore
        ds = new_datastore({dynamodb_endpoint!r}, table_prefix={datastore.table_prefix!r})
        core = StreamIndexer(ds.client, {recorder.events_table_name!r},
                             {recorder.notifications_table_name!r})
        poller = ShardPoller(core, ds.streams_client, records_per_read=3)
        while True:
            poller.poll_once()
            print(core.head, flush=True)
        """
    )
    env = {**os.environ, **LOCAL_CREDENTIALS}
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:  # kill it once it is well under way
            if int(line) > 40:
                break
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(10)
    killed_at = recorder.max_notification_id() or 0
    assert 0 < killed_at < sum(len(c) for c in commits)

    ShardPoller(core(recorder), datastore.streams_client, records_per_read=3).drain()

    assert_is_the_log_of(recorder, commits)
    assert index_of(recorder) == index_of(reference)


def test_the_poller_reports_its_lag_and_is_caught_up_after_a_drain(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    write_commits(recorder, 5, seed=8)
    poller = recorder.indexer()
    assert poller.lag().seconds_since_caught_up is None

    poller.drain()

    lag = poller.lag()
    assert lag.pending_records == 0
    assert lag.oldest_pending_seconds is None
    assert lag.seconds_since_caught_up is not None
    assert lag.seconds_since_caught_up < 5
    assert lag.head == recorder.max_notification_id()
    assert lag.last_error is None


def test_the_age_of_pending_records_counts_from_no_earlier_than_the_last_empty_read(
    recorder: DynamoDBApplicationRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DynamoDB Local rounds a record's creation time down to the minute (AWS, to
    the second): the reported age must not include that rounding."""
    poller = recorder.indexer()
    poller.drain()  # the stream is empty from here on
    drained_at = time.monotonic()
    write_commits(recorder, 2, seed=9)

    def stuck(records: object) -> None:
        raise RuntimeError("indexing is stuck")

    monkeypatch.setattr(poller.indexer, "index_records", stuck)
    with pytest.raises(RuntimeError):
        poller.poll_once()

    age = poller.lag().oldest_pending_seconds
    assert age is not None
    assert age <= time.monotonic() - drained_at + 1.0


def test_the_poller_thread_indexes_what_is_written_while_it_runs(
    recorder: DynamoDBApplicationRecorder,
) -> None:
    poller = recorder.indexer()
    poller.start()
    try:
        commits = write_commits(recorder, 10, seed=9)
        deadline = time.monotonic() + 30
        total = sum(len(c) for c in commits)
        while (recorder.max_notification_id() or 0) < total and time.monotonic() < deadline:
            time.sleep(0.05)
        assert poller.lag().running
    finally:
        poller.stop()
    assert not poller.lag().running
    assert_is_the_log_of(recorder, commits)


def test_commits_that_trickle_in_are_indexed_several_per_round_not_one_round_each(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    """A round costs calls whatever it reads (GetRecords, a page, a checkpoint):
    the thread waits its interval after a page that is not full, as AWS's own
    poller does, so commits written one after another share rounds."""
    poller = ShardPoller(recorder.stream_indexer(), datastore.streams_client, poll_interval=0.5)
    poller.start()
    try:
        commits: list[Commit] = []
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            commits += write_commits(recorder, 1, seed=len(commits))
        written_for = time.monotonic() - started
        poller.drain()
    finally:
        poller.stop()
    # One page per round that read records: at most one per interval while
    # writing, and the drain's; one per commit if every round polled at once.
    assert poller.indexer.pages_written <= written_for / 0.5 + 3 < len(commits) / 2
    assert_is_the_log_of(recorder, commits)


def test_a_full_page_is_followed_at_once_not_after_the_interval(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    """A page as long as a read gives means more records wait: a backlog is
    read page after page, not one page per interval."""
    commits = [[StoredEvent(uuid4(), 1, "x", b"")] for _ in range(30)]  # pages of 10
    for commit in commits:
        recorder.insert_events(commit)
    poller = ShardPoller(
        recorder.stream_indexer(),
        datastore.streams_client,
        poll_interval=30.0,
        records_per_read=10,
    )
    poller.start()
    try:
        deadline = time.monotonic() + 20  # under one interval
        while (recorder.max_notification_id() or 0) < len(commits):
            assert time.monotonic() < deadline, "the backlog waited for the interval"
            time.sleep(0.05)
    finally:
        poller.stop()
    assert poller.indexer.pages_written == 3


def test_an_earlier_commit_missing_from_the_records_is_indexed_first(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    """Records may be lost to the stream's 24 h retention: a later commit of the
    same stream still brings its predecessors in, read from the events table."""
    stream: UUID = uuid4()
    commits = [[StoredEvent(stream, v, "x", f"{stream}/{v}".encode())] for v in (1, 2, 3)]
    for commit in commits:
        recorder.insert_events(commit)
    last_record = stream_records(datastore, recorder)[-1]

    core(recorder).index_records([last_record])

    assert_is_the_log_of(recorder, commits)


def test_a_streams_first_event_is_indexed_without_looking_for_one_before_it(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    """Version 1 follows nothing: indexing new streams reads no events, while a
    later version goes after its predecessor."""
    first = [[StoredEvent(uuid4(), 1, "x", b"")] for _ in range(5)]
    for commit in first:
        recorder.insert_events(commit)
    indexer = core(recorder)
    asked: list[str] = []

    def queries_of_events(params: dict[str, Any], **_: Any) -> None:
        if params["TableName"] == recorder.events_table_name:
            asked.append("Query")

    indexer.client.meta.events.register("provide-client-params.dynamodb.Query", queries_of_events)

    indexer.index_records(stream_records(datastore, recorder))
    assert asked == []

    stream = first[0][0].originator_id
    later = [StoredEvent(stream, 2, "x", b"")]
    recorder.insert_events(later)
    core(recorder).index_records(stream_records(datastore, recorder)[-1:])
    # v1's commit: a fresh indexer learns it is indexed from the pages it reads.
    rows = index_of(recorder)
    assert [(oid, ver) for _, oid, ver, _ in rows][-1] == (str(stream), 2)


def test_commits_of_one_stream_delivered_together_read_no_event_the_records_hold(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    """A commit packs a stream's events into one item keyed by its first version
    (as a hot gathering's batches do): the next commit's predecessor lies inside
    that item, which the same records already brought, so nothing is queried."""
    stream: UUID = uuid4()
    commits = [
        [StoredEvent(stream, v, "x", f"{stream}/{v}".encode()) for v in range(first, first + 3)]
        for first in (1, 4, 7)
    ]
    for commit in commits:
        recorder.insert_events(commit)
    indexer = core(recorder)
    asked: list[dict[str, Any]] = []

    def queries_of_events(params: dict[str, Any], **_: Any) -> None:
        if params["TableName"] == recorder.events_table_name:
            asked.append(params)

    indexer.client.meta.events.register("provide-client-params.dynamodb.Query", queries_of_events)

    indexer.index_records(stream_records(datastore, recorder))

    assert asked == []
    assert_is_the_log_of(recorder, commits)


def test_waiting_until_indexed_covers_a_commit_the_stream_shows_late(
    recorder: DynamoDBApplicationRecorder,
) -> None:
    """A stream may show a write a moment after it committed: an empty poll
    then does not prove the log holds this process's own appends."""
    poller = recorder.indexer()
    read = poller._get_records
    hidden = iter(range(3))  # the first three reads see nothing yet

    def late(shard_id: str, iterator: str) -> tuple[list[dict[str, Any]], str | None] | None:
        if next(hidden, None) is not None:
            return [], iterator
        return read(shard_id, iterator)

    poller._get_records = late  # type: ignore[method-assign]
    commit = [StoredEvent(uuid4(), 1, "x", b""), StoredEvent(uuid4(), 1, "x", b"")]
    recorder.insert_events(commit)

    recorder.wait_until_indexed(timeout=30)

    assert recorder.indexed_positions(commit) == [1, 2]
