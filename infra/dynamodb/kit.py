"""The DynamoDB store as the service uses it (``infra.kit.StoreKit``).

The event store (``infra.dynamodb``, an eventsourcing persistence module),
the read tables and the idempotency records are DynamoDB tables; the log is
built after the appends from the events table's stream, by a thread of the
server (``indexer``) or by the indexer Lambda (``stream_indexer``). Every
client's consumed capacity is metered, and a save stays within one
transaction's limits (``SAVE_LIMITS``).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from eventsourcing.persistence import ApplicationRecorder

from domain.application import RegistrationService
from domain.unit_of_work import SaveWeights
from infra.dynamodb.capacity import (
    PROCESS_TOTALS,
    add_listener,
    instrument,
    start_request_meter,
)
from infra.dynamodb.datastore import make_client
from infra.dynamodb.factory import DynamoDBFactory
from infra.dynamodb.history_rewrite import HistoryRewriter
from infra.dynamodb.idempotency import DynamoDBIdempotencyStore
from infra.dynamodb.indexer import ShardPoller, StreamIndexer
from infra.dynamodb.keys import DynamoDBKeyStore
from infra.dynamodb.layout import MAX_TRANSACT_ITEMS
from infra.dynamodb.read_tables import DynamoDBReadModel
from infra.dynamodb.rebuild import DynamoDBRebuildTarget
from infra.dynamodb.recorders import DynamoDBApplicationRecorder
from infra.dynamodb.reindex import reindex
from infra.dynamodb.repair import repair_since
from infra.idempotency import IdempotencyStore
from infra.kit import CapacityMetering, Reindex, SaveLimits
from infra.legacy_names import Rewrite
from infra.personal_data import KeyStore
from infra.settings import Settings
from projections.ports import ReadModel
from projections.rebuild import RebuildTarget

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

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
SAVE_LIMITS = SaveLimits(
    max_save_weight=MAX_TRANSACT_ITEMS,
    max_promotions_per_save=12,
    weights=SaveWeights(per_event=1, per_aggregate=1, per_gathering=0, command=16),
)


def aws_credentials(settings: Settings) -> dict[str, str]:
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


def _own(recorder: ApplicationRecorder) -> DynamoDBApplicationRecorder:
    if not isinstance(recorder, DynamoDBApplicationRecorder):  # pragma: no cover - wiring
        msg = f"Expected the DynamoDB application recorder, got {type(recorder).__name__}"
        raise TypeError(msg)
    return recorder


class DynamoDBKit:
    """Everything the service needs of DynamoDB's tables under ``settings``."""

    save_limits = SAVE_LIMITS
    metering: CapacityMetering | None = CapacityMetering(
        start_request_meter, PROCESS_TOTALS, add_listener
    )
    local = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def event_store_env(self) -> dict[str, str]:
        settings = self.settings
        env = {
            "PERSISTENCE_MODULE": "infra.dynamodb",
            "DYNAMODB_TABLE_PREFIX": settings.dynamodb_table_prefix,
            "DYNAMODB_MAX_ATTEMPTS": str(settings.dynamodb_max_attempts),
            "AWS_DEFAULT_REGION": settings.aws_region,
            "CREATE_TABLE": "y",
            **aws_credentials(settings),
        }
        if settings.dynamodb_endpoint_url:
            env["DYNAMODB_ENDPOINT_URL"] = settings.dynamodb_endpoint_url
        if settings.dynamodb_simulated_latency_ms > 0:  # benchmarks only
            env["DYNAMODB_SIMULATED_LATENCY_MS"] = str(settings.dynamodb_simulated_latency_ms)
        return env

    def missing(self) -> str | None:
        from infra.dynamodb.presence import any_table_named  # the command line's only

        prefix = self.settings.dynamodb_table_prefix
        client = self._new_client()
        try:
            if any_table_named(client, prefix):
                return None
        finally:
            client.close()
        where = self.settings.dynamodb_endpoint_url or self.settings.aws_region
        return f"no tables named {prefix}* at {where} (DYNAMODB_TABLE_PREFIX)"

    def prepare(self, service: RegistrationService) -> None:
        if isinstance(service.factory, DynamoDBFactory):
            instrument(service.factory.datastore.client)
        if isinstance(service.recorder, DynamoDBApplicationRecorder):
            # Where another indexes (the API Lambda), waiting until something is
            # indexed only reads the index: no Streams call, no index write.
            service.recorder.index_in_process = self.settings.dynamodb_indexer

    def _new_client(self) -> DynamoDBClient:
        """A new client for the read tables and the idempotency records (metered)."""
        settings = self.settings
        credentials = aws_credentials(settings)
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
        return client

    def open_read_model(self) -> ReadModel:
        return DynamoDBReadModel(self._new_client(), self.settings.dynamodb_table_prefix)

    def open_idempotency_store(self, read_model: ReadModel) -> IdempotencyStore:
        assert isinstance(read_model, DynamoDBReadModel), read_model
        # The read model's client: closing the read model closes it.
        return DynamoDBIdempotencyStore(
            read_model.client,
            self.settings.dynamodb_table_prefix,
            ttl_seconds=self.settings.idempotency_ttl_hours * 3600.0,
        )

    def open_key_store(self, read_model: ReadModel) -> KeyStore:
        assert isinstance(read_model, DynamoDBReadModel), read_model
        # The read model's client: closing the read model closes it.
        return DynamoDBKeyStore(read_model.client, self.settings.dynamodb_table_prefix)

    def scrub(self, *, compact: bool = False) -> None:
        """DynamoDB keeps no copy of a deleted item that reads could find.
        ``compact`` (after ``regsvc seal-names``'s rebuild): empties the read
        tables' generation that is not live, which keeps the rows it served
        until the next rebuild (``DynamoDBRebuildTarget.empty_idle``)."""
        if not compact:
            return
        live = DynamoDBReadModel(
            self._new_client(), self.settings.dynamodb_table_prefix, create_tables=False
        )
        try:
            DynamoDBRebuildTarget(live).empty_idle()
        finally:
            live.close()

    def history_rewriter(self, recorder: ApplicationRecorder) -> Rewrite | None:
        """Rewrites the events table's items and the log's older copies together
        (``infra/dynamodb/history_rewrite.py``)."""
        own = _own(recorder)
        return HistoryRewriter(own.client, own.events_table_name, own.notifications_table_name)

    def open_rebuild_target(
        self, read_model: ReadModel, recorder: ApplicationRecorder
    ) -> RebuildTarget:
        assert isinstance(read_model, DynamoDBReadModel), read_model
        # After the switch points, the streams of commits indexed since the
        # head it folded are repaired in the new tables (infra/dynamodb/repair.py).
        repair = None
        if isinstance(recorder, DynamoDBApplicationRecorder) and recorder.repairs is not None:
            repair = partial(repair_since, recorder.repairs, recorder)
        return DynamoDBRebuildTarget(
            read_model,
            grace_seconds=self.settings.rebuild_switch_grace_seconds,
            repair_since=repair,
        )

    def indexer(self, recorder: ApplicationRecorder) -> ShardPoller:
        return _own(recorder).indexer()

    def stream_indexer(self, recorder: ApplicationRecorder) -> StreamIndexer:
        return _own(recorder).stream_indexer()

    def reindexer(self, recorder: ApplicationRecorder) -> Reindex:
        return partial(reindex, _own(recorder))


def build_kit(settings: Settings) -> DynamoDBKit:
    """The DynamoDB kit for ``settings`` (opens nothing yet)."""
    return DynamoDBKit(settings)
