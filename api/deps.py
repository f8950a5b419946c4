"""Request dependencies, as ``Annotated`` types the routes declare."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Path, Query, Request

from api.schemas import ID_PATTERN
from infra.service import StoredRegistrationService
from infra.settings import Settings
from infra.wiring import Container
from projections.ports import ReadModel

logger = logging.getLogger(__name__)


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def get_service(container: ContainerDep) -> StoredRegistrationService:
    return container.service


def get_read_model(container: ContainerDep) -> ReadModel:
    return container.read_model


def get_settings(container: ContainerDep) -> Settings:
    return container.settings


ServiceDep = Annotated[StoredRegistrationService, Depends(get_service)]
ReadModelDep = Annotated[ReadModel, Depends(get_read_model)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


class ReadYourWrites:
    """Waits (bounded) until the read tables hold a write, so a later GET sees it."""

    def __init__(self, container: ContainerDep) -> None:
        self.container = container

    def __call__(self, position: int) -> None:
        timeout = self.container.settings.read_your_writes_timeout
        if position and not self.container.projector.wait_for(position, timeout):
            logger.warning(
                "read tables lag behind a write",
                extra={"position": position, "timeoutSeconds": timeout},
            )


ReadYourWritesDep = Annotated[ReadYourWrites, Depends()]

UserIdPath = Annotated[str, Path(alias="userId", pattern=ID_PATTERN, description="The user's id.")]
EventIdPath = Annotated[
    str, Path(alias="eventId", pattern=ID_PATTERN, description="The event's id.")
]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size (1-500).")]
NextToken = Annotated[
    str | None,
    Query(alias="nextToken", max_length=2048, description="Token from the previous page."),
]
