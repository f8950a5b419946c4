"""What admins use (role admin): the projections' state."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ContainerDep
from api.routes.docs_helpers import errors
from api.schemas import Projection, Projections
from api.security import Admin
from projections.status import read_tables_status

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get(
    "/projections",
    response_model=Projections,
    response_model_exclude_none=True,
    summary="The projections and their lag",
    description=(
        "Each projection of the log, with the last position folded into it, the log's head, "
        "the lag in events and in seconds (the age of the oldest event not folded yet, 0 "
        "when none), and its state: `live` (every write folds into it in its own "
        "transaction), `rebuilding` (a rebuild is catching it up from the log; `progress` "
        "0-1) or `failed` (with `error`). Needs an API key with role `admin`."
    ),
    responses=errors("FORBIDDEN"),
)
def projections(container: ContainerDep, _caller: Admin) -> Projections:
    status = read_tables_status(
        container.service.recorder, container.read_model, container.service.mapper.to_domain_event
    )
    return Projections(projections=[Projection.model_validate(status, from_attributes=True)])
