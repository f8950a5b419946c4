"""Liveness and projection lag."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ContainerDep
from api.routes.docs_helpers import errors
from api.schemas import FeedLag, Health

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
