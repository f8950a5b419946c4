"""The one place where the service, its store and its read tables are put together.

The read tables are written inline by every append (``projections/fold.py``);
the catch-up projector is only for start-up after an interrupted rebuild,
rebuilds and audits. No thread polls the log. On DynamoDB the server process
runs the stream indexer in a thread (``infra/dynamodb/indexer.py``), which
builds the notification log from the events table's stream, unless
``DYNAMODB_INDEXER=false`` (where the production Lambda indexes instead).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from eventsourcing.persistence import ApplicationRecorder

from domain.errors import ProjectionNotFoundError
from domain.unit_of_work import SaveWeights
from infra.dynamodb import DynamoDBApplicationRecorder, DynamoDBFactory
from infra.dynamodb.capacity import PROCESS_TOTALS, instrument, start_request_meter
from infra.dynamodb.datastore import make_client
from infra.dynamodb.idempotency import DynamoDBIdempotencyStore
from infra.dynamodb.indexer import ShardPoller
from infra.dynamodb.read_tables import DynamoDBReadModel
from infra.dynamodb.rebuild import DynamoDBRebuildTarget
from infra.dynamodb.repair import repair_since
from infra.idempotency import ExpirySweeper, IdempotencyStore
from infra.service import StoredRegistrationService
from infra.settings import Settings
from infra.sqlite.event_store import InlineSQLiteApplicationRecorder
from infra.sqlite.idempotency import SQLiteIdempotencyStore
from infra.sqlite.read_tables import SQLiteReadModel
from infra.sqlite.rebuild import SQLiteRebuildTarget
from projections.audit import AuditLog, History, StreamLog
from projections.catch_up import CatchUpProjector, wait_until_logged
from projections.drift import DriftReport, check_drift
from projections.ports import ReadModel
from projections.rebuild import Rebuilder, RebuildTarget
from projections.status import READ_TABLES, ProjectionStatus, read_tables_status
from projections.time_travel import TimeTravel

logger = logging.getLogger(__name__)


class CapacityMeter(Protocol):
    """Capacity units a store's calls consumed, per table (DynamoDB's ``Capacity``)."""

    @property
    def read(self) -> Mapping[str, float]: ...

    @property
    def write(self) -> Mapping[str, float]: ...

    def totals(self) -> dict[str, float]:
        """``{"readUnits": ..., "writeUnits": ...}``"""


@dataclass(frozen=True)
class CapacityMetering:
    """How the HTTP app meters the store's consumed capacity without knowing the store."""

    start_request: Callable[[], CapacityMeter]
    """A fresh meter for the current request (and the threads it hands work to)."""
    process: CapacityMeter
    """Everything this process consumed since it started."""


def capacity_metering(settings: Settings) -> CapacityMetering | None:
    """DynamoDB's consumed-capacity meters; None on SQLite, where there is nothing
    to meter (and a meter per request is not free)."""
    if settings.store != "dynamodb":
        return None
    return CapacityMetering(start_request_meter, PROCESS_TOTALS)


@dataclass
class Container:
    """Everything a running service holds; ``close`` releases it all."""

    settings: Settings
    service: StoredRegistrationService
    read_model: ReadModel
    projector: CatchUpProjector
    audit: AuditLog
    history: History
    time_travel: TimeTravel
    idempotency: IdempotencyStore
    rebuilder: Rebuilder
    indexer: ShardPoller | None = None
    """DynamoDB's in-process stream indexer (None on SQLite): run by ``start``
    when the settings allow; ``indexer.lag()`` says how far behind it is."""
    sweeper: ExpirySweeper | None = None
    """Deletes expired idempotency keys in bounded batches (run by ``start``)."""

    @staticmethod
    def known_projection(name: str) -> None:
        """Raises ProjectionNotFoundError unless the service has that projection."""
        if name != READ_TABLES:
            msg = f"Projection {name!r} not found (there is: {READ_TABLES})"
            raise ProjectionNotFoundError(msg)

    def projection(self, name: str) -> ProjectionStatus:
        """Where the named projection stands (ProjectionNotFoundError if there is none)."""
        self.known_projection(name)
        return read_tables_status(
            self.service.recorder,
            self.read_model,
            self.service.mapper.to_domain_event,
            self.rebuilder.state(),
            lease_seconds=self.rebuilder.lease_seconds,
        )

    def check(
        self, name: str, on_progress: Callable[[int, int], None] | None = None
    ) -> DriftReport:
        """Compares the named projection with a fresh fold of the log."""
        self.known_projection(name)
        return check_drift(self.service.recorder, self.service.mapper, self.read_model, on_progress)

    def start(self) -> None:
        """Finishes an interrupted rebuild, if any, then group-commits commands
        (on SQLite with one worker, on the running event loop; else in a writer
        thread) and, on DynamoDB, indexes the events table's stream in a thread."""
        self.projector.catch_up()
        self.service.start_batching(
            self.settings.max_batch,
            loop=self._batching_loop(),
            linger=self.settings.batch_linger_ms / 1000,
            lanes=self.settings.lanes,
        )
        if self.indexer is not None and self.settings.dynamodb_indexer:
            self.indexer.start()
        if self.sweeper is None:
            self.sweeper = ExpirySweeper(self.idempotency)
            self.sweeper.start()
        self.rebuilder.resume_if_interrupted()

    def _batching_loop(self) -> asyncio.AbstractEventLoop | None:
        """The running event loop, where commands are decided (``LoopBatcher``)
        when the settings allow it; None: a writer thread decides them."""
        settings = self.settings
        if settings.store != "sqlite" or settings.workers > 1 or not settings.decide_on_event_loop:
            return None
        try:
            return asyncio.get_running_loop()
        except RuntimeError:  # started outside a server (the CLI, a script)
            return None

    def close(self) -> None:
        self.rebuilder.stop()
        self.rebuilder.target.close()
        self.service.stop_batching()
        if self.indexer is not None:
            self.indexer.stop()
        if self.sweeper is not None:
            self.sweeper.stop()
            self.sweeper = None
        self.idempotency.close()
        self.read_model.close()
        self.service.close()


