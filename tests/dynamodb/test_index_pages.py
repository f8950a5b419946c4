"""The feed indexed by reference: one page item per index write holding the
(stream, version) of the events it places, the events fetched from the events
table. Its cost (at most 0.1 WCU per event at batches of 50 or more, by AWS's
rule), its packing, the index items older deployments wrote still read as the
same log, and an indexer whose memory of pages is bounded reading older pages
again when it must.
"""

from __future__ import annotations

import json
import math
import random
import string
import threading
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent
from hypothesis import given
from hypothesis import strategies as st

from infra.dynamodb import DynamoDBApplicationRecorder, DynamoDBDatastore
from infra.dynamodb.indexer import ShardPoller, StreamIndexer
from infra.dynamodb.layout import (
    HEAD_LAST,
    MARKER_COUNT,
    MARKER_FIRST,
    head_key,
    index_item,
    item_size,
    marker_key,
    n_,
)
from infra.dynamodb.pages import Page, pack, unpack
from tests.dynamodb.test_indexer import (
    assert_is_the_log_of,
    core,
    recorder,
    stream_records,
    write_commits,
)
from tests.dynamodb.utils import new_datastore

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_dynamodb import DynamoDBClient

    from tests.dynamodb.test_indexer import Commit

__all__ = ["recorder"]  # the fixture, shared with test_indexer

KB = 1024


# ----- the budget ----------------------------------------------------------------


def write_units(operation: str, params: Mapping[str, Any], table: str) -> float:
    """WCU of one request's writes to ``table`` by AWS's rule: 1 per started KB
    per item written (a transaction's items 2), an update counted at the size
    of what it sets plus the key (the items updated here are small)."""
    if operation == "PutItem" and params["TableName"] == table:
        return math.ceil(item_size(params["Item"]) / KB)
    if operation == "UpdateItem" and params["TableName"] == table:
        values = params.get("ExpressionAttributeValues", {})
        size = item_size(params["Key"]) + item_size(values)
        return math.ceil(size / KB)
    if operation == "DeleteItem" and params["TableName"] == table:
        return 1
    if operation == "TransactWriteItems":
        units = 0
        for entry in params["TransactItems"]:
            for kind, request in entry.items():
                if request["TableName"] != table or kind == "ConditionCheck":
                    continue
                written = request.get("Item") or {
                    **request["Key"],
                    **request.get("ExpressionAttributeValues", {}),
                }
                units += 2 * math.ceil(item_size(written) / KB)
        return units
    if operation == "BatchWriteItem":
        return sum(
            math.ceil(item_size(request["PutRequest"]["Item"]) / KB)
            if "PutRequest" in request
            else 1
            for request in params["RequestItems"].get(table, [])
        )
    return 0


