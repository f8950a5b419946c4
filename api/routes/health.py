"""Liveness, readiness, projection lag and the Prometheus metrics."""

from __future__ import annotations

import logging
import threading
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from api import metrics
from api.deps import ContainerDep
from api.errors import error_response
from api.probes import PROBE_BUDGET_SECONDS, BoundedProbe
from api.routes.docs_helpers import errors
from api.schemas import FeedLag, Health, Ready
from api.security import current_principal
from domain.errors import ForbiddenError, StoreDidNotAnswerError, UnauthorizedError
from infra.wiring import Container

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=Health,
    summary="Health",
    description=(
        "The liveness probe: 200 while the process answers, within about "
        f"{PROBE_BUDGET_SECONDS:g} s. With the event store's last notification id and the "
        "read tables' position (equal except while an admin rebuild catches up); when the "
        "store does not answer in time, `status` is `degraded` and the positions are null "
        "(`GET /ready` then answers 503). On DynamoDB, `feed` says how far the ordered feed "
        "(positions assigned by the stream indexer after each write) is behind."
    ),
    responses=errors(),
)
def health(request: Request, container: ContainerDep) -> Health:
    feed = None
    metering = container.kit.metering
    if container.indexer is not None and container.settings.dynamodb_indexer:
        feed = FeedLag.model_validate(container.indexer.lag(), from_attributes=True)
    try:
        head, log_position, problem = _probes(request, container).positions()
    except StoreDidNotAnswerError as error:
        logger.warning("health: %s", error)
        head, log_position, problem = None, None, str(error)
    return Health(
        status="ok" if problem is None else "degraded",
        store=container.settings.store,
        projection_position=head if log_position is None else log_position,
        event_store_position=head,
        feed=feed,
        consumed_capacity=None if metering is None else metering.process.totals(),
        problem=problem,
    )


class _Probes:
    """The store reads of one app's probes, each bounded (``api.probes``)."""

    def __init__(self, container: Container) -> None:
        self.positions = BoundedProbe(container.positions)
        self.readiness = BoundedProbe(container.readiness)


_PROBES_LOCK = threading.Lock()


def _probes(request: Request, container: Container) -> _Probes:
    with _PROBES_LOCK:
        probes = getattr(request.app.state, "probes", None)
        if probes is None:
            probes = request.app.state.probes = _Probes(container)
        return probes


@router.get(
    "/ready",
    response_model=Ready,
    summary="Readiness",
    description=(
        "200 only while the store answers, the read tables hold the whole log and (DynamoDB, "
        "where this process runs the stream indexer) the feed's oldest unindexed write is "
        "younger than `READY_MAX_FEED_LAG_SECONDS`. Otherwise 503 SERVICE_UNAVAILABLE, each "
        "failing check (`store`, `readTables`, `feed`) named in `details[].field`. "
        f"`GET /health` stays the liveness probe. Answers within about {PROBE_BUDGET_SECONDS:g} s: "
        "a store that does not answer by then fails `store`."
    ),
    responses=errors(),
)
def ready(request: Request, container: ContainerDep) -> Any:
    try:
        failing = _probes(request, container).readiness()
    except StoreDidNotAnswerError as error:
        failing = [("store", str(error))]
    if failing:
        return error_response(
            request,
            503,
            "SERVICE_UNAVAILABLE",
            "Not ready: " + ", ".join(name for name, _ in failing),
            [{"field": name, "message": why} for name, why in failing],
            headers={"Retry-After": "1"},
        )
    feed = container.indexer is not None and container.settings.dynamodb_indexer
    return Ready(status="ready", checks=["store", "readTables", *(["feed"] if feed else [])])


METRICS_FORMAT = {"text/plain": {"schema": {"type": "string"}}}


@router.get(
    "/metrics",
    summary="Metrics",
    response_class=Response,
    description=(
        "The Prometheus text format: HTTP requests by route template, method and status "
        "with latency histograms; commands by outcome; promotions; batch sizes and commit "
        "times; idempotent replays; the read tables' position and lag; on DynamoDB the "
        "feed's lag. Who may read it: `METRICS_ACCESS` (by default clients on loopback "
        "and admin keys)."
    ),
    responses={200: {"content": METRICS_FORMAT}, **errors("FORBIDDEN")},
)
async def prometheus_metrics(request: Request, container: ContainerDep) -> Response:
    access = container.settings.metrics_access
    principal = current_principal(request)
    if not metrics.may_read(access, principal, request.scope):
        if principal.role is None and access != "loopback":
            raise UnauthorizedError("/metrics needs an API key: send 'Authorization: Bearer <key>'")
        raise ForbiddenError(f"/metrics may not be read by this caller (METRICS_ACCESS={access})")
    body, content_type = await run_in_threadpool(metrics.render, container)
    return Response(body, media_type=content_type)
