"""The DynamoDB client, table naming and idempotent table creation."""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from eventsourcing.persistence import OperationalError

from infra.dynamodb.errors import error_code, translate_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.literals import ScalarAttributeTypeType

logger = logging.getLogger(__name__)

OriginatorIDType = Literal["uuid", "text"]


@dataclass(frozen=True)
class TableSpec:
    """Key schema of one table: a partition key and an optional sort key."""

    name: str
    pk: str
    pk_type: ScalarAttributeTypeType
    sk: str | None = None
    sk_type: ScalarAttributeTypeType = "N"


_SESSION_LOCK = threading.Lock()


@functools.cache
def _session() -> boto3.session.Session:
    """One session per process: its loader caches botocore's service models, so
    each further client costs milliseconds instead of a quarter second."""
    return boto3.session.Session()


def make_client(
    *,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_session_token: str | None = None,
    connect_timeout: float = 3.0,
    read_timeout: float = 10.0,
    max_attempts: int = 5,
    max_pool_connections: int = 50,
    retry_mode: Literal["standard", "adaptive"] = "standard",
) -> DynamoDBClient:
    """Constructs a thread-safe low-level DynamoDB client.

    botocore's "standard" retry mode retries throttling, transient server errors
    and connection errors with jittered exponential backoff, up to
    ``max_attempts`` attempts in total. What still fails after that reaches
    :func:`infra.dynamodb.errors.translate` and becomes an OperationalError.
    TransactWriteItems requests carry a ClientRequestToken (we set one per
    logical attempt), so a botocore-level retry of a transaction that did commit
    (e.g. after a read timeout) is answered with success instead of being
    applied twice.
    """
    with _SESSION_LOCK:  # botocore sessions are not safe to create clients from concurrently
        return _session().client(
            "dynamodb",
            endpoint_url=endpoint_url,
            region_name=region_name,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token,
            config=Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"mode": retry_mode, "max_attempts": max_attempts},
                max_pool_connections=max_pool_connections,
                tcp_keepalive=True,
            ),
        )


class DynamoDBDatastore:
    """Holds the client and settings shared by the recorders of one factory."""

    def __init__(
        self,
        client: DynamoDBClient,
        *,
        table_prefix: str = "",
        originator_id_type: OriginatorIDType = "uuid",
        poll_interval: float = 0.1,
        max_append_attempts: int = 100,
        append_timeout: float = 30.0,
        create_table_timeout: float = 300.0,
    ) -> None:
        self.client = client
        self.table_prefix = table_prefix
        self.originator_id_type = originator_id_type
        self.poll_interval = poll_interval
        self.max_append_attempts = max_append_attempts
        self.append_timeout = append_timeout
        self.create_table_timeout = create_table_timeout
        self._ensured: set[str] = set()
        self._lock = threading.Lock()
        self._append_locks: dict[str, threading.Lock] = {}

    def table_name(self, name: str) -> str:
        return self.table_prefix + name

    def append_lock(self, notifications_table_name: str) -> threading.Lock:
        """The lock that serialises this process's appends to one log.

        All appends to a log commit one at a time anyway (compare-and-set on its
        counter item). Threads of one process gain nothing by racing each other
        through DynamoDB: the losers' transactions are wasted round trips and,
        on AWS, wasted write capacity. So they queue here, and only appends
        from other processes can make the counter condition fail.
        """
        with self._lock:
            lock = self._append_locks.get(notifications_table_name)
            if lock is None:
                lock = self._append_locks[notifications_table_name] = threading.Lock()
            return lock

    def ensure_table(self, spec: TableSpec) -> None:
        """Creates the table unless it exists, then waits until it is ACTIVE.

        Idempotent and safe to race: a concurrent creator's
        ResourceInUseException is treated as "exists".
        """
        with self._lock:
            if spec.name in self._ensured:
                return
        with translate_errors():
            status = self._table_status(spec.name)
            if status is None:
                self._create_table(spec)
            self._wait_until_active(spec.name)
        with self._lock:
            self._ensured.add(spec.name)

    def _table_status(self, name: str) -> str | None:
        try:
            response = self.client.describe_table(TableName=name)
        except ClientError as e:
            if error_code(e) == "ResourceNotFoundException":
                return None
            raise
        return response["Table"].get("TableStatus")

    def _create_table(self, spec: TableSpec) -> None:
        logger.info("Creating DynamoDB table %s", spec.name)
        try:
            if spec.sk is None:
                self.client.create_table(
                    TableName=spec.name,
                    BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[
                        {"AttributeName": spec.pk, "AttributeType": spec.pk_type},
                    ],
                    KeySchema=[{"AttributeName": spec.pk, "KeyType": "HASH"}],
                )
            else:
                self.client.create_table(
                    TableName=spec.name,
                    BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[
                        {"AttributeName": spec.pk, "AttributeType": spec.pk_type},
                        {"AttributeName": spec.sk, "AttributeType": spec.sk_type},
                    ],
                    KeySchema=[
                        {"AttributeName": spec.pk, "KeyType": "HASH"},
                        {"AttributeName": spec.sk, "KeyType": "RANGE"},
                    ],
                )
        except ClientError as e:
            # Another process created it first: fine, we only wait for ACTIVE.
            if error_code(e) != "ResourceInUseException":
                raise

    def _wait_until_active(self, name: str) -> None:
        # Not boto3's table_exists waiter: it sleeps 20 s between polls.
        deadline = time.monotonic() + self.create_table_timeout
        interval = 0.05
        while True:
            status = self._table_status(name)
            if status == "ACTIVE":
                return
            if time.monotonic() > deadline:
                msg = f"Table {name} not ACTIVE after {self.create_table_timeout}s"
                raise OperationalError(msg)
            time.sleep(interval)
            interval = min(interval * 2, 2.0)

    def close(self) -> None:
        self.client.close()