# A save is one commit, which holds at most 100 events
# (``max_events_per_insert``), and one transaction, which holds at most 100
# items: one per changed aggregate for its events (a stream's events of one
# commit are packed in one item, infra/dynamodb/packing.py), plus read-table
# rows: at most one per changed aggregate (a registration's, a user's, a
# gathering's row; the projection's state when a gathering is created; the
# indexer writes its page outside the save). Every changed aggregate has an
# event, so one per event plus one per aggregate bounds both. Batches stop
# growing past that bound, less room for one more ordinary command (a leave
# that promotes one person: 6 events of 5 aggregates, 11). One save promotes
# at most 12 people. tests/dynamodb/test_save_weights.py checks the count
# against what is sent.
DYNAMODB_MAX_SAVE_WEIGHT = 100
DYNAMODB_SAVE_WEIGHTS = SaveWeights(per_event=1, per_aggregate=1, per_gathering=0, command=16)
DYNAMODB_MAX_PROMOTIONS_PER_SAVE = 12

CACHE = {
    # Recently used aggregates stay in memory; a load then only reads the
    # events saved since (by any process), not a snapshot and its tail.
    "AGGREGATE_CACHE_MAXSIZE": "10000",
    # The command side mutates the cached aggregate itself (one writer lane
    # decides each gathering's commands); a failed batch evicts what it touched. Cached
    # aggregates still fast-forward past events other processes saved, so a
    # decision (even a refusal) is never taken on stale state.
    "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
}


def _aws_credentials(settings: Settings) -> dict[str, str]:
    """Explicit credentials when configured; otherwise boto3's standard chain decides."""
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        explicit = {
            "AWS_ACCESS_KEY_ID": settings.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key.get_secret_value(),
        }
        if settings.aws_session_token:  # temporary credentials (AWS Lambda's role)
            explicit["AWS_SESSION_TOKEN"] = settings.aws_session_token.get_secret_value()
        return explicit
    return {}


def event_store_env(settings: Settings) -> dict[str, str]:
    """The eventsourcing environment for the configured store."""
    if settings.store == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "APPLICATION_RECORDER_TOPIC": (
                "infra.sqlite.event_store:InlineSQLiteApplicationRecorder"
            ),
            "SQLITE_DBNAME": str(settings.event_store_path),
            "SQLITE_LOCK_TIMEOUT": str(settings.sqlite_lock_timeout),
            "CREATE_TABLE": "y",
            **CACHE,
        }
    env = {
        "PERSISTENCE_MODULE": "infra.dynamodb",
        "DYNAMODB_TABLE_PREFIX": settings.dynamodb_table_prefix,
        "DYNAMODB_MAX_ATTEMPTS": str(settings.dynamodb_max_attempts),
        "AWS_DEFAULT_REGION": settings.aws_region,
        "CREATE_TABLE": "y",
        **_aws_credentials(settings),
        **CACHE,
    }
    if settings.dynamodb_endpoint_url:
        env["DYNAMODB_ENDPOINT_URL"] = settings.dynamodb_endpoint_url
    if settings.dynamodb_simulated_latency_ms > 0:  # benchmarks only
        env["DYNAMODB_SIMULATED_LATENCY_MS"] = str(settings.dynamodb_simulated_latency_ms)
    return env


