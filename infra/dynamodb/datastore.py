"""The DynamoDB client, table naming, and the event store's table creation
(through :func:`infra.dynamodb.tables.ensure_tables`)."""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import boto3
from botocore.config import Config
from eventsourcing.persistence import OperationalError

from infra.dynamodb import fast_parse
from infra.dynamodb.errors import translate_errors
from infra.dynamodb.tables import TableNotReadyError, TableSpec, ensure_tables

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import KeysAndAttributesTypeDef
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

logger = logging.getLogger(__name__)

OriginatorIDType = Literal["uuid", "text"]

# BatchGetItem takes at most 100 keys.
MAX_BATCH_GET_KEYS = 100


def _jitter(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.25, 0.005 * 2**attempt)))  # noqa: S311 - jitter


def batch_get(
    client: DynamoDBClient,
    table_name: str,
    keys: Sequence[dict[str, Any]],
    *,
    back_off: Callable[[int], None] = _jitter,
    **read: Any,
) -> list[dict[str, Any]]:
    """The items of ``keys`` that exist in ``table_name``: BatchGetItem in requests
    of at most 100 keys, asking again (after ``back_off(attempt)``) for the keys
    DynamoDB left unprocessed. ``read``: the request's other fields for the
    table (``ConsistentRead``, ``ProjectionExpression``...)."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), MAX_BATCH_GET_KEYS):
        pending = list(keys[start : start + MAX_BATCH_GET_KEYS])
        attempt = 0
        while pending:
            with translate_errors():
                request = cast("KeysAndAttributesTypeDef", {"Keys": pending, **read})
                response = client.batch_get_item(RequestItems={table_name: request})
            found.extend(response.get("Responses", {}).get(table_name, []))
            unprocessed = response.get("UnprocessedKeys", {}).get(table_name)
            pending = list(unprocessed["Keys"]) if unprocessed else []
            if pending:
                attempt += 1
                back_off(attempt)
    return found


_SESSION_LOCK = threading.Lock()


@functools.cache
def _session() -> boto3.session.Session:
    """One session per process: its loader caches botocore's service models, so
    each further client costs milliseconds instead of a quarter second."""
    return boto3.session.Session()


# A DynamoDB call answers in milliseconds; one that has not answered after
# READ_TIMEOUT_SECONDS is retried, and a failure to connect or to get an answer
# (a timeout, a refusal, a reset) is retried only while the call is younger than
# RETRY_BUDGET_SECONDS: a store that stalls without answering holds a call for
# seconds, not for max_attempts read timeouts (a minute at 5 x 10 s). Throttling
# and server errors, which do answer, are retried as botocore's standard mode says.
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 5.0
RETRY_BUDGET_SECONDS = 5.0
_CALL_STARTED = "regsvc_call_started"
_BUDGET_ID = "regsvc-retry-budget"


def bound_retries(client: Any, budget: float) -> None:
    """Makes ``client`` (DynamoDB or DynamoDB Streams) give up retrying a call
    that failed to connect or to get an answer once the call is ``budget``
    seconds old: the failure is raised as it is (translated at the boundary)."""
    service = client.meta.service_model.service_id.hyphenize()

    def started(context: dict[str, Any], **_: Any) -> None:
        context[_CALL_STARTED] = time.monotonic()

    def within_budget(
        caught_exception: Exception | None, request_dict: dict[str, Any], **_: Any
    ) -> None:
        if caught_exception is None:
            return  # an answer (throttling, a server error): botocore decides
        began = request_dict.get("context", {}).get(_CALL_STARTED)
        if began is not None and time.monotonic() - began >= budget:
            raise caught_exception

    hooks: dict[str, Any] = {
        f"before-call.{service}": started,
        f"needs-retry.{service}": within_budget,
    }
    for event, handler in hooks.items():
        client.meta.events.unregister(event, unique_id=_BUDGET_ID)
        client.meta.events.register_first(event, handler, unique_id=_BUDGET_ID)


@dataclass(frozen=True)
class ClientOptions:
    """Where and how to reach DynamoDB: shared by the DynamoDB client and the
    DynamoDB Streams client built for the same store."""

    endpoint_url: str | None = None
    region_name: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS
    read_timeout: float = READ_TIMEOUT_SECONDS
    max_attempts: int = 5
    max_pool_connections: int = 50
    retry_mode: Literal["standard", "adaptive"] = "standard"
    simulated_latency_ms: float = 0.0  # a benchmark tool: DYNAMODB_SIMULATED_LATENCY_MS
    retry_budget: float = RETRY_BUDGET_SECONDS

    def config(self) -> Config:
        return Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"mode": self.retry_mode, "max_attempts": self.max_attempts},
            max_pool_connections=self.max_pool_connections,
            tcp_keepalive=True,
        )


def make_streams_client(options: ClientOptions) -> DynamoDBStreamsClient:
    """A DynamoDB Streams client for the store ``options`` name (DynamoDB Local
    serves Streams on its one endpoint; on AWS boto3 resolves the Streams
    endpoint of the region when ``endpoint_url`` is unset)."""
    with _SESSION_LOCK:
        streams = _session().client(
            "dynamodbstreams",
            endpoint_url=options.endpoint_url,
            region_name=options.region_name,
            aws_access_key_id=options.aws_access_key_id,
            aws_secret_access_key=options.aws_secret_access_key,
            aws_session_token=options.aws_session_token,
            config=options.config(),
        )
    fast_parse.install(streams)
    bound_retries(streams, options.retry_budget)
    _simulate_latency(streams, options)
    return streams


def _simulate_latency(client: Any, options: ClientOptions) -> None:
    """Benchmarks only: every call waits as long as a network round trip."""
    if options.simulated_latency_ms > 0:
        from infra.devtools.simulated_latency import add_simulated_latency

        add_simulated_latency(client, options.simulated_latency_ms)


def make_client(
    *,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_session_token: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    read_timeout: float = READ_TIMEOUT_SECONDS,
    max_attempts: int = 5,
    max_pool_connections: int = 50,
    retry_mode: Literal["standard", "adaptive"] = "standard",
    simulated_latency_ms: float = 0.0,
    retry_budget: float = RETRY_BUDGET_SECONDS,
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
    options = ClientOptions(
        endpoint_url=endpoint_url,
        region_name=region_name,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        aws_session_token=aws_session_token,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_attempts=max_attempts,
        max_pool_connections=max_pool_connections,
        retry_mode=retry_mode,
        simulated_latency_ms=simulated_latency_ms,
        retry_budget=retry_budget,
    )
    with _SESSION_LOCK:  # botocore sessions are not safe to create clients from concurrently
        client = _session().client(
            "dynamodb",
            endpoint_url=endpoint_url,
            region_name=region_name,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token,
            config=options.config(),
        )
    fast_parse.install(client)
    bound_retries(client, options.retry_budget)
    _simulate_latency(client, options)
    _OPTIONS[client] = options
    return client


# How each client made here was configured, so that a Streams client for the
# same store can be made later (boto3 clients do not expose their credentials).
_OPTIONS: weakref.WeakKeyDictionary[DynamoDBClient, ClientOptions] = weakref.WeakKeyDictionary()


def client_options(client: DynamoDBClient) -> ClientOptions:
    """The options ``client`` was made with (by :func:`make_client`), else its
    endpoint and region with boto3's credential chain."""
    found = _OPTIONS.get(client)
    if found is not None:
        return found
    return ClientOptions(endpoint_url=client.meta.endpoint_url, region_name=client.meta.region_name)


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
        self._streams_client: DynamoDBStreamsClient | None = None

    def table_name(self, name: str) -> str:
        return self.table_prefix + name

    @property
    def streams_client(self) -> DynamoDBStreamsClient:
        """A DynamoDB Streams client for the same store (made on first use)."""
        with self._lock:
            if self._streams_client is None:
                self._streams_client = make_streams_client(client_options(self.client))
            return self._streams_client

    def ensure_table(self, spec: TableSpec) -> None:
        """Creates the table unless it exists, then waits until it is ACTIVE
        (:func:`infra.dynamodb.tables.ensure_tables`, the one creation path)."""
        with self._lock:
            if spec.name in self._ensured:
                return
        with translate_errors():
            try:
                ensure_tables(self.client, [spec], timeout=self.create_table_timeout)
            except TableNotReadyError as error:
                raise OperationalError(str(error)) from error
        with self._lock:
            self._ensured.add(spec.name)

    def close(self) -> None:
        self.client.close()
        if self._streams_client is not None:
            self._streams_client.close()


__all__ = [
    "ClientOptions",
    "DynamoDBDatastore",
    "TableSpec",
    "batch_get",
    "client_options",
    "make_client",
    "make_streams_client",
]
