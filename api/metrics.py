"""Prometheus metrics: what ``GET /metrics`` serves.

Label values are bounded: requests are labelled with their route's template
(``/events/{eventId}``, never the path a client sent), commands with their name
and the outcome's code, never an id.

With ``WORKERS>1`` every worker counts in files under
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode, set up
by ``python -m api`` before the workers start), and a scrape, answered by any
worker, sums them all. The read tables' and the feed's gauges are computed at
scrape time from the store, so any worker gives the same answer.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import Scope

from api.errors import DOMAIN_ERRORS
from api.security import Principal
from domain.errors import RegistrationDomainError
from infra.wiring import Container

logger = logging.getLogger(__name__)

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"
"""The route label of a request no route answers (its path is never a label)."""

HTTP_REQUESTS = Counter(
    "regsvc_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "regsvc_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
COMMANDS = Counter(
    "regsvc_commands_total",
    "Commands ended, by command and outcome (confirmed, waitlisted, ok, or the error code).",
    ["command", "outcome"],
)
PROMOTIONS = Counter(
    "regsvc_promotions_total", "People promoted from a waitlist to a confirmed seat."
)
BATCH_SIZE = Histogram(
    "regsvc_batch_commands",
    "Commands decided and committed together in one batch.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
BATCH_COMMIT = Histogram(
    "regsvc_batch_commit_seconds",
    "Time one batch's save (one store transaction) took.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
IDEMPOTENT_REPLAYS = Counter(
    "regsvc_idempotent_replays_total",
    "Requests answered with the kept response of an earlier one (Idempotent-Replayed: true).",
)

DYNAMODB_UNITS = Counter(
    "regsvc_dynamodb_consumed_units_total",
    "DynamoDB capacity units consumed, by table and kind (read, write).",
    ["table", "kind"],
)
DYNAMODB_RETRIES = Counter(
    "regsvc_dynamodb_retries_total",
    "botocore's retries of DynamoDB calls, by operation and table (several: a transaction's).",
    ["operation", "table"],
)
DYNAMODB_THROTTLED = Counter(
    "regsvc_dynamodb_throttled_total",
    "DynamoDB calls whose final answer was a throttle, by operation and table.",
    ["operation", "table"],
)


class StoreCalls:
    """Counts the store's calls (``infra.kit.StoreCallListener``; DynamoDB reports them)."""

    def consumed(self, table: str, read_units: float, write_units: float) -> None:
        if read_units:
            DYNAMODB_UNITS.labels(table, "read").inc(read_units)
        if write_units:
            DYNAMODB_UNITS.labels(table, "write").inc(write_units)

    def answered(self, operation: str, table: str, retries: int, throttled: bool) -> None:
        if retries:
            DYNAMODB_RETRIES.labels(operation, table).inc(retries)
        if throttled:
            DYNAMODB_THROTTLED.labels(operation, table).inc()


STORE_CALLS = StoreCalls()
"""The one listener: given to every app's metering, it is added once."""

_ERROR_CODES = {cls: code for cls, (_, code) in DOMAIN_ERRORS.items()}


def outcome_code(outcome: Any, error: BaseException | None) -> str:
    """A command's outcome as a bounded label: the registration's status, ``ok``,
    or the error code the HTTP edge answers with (``INTERNAL_ERROR`` for others)."""
    if error is None:
        status = getattr(outcome, "status", None)
        if status is None:
            return "ok"
        return "waitlisted" if str(status) == "waitlist" else str(status)
    for cls in type(error).__mro__:
        code = _ERROR_CODES.get(cls)
        if code is not None:
            return code
    return "REFUSED" if isinstance(error, RegistrationDomainError) else "INTERNAL_ERROR"


class PrometheusObserver:
    """The command side's observer (``domain/observer.py``), counting into Prometheus."""

    def command_settled(self, command: str, outcome: Any, error: BaseException | None) -> None:
        COMMANDS.labels(command, outcome_code(outcome, error)).inc()
        promoted = getattr(outcome, "promoted", ()) if error is None else ()
        if promoted:
            PROMOTIONS.inc(len(promoted))

    def batch_committed(self, size: int, seconds: float) -> None:
        BATCH_SIZE.observe(size)
        BATCH_COMMIT.observe(seconds)


def route_template(scope: Scope) -> str:
    """The template of the route that answered (or answers) this request."""
    route = scope.get("route")
    if route is None:  # answered before routing (401, a replay): find its route
        app = scope.get("app")
        route = matching_route(app.router.routes if app is not None else (), scope)
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


def matching_route(routes: Iterable[BaseRoute], scope: Scope) -> BaseRoute | None:
    """The route among ``routes`` that fully matches the request, looking inside
    included routers (FastAPI keeps each ``include_router`` as one entry whose
    match names no route; the app includes its routers without a prefix)."""
    for candidate in routes:
        if isinstance(candidate, Mount) or candidate.matches(scope)[0] != Match.FULL:
            continue
        included = getattr(candidate, "original_router", None)
        if included is None:
            return candidate
        return matching_route(included.routes, scope)
    return None


def observe_request(scope: Scope, method: str, status: int, seconds: float) -> None:
    route = route_template(scope)
    HTTP_REQUESTS.labels(route, method, str(status)).inc()
    HTTP_LATENCY.labels(route, method).observe(seconds)


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_DIR))


class StoreCollector(Collector):
    """Gauges read from the store at scrape time: the read tables' position and
    lag, and on DynamoDB the feed's indexer lag."""

    def __init__(self, container: Container) -> None:
        self.container = container

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self.container.projection("read-tables")
        yield GaugeMetricFamily(
            "regsvc_read_tables_position",
            "The last log position the read tables hold.",
            value=status.log_position,
        )
        yield GaugeMetricFamily(
            "regsvc_event_store_head", "The event store's last log position.", value=status.head
        )
        yield GaugeMetricFamily(
            "regsvc_read_tables_lag_events",
            "Events in the log the read tables do not hold yet.",
            value=status.lag,
        )
        yield GaugeMetricFamily(
            "regsvc_read_tables_lag_seconds",
            "Age of the oldest event the read tables do not hold yet.",
            value=status.lag_seconds,
        )
        yield GaugeMetricFamily(
            "regsvc_read_tables_live",
            "1 while the read tables are live at the log's head, else 0.",
            value=1.0 if status.state == "live" else 0.0,
        )
        indexer = self.container.indexer
        if indexer is not None and self.container.settings.dynamodb_indexer:
            lag = indexer.lag()
            yield GaugeMetricFamily(
                "regsvc_feed_pending_records",
                "Written events read from the stream but not yet in the feed.",
                value=float(getattr(lag, "pending_records", 0)),
            )
            yield GaugeMetricFamily(
                "regsvc_feed_oldest_pending_seconds",
                "Age of the oldest event waiting for its feed position (0: none).",
                value=float(getattr(lag, "oldest_pending_seconds", None) or 0.0),
            )


def render(container: Container) -> tuple[bytes, str]:
    """The metrics in the Prometheus text format, and its content type."""
    if multiprocess():
        counted = CollectorRegistry()
        MultiProcessCollector(counted)  # type: ignore[no-untyped-call]
    else:
        counted = REGISTRY
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(StoreCollector(container))
    return generate_latest(counted) + generate_latest(scraped), CONTENT_TYPE_LATEST


def is_loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


def may_read(access: str, principal: Principal, scope: Scope) -> bool:
    """Whether ``METRICS_ACCESS`` lets this caller read /metrics."""
    if access == "open":
        return True
    if principal.role in ("admin", access):
        return True
    return access == "loopback" and is_loopback(scope)
