"""Liveness and projection lag."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ContainerDep
from api.routes.docs_helpers import errors
from api.schemas import Health
from infra.dynamodb.capacity import PROCESS_TOTALS

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=Health,
    summary="Health",
    description=(
        "200 while the stores answer, with the event store's last notification id and the "
        "read tables' tracking position (their difference is the projection lag)."
    ),
    responses=errors(),
)
def health(container: ContainerDep) -> Health:
    return Health(
        status="ok",
        store=container.settings.store,
        projection_position=container.read_model.position(),
        event_store_position=container.service.recorder.max_notification_id() or 0,
        consumed_capacity=(
            PROCESS_TOTALS.totals() if container.settings.store == "dynamodb" else None
        ),
    )