class IndexWrites:
    """Every write the indexer's client sends to the index table, in WCU."""

    def __init__(self, client: Any, table: str) -> None:
        self.table = table
        self.units = 0.0
        self.requests = 0
        client.meta.events.register("provide-client-params.dynamodb", self._hook)

    def _hook(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        units = write_units(model.name, params, self.table)
        if units:
            self.units += units
            self.requests += 1


def registrations(
    recorder: DynamoDBApplicationRecorder, gatherings: int, people: int, seed: int
) -> int:
    """A gathering created per gathering (one event), then ``people``
    registrations spread over them, each a commit of the gathering's next
    version and the new registration's first, with JSON states of realistic
    size. Returns the number of events written."""
    rng = random.Random(seed)
    versions: dict[UUID, int] = {}
    events = 0
    for _ in range(gatherings):
        gathering = uuid4()
        versions[gathering] = 1
        state = json.dumps({"title": "".join(rng.choices(string.ascii_letters, k=60)), "seats": 40})
        recorder.insert_events(
            [StoredEvent(gathering, 1, "domain.model:Gathering.Created", state.encode())]
        )
        events += 1
    for n in range(people):
        gathering = rng.choice(list(versions))
        versions[gathering] += 1
        who = {
            "user_id": f"user-{n}",
            "seat": versions[gathering] - 1,
            "at": "2026-12-07T04:00:00Z",
        }
        recorder.insert_events(
            [
                StoredEvent(
                    gathering,
                    versions[gathering],
                    "domain.model:Gathering.SeatTaken",
                    json.dumps(who).encode(),
                ),
                StoredEvent(
                    uuid4(), 1, "domain.model:Registration.Confirmed", json.dumps(who).encode()
                ),
            ]
        )
        events += 2
    return events


def test_the_index_costs_at_most_a_tenth_of_a_write_unit_per_event_at_batches_of_fifty(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    events = registrations(recorder, gatherings=40, people=300, seed=18)
    indexer = core(recorder)
    writes = IndexWrites(indexer.client, recorder.notifications_table_name)
    poller = ShardPoller(indexer, datastore.streams_client, records_per_read=100)

    poller.drain()  # 100 records a round: index writes of 50 to 100 events

    assert indexer.indexed_events == events
    per_event = writes.units / events
    assert per_event <= 0.1, f"{writes.units} WCU for {events} events: {per_event:.3f} per event"
    assert recorder.max_notification_id() == events


# ----- packing -------------------------------------------------------------------

oids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),  # not canonical: kept as text
    st.text(min_size=1, max_size=40),
)
commits = st.lists(
    st.lists(st.tuples(oids, st.integers(min_value=0, max_value=2**40)), min_size=1, max_size=8),
    min_size=1,
    max_size=20,
)


@given(commits=commits, first=st.integers(min_value=1, max_value=2**40))
def test_a_page_unpacks_to_the_commits_it_packed(
    commits: list[list[tuple[str, int]]], first: int
) -> None:
    assert unpack(pack(commits)) == commits
    page = Page(first, tuple(tuple(keys) for keys in commits))
    assert Page.from_item(page.item()) == page
    assert page.end == first + sum(len(keys) for keys in commits) - 1
    assert [end for _, _, end in page.entries()].count(True) == len(commits)


def test_a_page_of_fifty_uuid_events_is_one_write_unit() -> None:
    page = Page(10**9, tuple(((str(uuid4()), 10**4), (str(uuid4()), 1)) for _ in range(25)))
    assert item_size(page.item()) <= KB


# ----- index items written before pages ---------------------------------------


def old_commit(
    recorder: DynamoDBApplicationRecorder, events: list[tuple[UUID, int]]
) -> tuple[Commit, list[dict[str, Any]]]:
    """A commit appended as writers before pages did: no ``h`` on its items."""
    commit = [StoredEvent(oid, ver, "t", f"{oid}/{ver}".encode()) for oid, ver in events]
    items = recorder._linked_items(commit)
    for item in items:
        del item["h"]
        recorder.client.put_item(TableName=recorder.events_table_name, Item=item)
    return commit, items


def old_index(recorder: DynamoDBApplicationRecorder, indexed: list[list[dict[str, Any]]]) -> None:
    """The index as the indexer before pages wrote it: a copy of every event
    under p="log", a marker per commit, the head."""
    position = 0
    table = recorder.notifications_table_name
    for items in indexed:
        lead = items[0]
        recorder.client.put_item(
            TableName=table,
            Item={
                **marker_key(lead["oid"]["S"], int(lead["ver"]["N"])),
                MARKER_FIRST: n_(position + 1),
                MARKER_COUNT: n_(len(items)),
            },
        )
        for n, item in enumerate(items):
            position += 1
            copy = index_item(item, position, end=n == len(items) - 1)
            recorder.client.put_item(TableName=table, Item=copy)
    recorder.client.put_item(TableName=table, Item={**head_key(), HEAD_LAST: n_(position)})


