"""Infrastructure factory: ``PERSISTENCE_MODULE=infra.dynamodb``."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    ProcessRecorder,
)
from eventsourcing.utils import Environment, EnvType, resolve_topic, strtobool

from infra.dynamodb.datastore import (
    CONNECT_TIMEOUT_SECONDS,
    READ_TIMEOUT_SECONDS,
    DynamoDBDatastore,
    OriginatorIDType,
    make_client,
)
from infra.dynamodb.event_store import DynamoDBAggregateRecorder
from infra.dynamodb.recorders import DynamoDBApplicationRecorder
from infra.dynamodb.tracking import DynamoDBProcessRecorder, DynamoDBTrackingRecorder

if TYPE_CHECKING:
    from typing import Literal


class DynamoDBFactory(InfrastructureFactory[DynamoDBTrackingRecorder]):
    """Constructs DynamoDB recorders from environment variables.

    ==============================  ==============================================
    DYNAMODB_ENDPOINT_URL           optional; e.g. DynamoDB Local. Unset: boto3
                                    resolves it (AWS_ENDPOINT_URL_DYNAMODB, AWS).
    DYNAMODB_TABLE_PREFIX           prepended to every table name (default "")
    AWS_DEFAULT_REGION/AWS_REGION   region (default us-east-1 when an endpoint
                                    URL is given, else boto3's resolution)
    AWS_ACCESS_KEY_ID, ...          optional explicit credentials; unset: boto3's
                                    credential chain
    CREATE_TABLE                    create missing tables (default yes)
    ORIGINATOR_ID_TYPE              "uuid" (default) or "text"
    DYNAMODB_CONNECT_TIMEOUT        seconds (default 3)
    DYNAMODB_READ_TIMEOUT           seconds (default 5)
    DYNAMODB_MAX_ATTEMPTS           botocore attempts per request (default 5)
    DYNAMODB_RETRY_MODE             "standard" (default) or "adaptive"
    DYNAMODB_MAX_POOL_CONNECTIONS   HTTP connection pool size (default 50)
    DYNAMODB_MAX_APPEND_ATTEMPTS    counter-conflict retries per append (100)
    DYNAMODB_APPEND_TIMEOUT         seconds an append may keep retrying (30)
    DYNAMODB_POLL_INTERVAL          subscription poll interval, s (default 0.1)
    DYNAMODB_SIMULATED_LATENCY_MS   benchmarks: ms each call waits first (0)
    ==============================  ==============================================

    Table names follow eventsourcing's Postgres factory: ``<prefix><app>_events``,
    ``<prefix><app>_snapshots``, ``<prefix><app>_notifications`` and
    ``<prefix><app>_tracking``, where ``<app>`` is the lower-cased application
    name ("stored", or "notification" for tracking, when there is none).
    """

    DYNAMODB_ENDPOINT_URL = "DYNAMODB_ENDPOINT_URL"
    DYNAMODB_TABLE_PREFIX = "DYNAMODB_TABLE_PREFIX"
    AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
    AWS_REGION = "AWS_REGION"
    AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
    AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 (a variable name)
    AWS_SESSION_TOKEN = "AWS_SESSION_TOKEN"  # noqa: S105 (a variable name)
    CREATE_TABLE = "CREATE_TABLE"
    ORIGINATOR_ID_TYPE = "ORIGINATOR_ID_TYPE"
    DYNAMODB_CONNECT_TIMEOUT = "DYNAMODB_CONNECT_TIMEOUT"
    DYNAMODB_READ_TIMEOUT = "DYNAMODB_READ_TIMEOUT"
    DYNAMODB_MAX_ATTEMPTS = "DYNAMODB_MAX_ATTEMPTS"
    DYNAMODB_RETRY_MODE = "DYNAMODB_RETRY_MODE"
    DYNAMODB_MAX_POOL_CONNECTIONS = "DYNAMODB_MAX_POOL_CONNECTIONS"
    DYNAMODB_MAX_APPEND_ATTEMPTS = "DYNAMODB_MAX_APPEND_ATTEMPTS"
    DYNAMODB_APPEND_TIMEOUT = "DYNAMODB_APPEND_TIMEOUT"
    DYNAMODB_POLL_INTERVAL = "DYNAMODB_POLL_INTERVAL"
    DYNAMODB_SIMULATED_LATENCY_MS = "DYNAMODB_SIMULATED_LATENCY_MS"

    aggregate_recorder_class = DynamoDBAggregateRecorder
    application_recorder_class = DynamoDBApplicationRecorder
    tracking_recorder_class = DynamoDBTrackingRecorder
    process_recorder_class = DynamoDBProcessRecorder

    def __init__(self, env: Environment | EnvType | None):
        super().__init__(env)
        endpoint_url = self.env.get(self.DYNAMODB_ENDPOINT_URL) or None
        region = self.env.get(self.AWS_DEFAULT_REGION) or self.env.get(self.AWS_REGION) or None
        if region is None and endpoint_url is not None:
            region = "us-east-1"  # only used for request signing locally
        originator_id_type = self.env.get(self.ORIGINATOR_ID_TYPE, "uuid").lower()
        if originator_id_type not in ("uuid", "text"):
            msg = (
                f"Invalid {self.ORIGINATOR_ID_TYPE} '{originator_id_type}', "
                "must be 'uuid' or 'text'"
            )
            raise OSError(msg)
        retry_mode = self.env.get(self.DYNAMODB_RETRY_MODE, "standard")
        if retry_mode not in ("standard", "adaptive"):
            msg = f"Invalid {self.DYNAMODB_RETRY_MODE} '{retry_mode}'"
            raise OSError(msg)
        client = make_client(
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=self.env.get(self.AWS_ACCESS_KEY_ID) or None,
            aws_secret_access_key=self.env.get(self.AWS_SECRET_ACCESS_KEY) or None,
            aws_session_token=self.env.get(self.AWS_SESSION_TOKEN) or None,
            connect_timeout=self._float(self.DYNAMODB_CONNECT_TIMEOUT, CONNECT_TIMEOUT_SECONDS),
            read_timeout=self._float(self.DYNAMODB_READ_TIMEOUT, READ_TIMEOUT_SECONDS),
            max_attempts=self._int(self.DYNAMODB_MAX_ATTEMPTS, 5),
            max_pool_connections=self._int(self.DYNAMODB_MAX_POOL_CONNECTIONS, 50),
            retry_mode=cast("Literal['standard', 'adaptive']", retry_mode),
            simulated_latency_ms=self._float(self.DYNAMODB_SIMULATED_LATENCY_MS, 0.0),
        )
        self.datastore = DynamoDBDatastore(
            client,
            table_prefix=self.env.get(self.DYNAMODB_TABLE_PREFIX, ""),
            originator_id_type=cast("OriginatorIDType", originator_id_type),
            poll_interval=self._float(self.DYNAMODB_POLL_INTERVAL, 0.1),
            max_append_attempts=self._int(self.DYNAMODB_MAX_APPEND_ATTEMPTS, 100),
            append_timeout=self._float(self.DYNAMODB_APPEND_TIMEOUT, 30.0),
        )

    def _float(self, key: str, default: float) -> float:
        value = (self.env.get(key) or "").strip()
        if not value:
            return default
        try:
            return float(value)
        except ValueError:
            msg = f"Environment variable {key} must be a number: {value!r}"
            raise OSError(msg) from None

    def _int(self, key: str, default: int) -> int:
        value = (self.env.get(key) or "").strip()
        if not value:
            return default
        try:
            return int(value)
        except ValueError:
            msg = f"Environment variable {key} must be an integer: {value!r}"
            raise OSError(msg) from None

    def _app_prefix(self, default: str) -> str:
        return self.env.name.lower() or default

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        recorder = type(self).aggregate_recorder_class(
            datastore=self.datastore,
            events_table_name=f"{self._app_prefix('stored')}_{purpose}",
        )
        if self.env_create_table():
            recorder.create_table()
        return recorder

    def application_recorder(self) -> ApplicationRecorder:
        topic = self.env.get(self.APPLICATION_RECORDER_TOPIC)
        if topic:
            recorder_class: type[DynamoDBApplicationRecorder] = resolve_topic(topic)
            assert issubclass(recorder_class, DynamoDBApplicationRecorder)
        else:
            recorder_class = type(self).application_recorder_class
        prefix = self._app_prefix("stored")
        recorder = recorder_class(
            datastore=self.datastore,
            events_table_name=f"{prefix}_events",
            notifications_table_name=f"{prefix}_notifications",
        )
        if self.env_create_table():
            recorder.create_table()
        return recorder

    def tracking_recorder(
        self, tracking_recorder_class: type[DynamoDBTrackingRecorder] | None = None
    ) -> DynamoDBTrackingRecorder:
        if tracking_recorder_class is None:
            topic = self.env.get(self.TRACKING_RECORDER_TOPIC)
            if topic:
                tracking_recorder_class = resolve_topic(topic)
            else:
                tracking_recorder_class = type(self).tracking_recorder_class
        assert tracking_recorder_class is not None
        assert issubclass(tracking_recorder_class, DynamoDBTrackingRecorder)
        recorder = tracking_recorder_class(
            datastore=self.datastore,
            tracking_table_name=f"{self._app_prefix('notification')}_tracking",
        )
        if self.env_create_table():
            recorder.create_table()
        return recorder

    def process_recorder(self) -> ProcessRecorder:
        topic = self.env.get(self.PROCESS_RECORDER_TOPIC)
        if topic:
            recorder_class: type[DynamoDBProcessRecorder] = resolve_topic(topic)
            assert issubclass(recorder_class, DynamoDBProcessRecorder)
        else:
            recorder_class = type(self).process_recorder_class
        prefix = self._app_prefix("stored")
        recorder = recorder_class(
            datastore=self.datastore,
            events_table_name=f"{prefix}_events",
            notifications_table_name=f"{prefix}_notifications",
            tracking_table_name=f"{self._app_prefix('notification')}_tracking",
        )
        if self.env_create_table():
            recorder.create_table()
        return recorder

    def env_create_table(self) -> bool:
        default = "yes"
        return bool(strtobool(self.env.get(self.CREATE_TABLE, default) or default))

    def close(self) -> None:
        self.datastore.close()
