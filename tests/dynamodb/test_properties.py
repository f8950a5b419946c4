"""Properties of the DynamoDB persistence module beyond eventsourcing's suites:
atomic multi-aggregate saves, limits refused before writing, global ordering
under concurrent writers (assigned by the stream indexer), gap-free reads
while writing and indexing, error mapping.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID, uuid4

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    Notification,
    OperationalError,
    ProgrammingError,
    StoredEvent,
    Tracking,
)

from infra.devtools.dynamodb_local import free_port
from infra.dynamodb import (
    DynamoDBAggregateRecorder,
    DynamoDBApplicationRecorder,
    DynamoDBDatastore,
    DynamoDBFactory,
    DynamoDBProcessRecorder,
    EventTooLargeError,
    TooManyEventsError,
    TransactionTooLargeError,
)
from infra.dynamodb.errors import translate
from infra.dynamodb.indexer import StreamIndexer
from tests.dynamodb.test_indexer import stream_records as stream_records_of
from tests.dynamodb.utils import indexed_ids, local_env, new_datastore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@pytest.fixture
def app_recorder(datastore: DynamoDBDatastore) -> DynamoDBApplicationRecorder:
    recorder = DynamoDBApplicationRecorder(datastore)
    recorder.create_table()
    return recorder


@pytest.fixture
def process_recorder(datastore: DynamoDBDatastore) -> DynamoDBProcessRecorder:
    recorder = DynamoDBProcessRecorder(datastore)
    recorder.create_table()
    return recorder


def separate_process_recorder(
    endpoint_url: str, recorder: DynamoDBApplicationRecorder
) -> DynamoDBApplicationRecorder:
    """A recorder on the same tables with its own client, as another process
    would have.
    """
    datastore = new_datastore(endpoint_url, table_prefix=recorder.datastore.table_prefix)
    return DynamoDBApplicationRecorder(datastore)


def ev(originator_id: UUID, version: int, state: bytes = b"{}") -> StoredEvent:
    return StoredEvent(
        originator_id=originator_id,
        originator_version=version,
        topic=f"topic{version % 3}",
        state=state,
    )


def all_notifications(recorder: DynamoDBApplicationRecorder) -> list[Notification]:
    result: list[Notification] = []
    while True:
        page = recorder.select_notifications(
            start=result[-1].id if result else None,
            limit=500,
            inclusive_of_start=not result,
        )
        if not page:
            return result
        result.extend(page)


# ----- atomicity -----


def test_multi_aggregate_save_with_one_conflict_writes_nothing(
    app_recorder: DynamoDBApplicationRecorder,
) -> None:
    a, b, c = uuid4(), uuid4(), uuid4()
    assert app_recorder.insert_events([ev(a, 1)]) is None  # ids come from the indexer
    assert indexed_ids(app_recorder, [ev(a, 1)]) == [1]

    with pytest.raises(IntegrityError) as exc_info:
        app_recorder.insert_events([ev(b, 1), ev(c, 1), ev(a, 1), ev(c, 2)])
    assert str(a) in str(exc_info.value)

    assert app_recorder.select_events(b) == []
    assert app_recorder.select_events(c) == []
    assert len(app_recorder.select_events(a)) == 1
    app_recorder.wait_until_indexed()
    assert app_recorder.max_notification_id() == 1
    assert [n.id for n in all_notifications(app_recorder)] == [1]
    # The log carries on without a gap.
    app_recorder.insert_events([ev(b, 1), ev(c, 1)])
    assert indexed_ids(app_recorder, [ev(b, 1), ev(c, 1)]) == [2, 3]


def test_process_recorder_conflict_writes_neither_events_nor_tracking(
    process_recorder: DynamoDBProcessRecorder,
) -> None:
    a, b = uuid4(), uuid4()
    process_recorder.insert_events([ev(a, 1)], tracking=Tracking("up", 5))
    # Tracking conflict: the events must not be written.
    with pytest.raises(IntegrityError):
        process_recorder.insert_events([ev(b, 1)], tracking=Tracking("up", 5))
    assert process_recorder.select_events(b) == []
    # Event conflict: the tracking must not move.
    with pytest.raises(IntegrityError):
        process_recorder.insert_events([ev(a, 1)], tracking=Tracking("up", 6))
    assert process_recorder.max_tracking_id("up") == 5
    process_recorder.wait_until_indexed()
    assert process_recorder.max_notification_id() == 1


class Account(Aggregate):
    @event("Opened")
    def __init__(self, name: str) -> None:
        self.name = name
        self.balance = 0

    @event("Credited")
    def credit(self, amount: int) -> None:
        self.balance += amount


def test_application_save_of_several_aggregates_is_atomic(
    dynamodb_endpoint: str,
) -> None:
    app = Application[UUID](env=local_env(dynamodb_endpoint))
    assert isinstance(app.factory, DynamoDBFactory)
    try:
        x = Account("x")
        app.save(x)
        stale: Account = app.repository.get(x.id)
        fresh: Account = app.repository.get(x.id)
        fresh.credit(10)
        app.save(fresh)

        y = Account("y")
        stale.credit(1)  # conflicts with fresh's Credited event
        with pytest.raises(IntegrityError):
            app.save(y, stale)
        with pytest.raises(AggregateNotFoundError):
            app.repository.get(y.id)
        assert app.repository.get(x.id).balance == 10
        assert isinstance(app.recorder, DynamoDBApplicationRecorder)
        app.recorder.wait_until_indexed()
        assert app.recorder.max_notification_id() == 2
    finally:
        app.close()


# ----- limits -----


def test_too_many_events_refused_before_writing(
    app_recorder: DynamoDBApplicationRecorder, datastore: DynamoDBDatastore
) -> None:
    a = uuid4()
    # A commit is one transaction of its event items (the indexer places it in
    # one page of references, far below an item's bound).
    limit = DynamoDBApplicationRecorder.max_events_per_insert
    assert limit == 100
    with pytest.raises(TooManyEventsError, match="at most 100 items") as exc_info:
        app_recorder.insert_events([ev(a, v) for v in range(1, limit + 2)])
    assert isinstance(exc_info.value, DataError)
    assert app_recorder.select_events(a) == []
    app_recorder.wait_until_indexed()
    assert app_recorder.max_notification_id() is None

    # The maximum fits, also with tracking (99 + 1 = 100 items in the append).
    process = DynamoDBProcessRecorder(datastore)
    process.create_table()
    maximum = [ev(a, v) for v in range(1, limit)]
    process.insert_events(maximum, tracking=Tracking("up", 1))
    assert indexed_ids(process, maximum) == list(range(1, limit))

    aggregate_recorder = DynamoDBAggregateRecorder(datastore, "snapshots")
    aggregate_recorder.create_table()
    b = uuid4()
    with pytest.raises(TooManyEventsError):
        aggregate_recorder.insert_events([ev(b, v) for v in range(101)])
    assert aggregate_recorder.select_events(b) == []
    aggregate_recorder.insert_events([ev(b, v) for v in range(100)])
    assert len(aggregate_recorder.select_events(b)) == 100


def test_oversized_event_refused_before_writing(
    app_recorder: DynamoDBApplicationRecorder,
) -> None:
    a = uuid4()
    big = b"x" * (360 * 1024)
    with pytest.raises(EventTooLargeError, match="400 KB"):
        app_recorder.insert_events([ev(a, 1), ev(a, 2, big)])
    assert app_recorder.select_events(a) == []
    app_recorder.wait_until_indexed()
    assert app_recorder.max_notification_id() is None
    # Just under the margin is fine.
    app_recorder.insert_events([ev(a, 1, b"x" * (340 * 1024))])
    assert len(app_recorder.select_events(a)[0].state) == 340 * 1024


def test_oversized_transaction_refused_before_writing(
    app_recorder: DynamoDBApplicationRecorder,
) -> None:
    a = uuid4()
    # 21 events of 200 KB: each fits in an item, but together they make about
    # 4.2 MB, over the 4 MB transaction limit (of the append, and of the
    # index transaction that copies them).
    events = [ev(a, v, b"y" * (200 * 1024)) for v in range(1, 22)]
    with pytest.raises(TransactionTooLargeError, match="4 MB"):
        app_recorder.insert_events(events)
    assert app_recorder.select_events(a) == []
    app_recorder.wait_until_indexed()
    assert app_recorder.max_notification_id() is None


# ----- ordering -----


def test_concurrent_appends_are_indexed_dense_in_stream_order_with_commits_contiguous(
    app_recorder: DynamoDBApplicationRecorder, dynamodb_endpoint: str
) -> None:
    # Each writer has its own client (like separate processes); appends share
    # no item, and the indexer orders them afterwards.
    num_threads, appends_per_thread = 8, 12
    writers = [
        separate_process_recorder(dynamodb_endpoint, app_recorder) for _ in range(num_threads)
    ]
    commits: list[list[StoredEvent]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(num_threads)

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        recorder = writers[seed]
        streams = [uuid4() for _ in range(3)]
        versions = dict.fromkeys(streams, 0)
        try:
            start.wait()
            for _ in range(appends_per_thread):
                batch: list[StoredEvent] = []
                for stream in rng.sample(streams, rng.randint(1, 2)):
                    for _ in range(rng.randint(1, 3)):
                        versions[stream] += 1
                        batch.append(ev(stream, versions[stream]))
                assert recorder.insert_events(batch) is None
                with lock:
                    commits.append(batch)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(num_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in writers:
        w.datastore.close()
    assert not errors, errors

    app_recorder.wait_until_indexed()
    notifications = all_notifications(app_recorder)
    total = sum(len(batch) for batch in commits)
    assert [n.id for n in notifications] == list(range(1, total + 1))
    assert app_recorder.max_notification_id() == total
    position = {(n.originator_id, n.originator_version): n.id for n in notifications}
    for batch in commits:  # each commit contiguous, in append order
        ids = [position[s.originator_id, s.originator_version] for s in batch]
        assert ids == list(range(ids[0], ids[0] + len(batch)))
        assert app_recorder.indexed_positions(batch) == ids
    by_stream: dict[Any, list[Notification]] = defaultdict(list)
    for n in notifications:
        by_stream[n.originator_id].append(n)
    for stream, stream_notifications in by_stream.items():
        versions = [n.originator_version for n in stream_notifications]
        assert versions == list(range(1, len(versions) + 1))  # in id order
        stored = app_recorder.select_events(stream)
        assert [s.originator_version for s in stored] == versions


def test_reader_never_sees_a_later_id_before_an_earlier_one(
    app_recorder: DynamoDBApplicationRecorder, dynamodb_endpoint: str
) -> None:
    num_writers, appends_per_writer = 4, 20
    done = threading.Event()
    errors: list[BaseException] = []
    observations: list[tuple[int, int]] = []  # (first id, count) per read

    recorders = [
        separate_process_recorder(dynamodb_endpoint, app_recorder) for _ in range(num_writers)
    ]
    indexer = app_recorder.indexer()
    indexer.start()  # indexes while the writers write and the readers read

    def writer(i: int) -> None:
        stream = uuid4()
        try:
            for v in range(1, appends_per_writer + 1):
                recorders[i].insert_events([ev(stream, v)])
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    def reader() -> None:
        next_id = 1
        max_seen: int | None = None
        try:
            while True:
                finished = done.is_set()
                page = app_recorder.select_notifications(start=next_id, limit=7)
                ids = [n.id for n in page]
                # Whatever we see starts exactly where we left off, without gaps.
                assert ids == list(range(next_id, next_id + len(ids))), ids
                observations.append((next_id, len(ids)))
                next_id += len(ids)
                current = app_recorder.max_notification_id()
                assert current is None or current >= next_id - 1
                assert max_seen is None or current is None or current >= max_seen
                max_seen = current
                if finished and not ids:
                    break
        except BaseException as e:  # pragma: no cover
            errors.append(e)
            raise

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(i,)) for i in range(num_writers)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    app_recorder.wait_until_indexed()
    done.set()
    for t in readers:
        t.join()
    indexer.stop()
    for r in recorders:
        r.datastore.close()
    assert not errors, errors
    total = num_writers * appends_per_writer
    seen = sum(count for _, count in observations)
    assert seen == 2 * total  # each reader saw every id exactly once
    non_empty = [o for o in observations if o[1]]
    print(
        f"readers made {len(observations)} reads, {len(non_empty)} non-empty, "
        f"max {max(c for _, c in observations)} ids per read"
    )
    assert len(non_empty) > 2  # they really did read while writers wrote


def test_select_notifications_pages_and_filters(
    app_recorder: DynamoDBApplicationRecorder,
) -> None:
    a = uuid4()
    for v in range(1, 301, 30):
        app_recorder.insert_events([ev(a, v + i) for i in range(30)])
    app_recorder.wait_until_indexed()
    # Topic filter with matches spread over several pages.
    page = app_recorder.select_notifications(None, 50, topics=["topic2"])
    assert [n.id for n in page] == [i for i in range(1, 151) if i % 3 == 2]
    assert all(n.topic == "topic2" for n in page)
    # stop bounds the range; inclusive_of_start respected.
    page = app_recorder.select_notifications(10, 100, stop=20, inclusive_of_start=False)
    assert [n.id for n in page] == list(range(11, 21))
    # More topics than DynamoDB's IN operator takes: filtered locally.
    topics = ["topic0"] + [f"other{i}" for i in range(150)]
    page = app_recorder.select_notifications(1, 5, topics=topics)
    assert [n.id for n in page] == [3, 6, 9, 12, 15]
    assert app_recorder.select_notifications(301, 10) == []
    assert app_recorder.select_notifications(None, 0) == []


def test_select_events_ranges(datastore: DynamoDBDatastore) -> None:
    recorder = DynamoDBAggregateRecorder(datastore, "events")
    recorder.create_table()
    a = uuid4()
    recorder.insert_events([ev(a, v) for v in range(1, 11)])
    assert [e.originator_version for e in recorder.select_events(a, gt=3, lte=6)] == [
        4,
        5,
        6,
    ]
    assert [e.originator_version for e in recorder.select_events(a, desc=True, limit=3)] == [
        10,
        9,
        8,
    ]
    assert recorder.select_events(a, gt=5, lte=5) == []
    assert recorder.select_events(a, limit=0) == []
    # Hex and hyphenated forms of a UUID are one stream.
    assert len(recorder.select_events(a.hex)) == 10
    with pytest.raises(DataError):
        recorder.select_events("not-a-uuid")


def test_text_originator_ids(dynamodb_endpoint: str) -> None:
    datastore = new_datastore(dynamodb_endpoint, originator_id_type="text")
    try:
        recorder = DynamoDBApplicationRecorder(datastore)
        recorder.create_table()
        stored = StoredEvent("order-1", 1, "t", b"s")
        recorder.insert_events([stored])
        recorder.wait_until_indexed()
        assert recorder.select_events("order-1") == [stored]
        assert recorder.select_notifications(None, 1)[0].originator_id == "order-1"
    finally:
        datastore.close()


# ----- failures -----


def test_unreachable_endpoint_raises_operational_error_quickly() -> None:
    port = free_port()  # nothing listens there
    datastore = new_datastore(
        f"http://127.0.0.1:{port}",
        connect_timeout=0.5,
        read_timeout=0.5,
        max_attempts=1,
    )
    recorder = DynamoDBApplicationRecorder(datastore)
    try:
        for call in (
            lambda: recorder.insert_events([ev(uuid4(), 1)]),
            lambda: recorder.select_events(uuid4()),
            lambda: recorder.select_notifications(None, 10),
            recorder.max_notification_id,
            recorder.create_table,
        ):
            started = time.monotonic()
            with pytest.raises(OperationalError, match="unreachable"):
                call()
            assert time.monotonic() - started < 3
    finally:
        datastore.close()


def test_factory_with_unreachable_endpoint_raises_operational_error() -> None:
    env = local_env(
        f"http://127.0.0.1:{free_port()}",
        DYNAMODB_CONNECT_TIMEOUT="0.5",
        DYNAMODB_MAX_ATTEMPTS="1",
    )
    factory = DynamoDBFactory(env)
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError):
            factory.application_recorder()
        assert time.monotonic() - started < 3
    finally:
        factory.close()


def test_missing_table_without_create_table_is_programming_error(
    dynamodb_endpoint: str,
) -> None:
    factory = DynamoDBFactory(local_env(dynamodb_endpoint, CREATE_TABLE="no"))
    try:
        recorder = factory.application_recorder()
        with pytest.raises(ProgrammingError):
            recorder.max_notification_id()
    finally:
        factory.close()


def _client_error(code: str, message: str = "", **extra: Any) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400},
        **extra,
    }
    return ClientError(response, "TransactWriteItems")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_client_error("ConditionalCheckFailedException"), IntegrityError),
        (
            _client_error(
                "TransactionCanceledException",
                CancellationReasons=[
                    {"Code": "None"},
                    {"Code": "ConditionalCheckFailed"},
                ],
            ),
            IntegrityError,
        ),
        (
            _client_error(
                "TransactionCanceledException",
                CancellationReasons=[{"Code": "TransactionConflict"}],
            ),
            OperationalError,
        ),
        (_client_error("ProvisionedThroughputExceededException"), OperationalError),
        (_client_error("ThrottlingException"), OperationalError),
        (_client_error("InternalServerError"), OperationalError),
        (
            _client_error("ValidationException", "Item size has exceeded the max"),
            DataError,
        ),
        (
            _client_error("ValidationException", "Invalid ConditionExpression"),
            ProgrammingError,
        ),
        (_client_error("ResourceNotFoundException"), ProgrammingError),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), OperationalError),
        (ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"), OperationalError),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), OperationalError),
        (NoCredentialsError(), InterfaceError),
    ],
)
def test_error_translation(error: Exception, expected: type[Exception]) -> None:
    translated = translate(error)
    assert type(translated) is expected


def test_a_page_is_never_overwritten_by_an_indexer_whose_head_is_stale(
    app_recorder: DynamoDBApplicationRecorder, datastore: DynamoDBDatastore
) -> None:
    stale = StreamIndexer(
        app_recorder.client, app_recorder.events_table_name, app_recorder.notifications_table_name
    )
    first = [ev(uuid4(), 1)]
    app_recorder.insert_events(first)
    stale.index_records(stream_records_of(datastore, app_recorder))  # its head: 1
    second = [ev(uuid4(), 1), ev(uuid4(), 1)]
    app_recorder.insert_events(second)
    app_recorder.wait_until_indexed()  # another indexer puts the page at 2

    assert stale.index_records(stream_records_of(datastore, app_recorder)) == 0
    assert stale.retries == 1  # its page at 2 was refused; it read the one there
    assert [(n.id, n.originator_id) for n in all_notifications(app_recorder)] == [
        (1, first[0].originator_id),
        (2, second[0].originator_id),
        (3, second[1].originator_id),
    ]


class _HidesOnePageOnce:
    """Wraps a client so that the first Query response holding one page lacks
    it, as a read could if a written page were not yet visible to it."""

    def __init__(self, client: Any, hide_id: int) -> None:
        self._client = client
        self._hide = str(hide_id)
        self.hidden = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def query(self, **kwargs: Any) -> Any:
        response = self._client.query(**kwargs)
        items = [i for i in response["Items"] if i["id"]["N"] != self._hide]
        if not self.hidden and len(items) < len(response["Items"]):
            self.hidden += 1
            response["Items"] = items
        return response


def three_pages(recorder: DynamoDBApplicationRecorder) -> None:
    """Pages at 1 (id 1), 2 (ids 2, 3) and 4 (ids 4, 5)."""
    for size in (1, 2, 2):
        recorder.insert_events([ev(uuid4(), 1) for _ in range(size)])
        recorder.wait_until_indexed()


def test_select_notifications_rereads_when_a_written_page_is_not_yet_visible(
    app_recorder: DynamoDBApplicationRecorder,
) -> None:
    three_pages(app_recorder)
    wrapper = _HidesOnePageOnce(app_recorder.client, hide_id=2)
    app_recorder.log.client = cast("DynamoDBClient", wrapper)
    assert [n.id for n in app_recorder.select_notifications(None, 10)] == [1, 2, 3, 4, 5]
    assert wrapper.hidden == 1


def test_select_notifications_refuses_to_skip_a_missing_notification(
    app_recorder: DynamoDBApplicationRecorder,
) -> None:
    three_pages(app_recorder)
    app_recorder.client.delete_item(
        TableName=app_recorder.notifications_table_name,
        Key={"p": {"S": "page"}, "id": {"N": "2"}},
    )
    assert [n.id for n in app_recorder.select_notifications(None, 1)] == [1]
    with pytest.raises(InternalError, match="gap"):
        app_recorder.select_notifications(None, 10)
    with pytest.raises(InternalError, match="gap"):
        app_recorder.select_notifications(None, 10, topics=["topic1"])
    with pytest.raises(InternalError, match="gap"):
        app_recorder.commit_ends(1, 5)
    assert [n.id for n in app_recorder.select_notifications(4, 10)] == [4, 5]
