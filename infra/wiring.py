"""The one place where the service, its store and its read tables are put together.

The store is chosen here once (``store_kit``: ``KITS[settings.store]``); its
kit (``infra/kit.py``, one per store package) provides the rest, and nothing
else asks which store runs.

The read tables are written inline by every append (``projections/fold.py``);
the catch-up projector is only for start-up after an interrupted rebuild,
rebuilds and audits. No thread polls the log. On DynamoDB the server process
runs the stream indexer in a thread (``infra/dynamodb/indexer.py``), which
builds the notification log from the events table's stream, unless
``DYNAMODB_INDEXER=false`` (where the production Lambda indexes instead).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from uuid import UUID

from domain.application import ErasureOutcome
from domain.errors import ProjectionNotFoundError
from domain.observer import CommandObserver
from infra.dynamodb import kit as dynamodb_kit
from infra.idempotency import ExpirySweeper, IdempotencyStore
from infra.kit import Indexer, RecordIndexer, StoreKit
from infra.legacy_names import seal_names
from infra.personal_data import PersonalDataVault
from infra.service import StoredRegistrationService
from infra.settings import Settings
from infra.sqlite import kit as sqlite_kit
from projections.audit import AuditLog, History, StreamLog
from projections.catch_up import CatchUpProjector, wait_until_logged
from projections.drift import DriftReport, check_drift
from projections.personal import shown_entries
from projections.ports import ReadModel
from projections.rebuild import Rebuilder
from projections.status import READ_TABLES, ProjectionStatus, read_tables_status
from projections.time_travel import TimeTravel

logger = logging.getLogger(__name__)


# The one choice of store: every other part asks the kit.
KITS: dict[str, Callable[[Settings], StoreKit]] = {
    "sqlite": sqlite_kit.build_kit,
    "dynamodb": dynamodb_kit.build_kit,
}


def store_kit(settings: Settings) -> StoreKit:
    """The kit of the configured store (``settings.store``); opens nothing yet."""
    return KITS[settings.store](settings)


@dataclass
class Container:
    """Everything a running service holds; ``close`` releases it all."""

    settings: Settings
    kit: StoreKit
    service: StoredRegistrationService
    read_model: ReadModel
    projector: CatchUpProjector
    audit: AuditLog
    history: History
    time_travel: TimeTravel
    idempotency: IdempotencyStore
    rebuilder: Rebuilder
    personal_data: PersonalDataVault
    indexer: Indexer | None = None
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

    def positions(self) -> tuple[int | None, int | None, str | None]:
        """The event store's last notification id, the read tables' position and
        None; or (None, None, why) when the store does not answer (liveness:
        never raises)."""
        try:
            head = self.service.recorder.max_notification_id() or 0
            log_position = self.read_model.log_position()
        except Exception as error:  # any failure to answer is "degraded", never a 500
            logger.warning("health: the store did not answer: %s", error)
            return None, None, f"the store did not answer ({type(error).__name__})"
        return head, log_position, None

    def readiness(self) -> list[tuple[str, str]]:
        """The readiness checks failing now, each as (check, why); none: ready.

        ``store``: the event store and read tables answer; ``readTables``: the
        read tables served hold the whole log; ``feed`` (DynamoDB, where this
        process indexes): the stream indexer runs and its oldest pending write
        is younger than ``READY_MAX_FEED_LAG_SECONDS``.
        """
        try:
            status = self.projection(READ_TABLES)
        except Exception as error:  # any failure to answer is "not ready", never a 500
            return [("store", f"the store did not answer ({type(error).__name__})")]
        failing: list[tuple[str, str]] = []
        if status.lag:
            failing.append(
                ("readTables", f"the read tables are {status.lag} events behind the log")
            )
        if self.indexer is not None and self.settings.dynamodb_indexer:
            lag = self.indexer.lag()
            oldest = getattr(lag, "oldest_pending_seconds", None)
            bound = self.settings.ready_max_feed_lag_seconds
            if not getattr(lag, "running", True):
                failing.append(("feed", "the stream indexer is not running"))
            elif oldest is not None and oldest > bound:
                failing.append(
                    ("feed", f"the oldest unindexed write is {oldest:.1f}s old (bound {bound}s)")
                )
        return failing

    def check(
        self, name: str, on_progress: Callable[[int, int], None] | None = None
    ) -> DriftReport:
        """Compares the named projection with a fresh fold of the log."""
        self.known_projection(name)
        return check_drift(self.service.recorder, self.service.mapper, self.read_model, on_progress)

    def erase_user(
        self, user_id: str, erased_by: str | None, request_id: str | None
    ) -> ErasureOutcome:
        """Erases the user (``RegistrationService.erase_user_command``), then
        ``forget_user``."""
        outcome = self.service.erase_user(user_id, erased_by, request_id)
        self.forget_user(user_id)
        return outcome

    def forget_user(self, user_id: str) -> None:
        """After an erasure: deletes the kept idempotent answers that showed the
        user's name, and the store's own copies of what was deleted (its WAL)."""
        forgotten = self.idempotency.forget(user_id)
        self.kit.scrub()
        logger.info("user erased", extra={"userId": user_id, "answersForgotten": forgotten})

    def seal_names(self) -> int:
        """Seals the names a history written before names were sealed holds as
        given (``infra/legacy_names.py``); returns how many users' streams were
        rewritten. NotImplementedError on a store that cannot rewrite them. The
        read tables are to be rebuilt afterwards (``regsvc seal-names`` does)."""
        recorder = self.service.recorder
        rewrite = self.kit.history_rewriter(recorder)
        if rewrite is None:
            msg = f"Sealing the names of an old history is not supported on {self.settings.store}"
            raise NotImplementedError(msg)
        wait_until_logged(recorder, every_process=True)
        return seal_names(
            self.audit.notifications(),
            recorder.select_events,
            self.service.mapper,
            self.personal_data,
            rewrite,
            self._forget_resealed,
        )

    def _forget_resealed(self, aggregate_id: UUID, user_id: str) -> None:
        """After a user's stream was resealed: the kept idempotent answers that
        showed the name as given go, and so does the cached aggregate."""
        self.idempotency.forget(user_id)
        cache = self.service.repository.cache
        if cache is not None:
            with contextlib.suppress(KeyError):
                cache.get(aggregate_id, evict=True)

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
        if not self.kit.local or settings.workers > 1 or not settings.decide_on_event_loop:
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
        self.personal_data.close()
        self.read_model.close()
        self.service.close()


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


def event_store_env(kit: StoreKit) -> dict[str, str]:
    """The eventsourcing environment of the kit's event store."""
    return {**kit.event_store_env(), **CACHE}


