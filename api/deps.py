"""Request dependencies, as ``Annotated`` types the routes declare."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from api.schemas import ID_PATTERN
from infra.service import StoredRegistrationService
from infra.wiring import Container
from projections.ports import ReadModel


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def get_service(container: ContainerDep) -> StoredRegistrationService:
    return container.service


def get_read_model(container: ContainerDep) -> ReadModel:
    return container.read_model


ServiceDep = Annotated[StoredRegistrationService, Depends(get_service)]
ReadModelDep = Annotated[ReadModel, Depends(get_read_model)]


UserIdPath = Annotated[str, Path(alias="userId", pattern=ID_PATTERN, description="The user's id.")]
EventIdPath = Annotated[
    str, Path(alias="eventId", pattern=ID_PATTERN, description="The event's id.")
]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size (1-500).")]
NextToken = Annotated[
    str | None,
    Query(alias="nextToken", max_length=2048, description="Token from the previous page."),
]
