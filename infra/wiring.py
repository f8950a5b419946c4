"""The one place where the service, its store, read tables and projector are put together."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from infra.dynamodb import DynamoDBFactory
from infra.dynamodb.capacity import instrument
from infra.dynamodb.datastore import make_client
from infra.dynamodb.read_tables import DynamoDBReadModel
from infra.service import StoredRegistrationService
from infra.settings import Settings
from infra.sqlite.read_tables import SQLiteReadModel
from projections.ports import ReadModel
from projections.projector import CatchUpProjector

logger = logging.getLogger(__name__)


@dataclass
class Container:
    """Everything a running service holds; ``close`` releases it all."""

    settings: Settings
    service: StoredRegistrationService
    read_model: ReadModel
    projector: CatchUpProjector

    def start(self) -> None:
        """Catches the read tables up with the event store, then follows it."""
        self.projector.catch_up()
        self.projector.start()

    def close(self) -> None:
        self.projector.stop()
        self.read_model.close()
        self.service.close()


DYNAMODB_MAX_PROMOTIONS = 15

CACHE = {
    # Recently used aggregates stay in memory; a load then only reads the
    # events saved since (by any process), not a snapshot and its tail.
    "AGGREGATE_CACHE_MAXSIZE": "10000",
}


def _aws_credentials(settings: Settings) -> dict[str, str]:
    """Explicit credentials when configured; otherwise boto3's standard chain decides."""
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        return {
            "AWS_ACCESS_KEY_ID": settings.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key.get_secret_value(),
        }
    return {}


def event_store_env(settings: Settings) -> dict[str, str]:
    """The eventsourcing environment for the configured store."""
    if settings.store == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
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
    return env


def build_read_model(settings: Settings) -> ReadModel:
    if settings.store == "sqlite":
        return SQLiteReadModel(settings.read_tables_path, lock_timeout=settings.sqlite_lock_timeout)
    credentials = _aws_credentials(settings)
    client = make_client(
        endpoint_url=settings.dynamodb_endpoint_url,
        region_name=settings.aws_region,
        aws_access_key_id=credentials.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=credentials.get("AWS_SECRET_ACCESS_KEY"),
        max_attempts=settings.dynamodb_max_attempts,
    )
    instrument(client)
    return DynamoDBReadModel(client, settings.dynamodb_table_prefix)


def build_container(settings: Settings) -> Container:
    service = StoredRegistrationService(env=event_store_env(settings))
    service.invariant_violations_raise = settings.environment != "production"
    if isinstance(service.factory, DynamoDBFactory):
        instrument(service.factory.datastore.client)
        # 1 capacity event + 3 events per promotion (+ a page) within 49 events.
        service.max_promotions_per_command = DYNAMODB_MAX_PROMOTIONS
    read_model = build_read_model(settings)
    projector = CatchUpProjector(
        service.recorder,
        service.mapper,
        read_model,
        poll_interval=settings.projection_poll_interval,
    )
    logger.info("service wired", extra={"store": settings.store})
    return Container(settings, service, read_model, projector)