def _nothing() -> None:
    """Nothing to wait for."""


def build_container(
    settings: Settings, kit: StoreKit | None = None, observer: CommandObserver | None = None
) -> Container:
    """The service on the configured store; ``kit``: the store's kit when the
    caller already built it (the HTTP app, which meters with it); ``observer``:
    told of every command and batch (the HTTP app's metrics)."""
    if kit is None:
        kit = store_kit(settings)
    service = StoredRegistrationService(env=event_store_env(kit))
    if observer is not None:
        service.observer = observer
    service.invariant_violations_raise = settings.environment != "production"
    kit.save_limits.apply_to(service)
    kit.prepare(service)
    read_model = kit.open_read_model()
    master_key = settings.personal_data_master_key
    personal_data = PersonalDataVault(
        kit.open_key_store(read_model),
        None if master_key is None else base64.b64decode(master_key.get_secret_value()),
    )
    service.personal_data = personal_data
    show = partial(shown_entries, revealer=personal_data)
    projector = CatchUpProjector(service.recorder, service.mapper, read_model)
    recorder = service.recorder
    indexer = kit.indexer(recorder)
    logger.info("service wired", extra={"store": settings.store})
    audit = AuditLog(
        recorder,
        service.mapper.decode_state,
        # A verify right after another process's write must count it.
        settle=lambda: wait_until_logged(recorder, every_process=True),
        show=show,
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
        show=show,
    )
    time_travel = TimeTravel(
        recorder.select_events, service.mapper.to_domain_event, read_model.registered_event_ids
    )
    rebuilder = Rebuilder(
        recorder,
        service.mapper,
        kit.open_rebuild_target(read_model, recorder),
        lease_seconds=settings.rebuild_lease_seconds,
        batch_size=settings.rebuild_batch_size,
    )
    return Container(
        settings,
        kit,
        service,
        read_model,
        projector,
        audit,
        history,
        time_travel,
        kit.open_idempotency_store(read_model),
        rebuilder,
        personal_data,
        indexer,
    )


def build_stream_indexer(settings: Settings) -> RecordIndexer:
    """An indexer of the change stream's records for the tables the service
    uses under ``settings`` (the indexer Lambda's); ValueError on a store
    whose log is written with the events.

    The table names and the client come from the service's own recorder, so
    they are the API's. Tables are not created (nor looked up): the stack
    creates them, and the indexer's role may not describe them.
    """
    kit = store_kit(settings)
    service = StoredRegistrationService(env={**event_store_env(kit), "CREATE_TABLE": "n"})
    indexer = kit.stream_indexer(service.recorder)
    if indexer is None:
        msg = f"The stream indexer runs on DynamoDB only, not STORE={settings.store}"
        raise ValueError(msg)
    return indexer
