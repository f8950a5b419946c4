"""eventsourcing's recorder and factory conformance suites, run against
DynamoDB Local. Every test gets fresh tables (unique table prefix).

The application and process recorders append events only; notification ids
are assigned afterwards by the stream indexer. The suites expect
``insert_events`` to return the ids and the log to show them at once, so they
run against :class:`~tests.dynamodb.utils.SynchronouslyIndexedRecorder`, which
drains the indexer after each insert and returns the ids the index gave: the
suites' assertions then hold, unchanged, against the index.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Event, Thread, get_ident
from time import sleep
from typing import TYPE_CHECKING, Any
from unittest import TestCase
from unittest.mock import patch

import pytest
from eventsourcing.domain import datetime_now_with_tzinfo
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    IntegrityError,
    ProcessRecorder,
    StoredEvent,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.tests.persistence import (
    AggregateRecorderTestCase,
    ApplicationRecorderTestCase,
    InfrastructureFactoryTestCase,
    NonInterleavingNotificationIDsBaseCase,
    ProcessRecorderTestCase,
    TrackingRecorderTestCase,
)
from eventsourcing.utils import Environment

from infra.dynamodb import (
    DynamoDBAggregateRecorder,
    DynamoDBApplicationRecorder,
    DynamoDBFactory,
    DynamoDBProcessRecorder,
    DynamoDBTrackingRecorder,
)
from tests.dynamodb.utils import (
    SynchronouslyIndexedProcessRecorder,
    SynchronouslyIndexedRecorder,
    local_env,
    new_datastore,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from infra.dynamodb import DynamoDBDatastore

# A commit is one transaction of its event items, which holds at most 100 (the
# indexer places it in one page of references).
MAX_EVENTS_PER_APPEND = DynamoDBApplicationRecorder.max_events_per_insert


class DynamoDBTestCase(TestCase):
    endpoint_url: str
    datastore: DynamoDBDatastore

    @pytest.fixture(autouse=True)
    def _dynamodb_endpoint(self, dynamodb_endpoint: str) -> None:
        self.endpoint_url = dynamodb_endpoint

    def setUp(self) -> None:
        super().setUp()
        self.datastore = new_datastore(self.endpoint_url)

    def tearDown(self) -> None:
        self.datastore.close()
        super().tearDown()


class TestDynamoDBAggregateRecorder(DynamoDBTestCase, AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        recorder = DynamoDBAggregateRecorder(self.datastore, "stored_events")
        recorder.create_table()
        return recorder


class TestDynamoDBSnapshotRecorder(DynamoDBTestCase, AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        recorder = DynamoDBAggregateRecorder(self.datastore, "stored_snapshots")
        recorder.create_table()
        return recorder


class TestDynamoDBApplicationRecorder(
    DynamoDBTestCase, ApplicationRecorderTestCase[DynamoDBApplicationRecorder]
):
    def create_recorder(self) -> DynamoDBApplicationRecorder:
        recorder = SynchronouslyIndexedRecorder(self.datastore)
        recorder.create_table()
        return recorder

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()

    def test_performance(self) -> None:
        """Overridden: the base test times inserts; here through the real
        recorder, which does not wait for the indexer (waiting would time the
        indexer's polling, not the inserts). Otherwise the same as the base test."""
        with patch.object(self, "create_recorder", self.unindexed_recorder):
            super().test_performance()

    def unindexed_recorder(self) -> DynamoDBApplicationRecorder:
        recorder = DynamoDBApplicationRecorder(self.datastore)
        recorder.create_table()
        return recorder

    def test_concurrent_no_conflicts(self, initial_position: int = 0) -> None:  # noqa: PT028 (base signature)
        """Overridden: the base test writes 100 events per insert, the maximum
        of one transaction (MAX_EVENTS_PER_APPEND); and 20 inserts from 4 writers
        instead of 100 from 10, because each insert here waits for the indexer
        (see the module docstring) and DynamoDB Local on 2 cores is slow with
        100-item transactions. Otherwise the same as the base test."""
        recorder = self.create_recorder()
        errors: list[Exception] = []
        counts: dict[int, int] = {}
        num_writers = 4
        num_writes = 20
        num_events_per_write = MAX_EVENTS_PER_APPEND

        def insert_events() -> None:
            thread_id = get_ident()
            counts.setdefault(thread_id, 0)
            originator_id = self.new_originator_id()
            stored_events = [
                StoredEvent(
                    originator_id=originator_id,
                    originator_version=i,
                    topic="topic",
                    state=b"state",
                )
                for i in range(num_events_per_write)
            ]
            try:
                recorder.insert_events(stored_events)
            except Exception as e:  # pragma: no cover
                errors.append(e)
            else:
                counts[thread_id] += 1
                sleep(0.0001)

        stop_reading = Event()

        def read_continuously() -> None:
            while not stop_reading.is_set():
                try:
                    recorder.select_notifications(
                        start=initial_position, limit=10, inclusive_of_start=False
                    )
                except Exception as e:  # pragma: no cover
                    errors.append(e)
                    return
                sleep(0.0001)

        readers = [Thread(target=read_continuously) for _ in range(2)]
        for reader in readers:
            reader.start()
        try:
            with ThreadPoolExecutor(max_workers=num_writers) as executor:
                futures = [executor.submit(insert_events) for _ in range(num_writes)]
                for future in futures:
                    future.result()
        finally:
            stop_reading.set()
            for reader in readers:
                reader.join()
        if errors:  # pragma: no cover
            raise errors[0]
        self.assertEqual(sum(counts.values()), num_writes)
        self.assertEqual(recorder.max_notification_id(), num_writes * num_events_per_write)

    def test_concurrent_throughput(self) -> None:
        """Overridden: the same jobs as the base test (but inserting the
        maximum of MAX_EVENTS_PER_APPEND events, and without its warm-up round), through the real
        recorder: appends do not wait for the indexer, which is what this
        measures. The index is then checked to hold every event once."""
        recorder = DynamoDBApplicationRecorder(self.datastore)
        recorder.create_table()
        num_events_per_job = MAX_EVENTS_PER_APPEND
        num_jobs = 10
        num_workers = 4

        def insert_events() -> None:
            originator_id = self.new_originator_id()
            recorder.insert_events(
                [
                    StoredEvent(
                        originator_id=originator_id,
                        originator_version=i,
                        topic="topic",
                        state=b"state",
                    )
                    for i in range(num_events_per_job)
                ]
            )

        with ThreadPoolExecutor(max_workers=num_workers) as executor:
            started = datetime_now_with_tzinfo()
            futures = [executor.submit(insert_events) for _ in range(num_jobs)]
            for future in futures:
                future.result()
            ended = datetime_now_with_tzinfo()
        rate = num_jobs * num_events_per_job / (ended - started).total_seconds()
        print(f"Rate: {rate:.0f} inserts per second")
        recorder.wait_until_indexed()
        self.assertEqual(recorder.max_notification_id(), num_jobs * num_events_per_job)


class TestDynamoDBNonInterleavingNotificationIDs(
    DynamoDBTestCase, NonInterleavingNotificationIDsBaseCase
):
    # Overridden count: the base inserts 1000 events per call; a commit is one
    # transaction, which fits at most 100 events.
    insert_num = MAX_EVENTS_PER_APPEND

    def create_recorder(self) -> ApplicationRecorder:
        recorder = SynchronouslyIndexedRecorder(self.datastore)
        recorder.create_table()
        return recorder


class TestDynamoDBTrackingRecorder(DynamoDBTestCase, TrackingRecorderTestCase):
    def create_recorder(self) -> TrackingRecorder:
        recorder = DynamoDBTrackingRecorder(self.datastore)
        recorder.create_table()
        return recorder


class TestDynamoDBProcessRecorder(DynamoDBTestCase, ProcessRecorderTestCase):
    def create_recorder(self) -> ProcessRecorder:
        recorder = SynchronouslyIndexedProcessRecorder(self.datastore)
        recorder.create_table()
        return recorder

    def test_performance(self) -> None:
        """Overridden: timed through the real recorder, which does not wait for
        the indexer (see TestDynamoDBApplicationRecorder.test_performance)."""
        with patch.object(self, "create_recorder", self.unindexed_recorder):
            super().test_performance()

    def unindexed_recorder(self) -> ProcessRecorder:
        recorder = DynamoDBProcessRecorder(self.datastore)
        recorder.create_table()
        return recorder

    def test_insert_select(self) -> None:
        """Overridden: the suite inserts ``[e1, e2]`` of one stream, then ``e2``
        alone and expects a conflict. A commit packs a stream's events into one
        item keyed by its first version (infra.dynamodb.packing), so ``e2`` is
        no key, and its insert, by a writer that never read ``e1..e2``, is not
        refused: an application never does that (it appends the version after
        the last one it read). The suite runs unchanged with one item per event;
        the packed case is test_insert_select_packed."""
        with patch("infra.dynamodb.recorders.pack", unpacked):
            super().test_insert_select()

    def test_insert_select_packed(self) -> None:
        recorder = self.create_recorder()
        assert isinstance(recorder, DynamoDBProcessRecorder)
        a, b = self.new_originator_id(), self.new_originator_id()
        events = [StoredEvent(oid, v, f"t{v}", b"s") for oid in (a, b) for v in (1, 2)]
        recorder.insert_events(events[:2], tracking=Tracking("up", 1))
        # The first version of a's item, written again: a conflict, and nothing
        # of the transaction (its tracking) is written.
        with pytest.raises(IntegrityError):
            recorder.insert_events(events[:1], tracking=Tracking("up", 2))
        assert recorder.max_tracking_id("up") == 1
        with pytest.raises(IntegrityError):
            recorder.insert_events(events[2:3], tracking=Tracking("up", 1))
        recorder.insert_events(events[2:], tracking=Tracking("up", 2))
        assert recorder.max_tracking_id("up") == 2
        assert recorder.select_events(a) == events[:2]
        assert recorder.select_events(b) == events[2:]


def unpacked(items: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """One item per event, as before packing."""
    return [(item, index) for index, item in enumerate(items)]


class CustomDynamoDBTrackingRecorder(DynamoDBTrackingRecorder):
    pass


class TestDynamoDBInfrastructureFactory(InfrastructureFactoryTestCase[DynamoDBFactory]):
    endpoint_url: str

    @pytest.fixture(autouse=True)
    def _dynamodb_endpoint(self, dynamodb_endpoint: str) -> None:
        self.endpoint_url = dynamodb_endpoint

    def setUp(self) -> None:
        self.env = Environment("TestCase", local_env(self.endpoint_url))
        super().setUp()

    def expected_factory_class(self) -> type[DynamoDBFactory]:
        return DynamoDBFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return DynamoDBAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return DynamoDBApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return DynamoDBTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return CustomDynamoDBTrackingRecorder

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return DynamoDBProcessRecorder

    def test_table_names_use_prefix_and_application_name(self) -> None:
        recorder = self.factory.process_recorder()
        assert isinstance(recorder, DynamoDBProcessRecorder)
        prefix = self.env["DYNAMODB_TABLE_PREFIX"]
        self.assertEqual(recorder.events_table_name, f"{prefix}testcase_events")
        self.assertEqual(recorder.notifications_table_name, f"{prefix}testcase_notifications")
        self.assertEqual(recorder.tracking_table_name, f"{prefix}testcase_tracking")
        snapshots = self.factory.aggregate_recorder("snapshots")
        assert isinstance(snapshots, DynamoDBAggregateRecorder)
        self.assertEqual(snapshots.events_table_name, f"{prefix}testcase_snapshots")

    def test_invalid_settings(self) -> None:
        for key, value in [
            ("ORIGINATOR_ID_TYPE", "int"),
            ("DYNAMODB_READ_TIMEOUT", "soon"),
            ("DYNAMODB_MAX_ATTEMPTS", "many"),
            ("DYNAMODB_RETRY_MODE", "legacy"),
        ]:
            env: dict[str, Any] = {**self.env, key: value}
            with self.assertRaises(OSError):
                DynamoDBFactory(env)
