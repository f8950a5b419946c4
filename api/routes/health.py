"""Liveness, readiness, projection lag and the Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from api import metrics
from api.deps import ContainerDep
from api.errors import error_response
from api.routes.docs_helpers import errors
from api.schemas import FeedLag, Health, Ready
from api.security import current_principal
from domain.errors import ForbiddenError, UnauthorizedError

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=Health,
    summary="Health",
    description=(
        "200 while the stores answer, with the event store's last notification id and the "
        "read tables' position. Every write folds into the read tables in its own "
        "transaction, so they are equal except while an admin rebuild catches up. On "
        "DynamoDB, `feed` says how far the ordered feed (positions assigned by the stream "
        "indexer after each write) is behind."
    ),
    responses=errors(),
)
def health(container: ContainerDep) -> Health:
    head = container.service.recorder.max_notification_id() or 0
    log_position = container.read_model.log_position()
    feed = None
    metering = container.kit.metering
    if container.indexer is not None and container.settings.dynamodb_indexer:
        feed = FeedLag.model_validate(container.indexer.lag(), from_attributes=True)
    return Health(
        status="ok",
        store=container.settings.store,
        projection_position=head if log_position is None else log_position,
        event_store_position=head,
        feed=feed,
        consumed_capacity=None if metering is None else metering.process.totals(),
    )


@router.get(
    "/ready",
    response_model=Ready,
    summary="Readiness",
    description=(
        "200 only while the store answers, the read tables hold the whole log and (DynamoDB, "
        "where this process runs the stream indexer) the feed's oldest unindexed write is "
        "younger than `READY_MAX_FEED_LAG_SECONDS`. Otherwise 503 SERVICE_UNAVAILABLE, each "
        "failing check (`store`, `readTables`, `feed`) named in `details[].field`. "
        "`GET /health` stays the liveness probe."
    ),
    responses=errors(),
)
def ready(request: Request, container: ContainerDep) -> Any:
    failing = container.readiness()
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