def build_read_model(settings: Settings) -> ReadModel:
    if settings.store == "sqlite":
        return SQLiteReadModel(settings.event_store_path, lock_timeout=settings.sqlite_lock_timeout)
    credentials = _aws_credentials(settings)
    client = make_client(
        endpoint_url=settings.dynamodb_endpoint_url,
        region_name=settings.aws_region,
        aws_access_key_id=credentials.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=credentials.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=credentials.get("AWS_SESSION_TOKEN"),
        max_attempts=settings.dynamodb_max_attempts,
        simulated_latency_ms=settings.dynamodb_simulated_latency_ms,
    )
    instrument(client)
    return DynamoDBReadModel(client, settings.dynamodb_table_prefix)


def build_idempotency_store(settings: Settings, read_model: ReadModel) -> IdempotencyStore:
    ttl = settings.idempotency_ttl_hours * 3600.0
    if isinstance(read_model, DynamoDBReadModel):
        return DynamoDBIdempotencyStore(
            read_model.client, settings.dynamodb_table_prefix, ttl_seconds=ttl
        )
    return SQLiteIdempotencyStore(
        settings.event_store_path, ttl_seconds=ttl, lock_timeout=settings.sqlite_lock_timeout
    )


def build_rebuild_target(
    settings: Settings, read_model: ReadModel, recorder: ApplicationRecorder | None = None
) -> RebuildTarget:
    if isinstance(read_model, DynamoDBReadModel):
        # After the switch points, the streams of commits indexed since the
        # head it folded are repaired in the new tables (infra/dynamodb/repair.py).
        repair = None
        if isinstance(recorder, DynamoDBApplicationRecorder) and recorder.repairs is not None:
            repair = partial(repair_since, recorder.repairs, recorder)
        return DynamoDBRebuildTarget(
            read_model, grace_seconds=settings.rebuild_switch_grace_seconds, repair_since=repair
        )
    return SQLiteRebuildTarget(settings.event_store_path, lock_timeout=settings.sqlite_lock_timeout)


def _nothing() -> None:
    """Nothing to wait for."""


def build_container(settings: Settings) -> Container:
    service = StoredRegistrationService(env=event_store_env(settings))
    if isinstance(service.recorder, InlineSQLiteApplicationRecorder):
        service.recorder.synchronous = settings.sqlite_synchronous
    service.invariant_violations_raise = settings.environment != "production"
    if isinstance(service.factory, DynamoDBFactory):
        instrument(service.factory.datastore.client)
        service.max_save_weight = DYNAMODB_MAX_SAVE_WEIGHT
        service.max_promotions_per_save = DYNAMODB_MAX_PROMOTIONS_PER_SAVE
        service.save_weights = DYNAMODB_SAVE_WEIGHTS
    read_model = build_read_model(settings)
    projector = CatchUpProjector(service.recorder, service.mapper, read_model)
    indexer = None
    if isinstance(service.recorder, DynamoDBApplicationRecorder):
        # Where another indexes (the API Lambda), waiting until something is
        # indexed only reads the index: no Streams call, no index write.
        service.recorder.index_in_process = settings.dynamodb_indexer
        indexer = service.recorder.indexer()
    logger.info("service wired", extra={"store": settings.store})
    recorder = service.recorder
    audit = AuditLog(
        recorder,
        service.mapper.decode_state,
        # A verify right after another process's write must count it.
        settle=lambda: wait_until_logged(recorder, every_process=True),
    )
    assert isinstance(recorder, StreamLog), recorder
    history = History(
        recorder,
        service.mapper.decode_state,
        read_model.registered_event_ids,
        # Histories show positions, which DynamoDB assigns just after each write:
        # where this process indexes, it finishes indexing what it wrote first.
        # Elsewhere (the production Lambda, which may not read the stream) an
        # event the indexer has not placed yet shows position null.
        settle=(lambda: wait_until_logged(recorder)) if settings.dynamodb_indexer else _nothing,
    )
    time_travel = TimeTravel(
        recorder.select_events, service.mapper.to_domain_event, read_model.registered_event_ids
    )
    rebuilder = Rebuilder(
        recorder,
        service.mapper,
        build_rebuild_target(settings, read_model, recorder),
        lease_seconds=settings.rebuild_lease_seconds,
        batch_size=settings.rebuild_batch_size,
    )
    return Container(
        settings,
        service,
        read_model,
        projector,
        audit,
        history,
        time_travel,
        build_idempotency_store(settings, read_model),
        rebuilder,
        indexer,
    )
