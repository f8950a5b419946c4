"""The SQLite store as the service uses it (``infra.kit.StoreKit``).

One file holds the event store, the log (written with the events), the read
tables, the rebuild's shadow tables and the idempotency records, so there is
no indexer to run, no capacity to meter, and no bound on a save but the file.
"""

from __future__ import annotations

from eventsourcing.persistence import ApplicationRecorder

from domain.application import RegistrationService
from infra.idempotency import IdempotencyStore
from infra.kit import CapacityMetering, Indexer, RecordIndexer, Reindex, SaveLimits
from infra.legacy_names import Rewrite
from infra.personal_data import KeyStore
from infra.settings import Settings
from infra.sqlite.connections import PerThreadConnections
from infra.sqlite.event_store import InlineSQLiteApplicationRecorder
from infra.sqlite.idempotency import SQLiteIdempotencyStore
from infra.sqlite.keys import SQLiteKeyStore, scrub
from infra.sqlite.read_tables import SQLiteReadModel
from infra.sqlite.rebuild import SQLiteRebuildTarget
from projections.ports import ReadModel
from projections.rebuild import RebuildTarget


class SQLiteKit:
    """Everything the service needs of one SQLite file (``settings.event_store_path``)."""

    save_limits = SaveLimits()
    metering: CapacityMetering | None = None
    local = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def event_store_env(self) -> dict[str, str]:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "APPLICATION_RECORDER_TOPIC": (
                "infra.sqlite.event_store:InlineSQLiteApplicationRecorder"
            ),
            "SQLITE_DBNAME": str(settings.event_store_path),
            "SQLITE_LOCK_TIMEOUT": str(settings.sqlite_lock_timeout),
            "CREATE_TABLE": "y",
        }

    def missing(self) -> str | None:
        path = self.settings.event_store_path
        return None if path.exists() else f"no database at {path} (DATA_DIR)"

    def prepare(self, service: RegistrationService) -> None:
        if isinstance(service.recorder, InlineSQLiteApplicationRecorder):
            service.recorder.synchronous = self.settings.sqlite_synchronous

    def open_read_model(self) -> ReadModel:
        return SQLiteReadModel(
            self.settings.event_store_path, lock_timeout=self.settings.sqlite_lock_timeout
        )

    def open_idempotency_store(self, read_model: ReadModel) -> IdempotencyStore:
        return SQLiteIdempotencyStore(
            self.settings.event_store_path,
            ttl_seconds=self.settings.idempotency_ttl_hours * 3600.0,
            lock_timeout=self.settings.sqlite_lock_timeout,
        )

    def open_rebuild_target(
        self, read_model: ReadModel, recorder: ApplicationRecorder
    ) -> RebuildTarget:
        return SQLiteRebuildTarget(
            self.settings.event_store_path, lock_timeout=self.settings.sqlite_lock_timeout
        )

    def open_key_store(self, read_model: ReadModel) -> KeyStore:
        return SQLiteKeyStore(
            self.settings.event_store_path, lock_timeout=self.settings.sqlite_lock_timeout
        )

    def scrub(self, *, compact: bool = False) -> None:
        connections = PerThreadConnections(
            self.settings.event_store_path, lock_timeout=self.settings.sqlite_lock_timeout
        )
        try:
            if compact:
                connections.get().execute("VACUUM")
            scrub(connections)
        finally:
            connections.close()

    def history_rewriter(self, recorder: ApplicationRecorder) -> Rewrite | None:
        if isinstance(recorder, InlineSQLiteApplicationRecorder):
            return recorder.rewrite_states
        return None

    def indexer(self, recorder: ApplicationRecorder) -> Indexer | None:
        return None  # the log is written with the events

    def stream_indexer(self, recorder: ApplicationRecorder) -> RecordIndexer | None:
        return None

    def reindexer(self, recorder: ApplicationRecorder) -> Reindex | None:
        return None


def build_kit(settings: Settings) -> SQLiteKit:
    """The SQLite kit for ``settings`` (opens nothing yet)."""
    return SQLiteKit(settings)