def test_a_log_begun_before_pages_reads_on_and_is_continued_by_pages(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    s1, s2, s3 = uuid4(), uuid4(), uuid4()
    a, a_items = old_commit(recorder, [(s1, 1), (s2, 1)])
    b, b_items = old_commit(recorder, [(s1, 2)])
    old_index(recorder, [a_items, b_items])  # ids 1..3
    c, _ = old_commit(recorder, [(s2, 2)])  # appended, but not indexed before the upgrade
    d = [StoredEvent(s1, 3, "t", f"{s1}/3".encode()), StoredEvent(s3, 1, "t", f"{s3}/1".encode())]
    recorder.insert_events(d)

    indexer = core(recorder)
    assert indexer.index_records(stream_records(datastore, recorder)) == 3  # c and d only

    assert_is_the_log_of(recorder, [a, b, c, d])
    assert recorder.indexed_positions(a) == [1, 2]
    assert recorder.indexed_positions(c) == [4]
    assert recorder.indexed_positions(d) == [5, 6]
    assert list(recorder.commit_ends(1, 6)) == [2, 3, 4, 6]
    assert recorder.commit_end_after(3) == 3
    assert recorder.commit_end_after(5) == 6
    assert [n.id for n in recorder.select_notifications(3, 2)] == [3, 4]
    assert [position for _, position in recorder.stream_notifications(s1)] == [1, 3, 5]
    # Re-delivered, to this indexer or a new one: nothing twice.
    assert indexer.index_records(stream_records(datastore, recorder)) == 0
    assert core(recorder).index_records(stream_records(datastore, recorder)) == 0
    assert_is_the_log_of(recorder, [a, b, c, d])


# ----- a bounded window ---------------------------------------------------------


def forgetful_indexer(
    recorder: DynamoDBApplicationRecorder, monkeypatch: pytest.MonkeyPatch, **window: Any
) -> StreamIndexer:
    """An indexer that remembers nothing beyond its ``window`` (its memos hold one
    entry), fed by writers that never saw a page: every commit is looked for
    from the start of the index."""
    monkeypatch.setattr(recorder.head_hint, "value", lambda: 0)
    return StreamIndexer(
        recorder.client,
        recorder.events_table_name,
        recorder.notifications_table_name,
        memo_size=1,
        stream_memo_size=1,
        **window,
    )


def append_and_index(
    indexer: StreamIndexer,
    datastore: DynamoDBDatastore,
    recorder: DynamoDBApplicationRecorder,
    stream: UUID,
    version: int,
) -> Commit:
    """Appends one event and hands its stream record to ``indexer``."""
    commit = [StoredEvent(stream, version, "t", f"{stream}/{version}".encode())]
    recorder.insert_events(commit)
    indexer.index_records(stream_records(datastore, recorder)[-1:])
    return commit


def test_an_indexer_that_forgot_older_pages_reads_them_again_and_indexes_nothing_twice(
    datastore: DynamoDBDatastore,
    recorder: DynamoDBApplicationRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    indexer = forgetful_indexer(recorder, monkeypatch, window_events=3)
    streams = [uuid4() for _ in range(4)]
    commits = [
        append_and_index(indexer, datastore, recorder, streams[n % 4], n // 4 + 1)
        for n in range(12)
    ]
    assert indexer.pages_written == 12
    reads: list[str] = []
    indexer.client.meta.events.register(
        "provide-client-params.dynamodb.Query",
        lambda params, **_: reads.append(params["TableName"]),
    )

    assert indexer.index_records(stream_records(datastore, recorder)) == 0

    assert recorder.notifications_table_name in reads  # older pages, read again
    assert_is_the_log_of(recorder, commits)


def test_an_indexer_forgets_pages_older_than_its_window_in_time_however_few_events_they_hold(
    datastore: DynamoDBDatastore,
    recorder: DynamoDBApplicationRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    indexer = forgetful_indexer(recorder, monkeypatch, window_seconds=60, clock=lambda: now[0])
    commits = [append_and_index(indexer, datastore, recorder, uuid4(), 1) for _ in range(10)]
    remembered = len(indexer._pages)  # every page, well within the event bound

    now[0] += 61
    commits.append(append_and_index(indexer, datastore, recorder, uuid4(), 1))

    assert remembered == 10
    assert len(indexer._pages) == 1  # only the page it has just written
    # Re-delivered: the forgotten pages are read again and nothing is indexed twice.
    assert indexer.index_records(stream_records(datastore, recorder)) == 0
    assert_is_the_log_of(recorder, commits)


# ----- a page whose answer was lost ------------------------------------------


class _LosesTheFirstPutsAnswer:
    """Wraps a client so that the first PutItem of a page commits but its answer
    is lost and botocore retries it: the retry finds the page there and fails
    its condition, which is all the indexer hears."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_item(self, **kwargs: Any) -> Any:
        response = self._client.put_item(**kwargs)
        if self.lost:
            return response
        self.lost += 1
        return self._client.put_item(**kwargs)  # the retry: ConditionalCheckFailed


def test_a_page_put_whose_answer_was_lost_is_found_and_not_written_again(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    first = [StoredEvent(uuid4(), 1, "t", b"a"), StoredEvent(uuid4(), 1, "t", b"b")]
    recorder.insert_events(first)
    client = _LosesTheFirstPutsAnswer(recorder.client)
    indexer = StreamIndexer(
        cast("DynamoDBClient", client),
        recorder.events_table_name,
        recorder.notifications_table_name,
    )

    indexer.index_records(stream_records(datastore, recorder))
    second = [StoredEvent(uuid4(), 1, "t", b"c")]
    recorder.insert_events(second)
    indexer.index_records(stream_records(datastore, recorder))

    assert client.lost == 1
    assert indexer.retries == 1  # it read the page it had written, and went on
    assert [(n.id, n.state) for n in recorder.select_notifications(1, 10)] == [
        (1, b"a"),
        (2, b"b"),
        (3, b"c"),
    ]


def test_three_indexers_with_small_windows_racing_over_repeated_records_index_each_commit_once(
    dynamodb_endpoint: str, datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    commits = write_commits(recorder, 40, seed=18)
    records = stream_records(datastore, recorder)
    others = [
        new_datastore(dynamodb_endpoint, table_prefix=datastore.table_prefix) for _ in range(2)
    ]
    indexers = [
        StreamIndexer(
            store.client,
            recorder.events_table_name,
            recorder.notifications_table_name,
            window_events=4,
            memo_size=2,
            stream_memo_size=2,
        )
        for store in [datastore, *others]
    ]
    errors: list[BaseException] = []
    start = threading.Barrier(len(indexers))

    def run(n: int) -> None:
        mine = list(records) + random.Random(n).sample(records, len(records) // 2)
        random.Random(n).shuffle(mine)  # each in its own order, some twice
        try:
            start.wait()
            for i in range(0, len(mine), 5):
                indexers[n].index_records(mine[i : i + 5])
        except BaseException as error:  # pragma: no cover
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(indexers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in others:
        store.close()

    assert not errors, errors
    assert sum(i.indexed_events for i in indexers) == sum(len(c) for c in commits)
    assert sum(i.retries for i in indexers) > 0  # they did race for the head
    assert_is_the_log_of(recorder, commits)


def test_every_event_item_carries_the_end_of_a_page_its_writer_read_before_the_append(
    datastore: DynamoDBDatastore, recorder: DynamoDBApplicationRecorder
) -> None:
    def hints(commit: list[StoredEvent]) -> list[Any]:
        return [
            recorder.client.get_item(
                TableName=recorder.events_table_name,
                Key={"oid": {"S": str(s.originator_id)}, "ver": {"N": str(s.originator_version)}},
                ConsistentRead=True,
            )["Item"]["h"]
            for s in commit
        ]

    first = [StoredEvent(uuid4(), 1, "t", b"")]
    recorder.insert_events(first)  # no page yet
    recorder.wait_until_indexed()  # the page 1..1
    writer = DynamoDBApplicationRecorder(datastore)  # another process, first append
    second = [StoredEvent(uuid4(), 1, "t", b""), StoredEvent(uuid4(), 1, "t", b"")]
    writer.insert_events(second)

    assert hints(first) == [{"N": "0"}]
    assert hints(second) == [{"N": "1"}, {"N": "1"}]
