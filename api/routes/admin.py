"""What admins use (role admin): the projections' state, rebuilds, drift checks and erasure."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool

from api.deps import IDEMPOTENT, ContainerDep, UserIdPath, perform
from api.routes.docs_helpers import IDEMPOTENCY, errors
from api.schemas import ID_PATTERN, DriftCheck, Erasure, Projection, Projections
from api.security import Admin
from infra.logs import current_request_id
from projections.status import READ_TABLES

router = APIRouter(prefix="/admin", tags=["admin"])

ProjectionName = Annotated[
    str,
    Path(
        pattern=ID_PATTERN,
        description="A projection's name (today only `read-tables`).",
        examples=["read-tables"],
    ),
]


@router.get(
    "/projections",
    response_model=Projections,
    response_model_exclude_none=True,
    summary="The projections and their lag",
    description=(
        "Each projection of the log, with the last position folded into it, the log's head, "
        "the lag in events and in seconds (the age of the oldest event not folded yet, 0 "
        "when none), and its state: `live` (every write folds into it in its own "
        "transaction), `rebuilding` (a rebuild is filling its replacement from the log; "
        "`progress` 0-1, while the live tables keep serving), `interrupted` (the process "
        "running a rebuild died and its lease lapsed: `resume` says how to resume it) or "
        "`failed` (a rebuild stopped on `error`; the live tables keep serving). Needs an API "
        "key with role `admin`."
    ),
    responses=errors("FORBIDDEN"),
)
def projections(container: ContainerDep, _caller: Admin) -> Projections:
    status = container.projection(READ_TABLES)
    return Projections(projections=[Projection.model_validate(status, from_attributes=True)])


@router.post(
    "/projections/{name}/rebuild",
    status_code=202,
    openapi_extra=IDEMPOTENT,
    response_model=Projection,
    response_model_exclude_none=True,
    summary="Rebuild a projection from the log, without downtime",
    description=(
        "Starts rebuilding the projection in the background and answers at once, with its "
        "state already `rebuilding` (follow `progress` in `GET /admin/projections`). The "
        "rebuild folds the whole log into new tables while the API keeps serving, and "
        "accepting writes on, the current ones; it catches up with what arrives meanwhile, "
        "then puts the new tables in their place in one transaction. A rebuild interrupted "
        "(process killed, error) resumes where it stopped when asked again or when the "
        "server restarts. One at a time per projection: 409 `REBUILD_IN_PROGRESS` while one "
        "runs. Needs an API key with role `admin`."
    ),
    responses=errors(
        "VALIDATION_ERROR",
        "FORBIDDEN",
        "PROJECTION_NOT_FOUND",
        "REBUILD_IN_PROGRESS",
        *IDEMPOTENCY,
    ),
)
def rebuild(name: ProjectionName, container: ContainerDep, _caller: Admin) -> Projection:
    container.known_projection(name)
    container.rebuilder.begin()
    claimed = container.projection(name)  # rebuilding, before any batch runs
    container.rebuilder.run_in_background()
    return Projection.model_validate(claimed, from_attributes=True)


@router.get(
    "/projections/{name}/check",
    response_model=DriftCheck,
    summary="Compare a projection with a fresh fold of the log",
    description=(
        "Folds the whole log afresh and compares every row of the live tables with it. "
        "Exact while writes continue: a row passes when it holds a value the fold gives it "
        "at some log position between the start and the end of the read of the live tables; "
        "anything else is a difference. Reads the whole log and every row: an admin's tool, "
        "not a health check. Needs an API key with role `admin`."
    ),
    responses=errors("VALIDATION_ERROR", "FORBIDDEN", "PROJECTION_NOT_FOUND"),
)
def check(name: ProjectionName, container: ContainerDep, _caller: Admin) -> DriftCheck:
    report = container.check(name)
    return DriftCheck.model_validate(report.report())


@router.post(
    "/users/{userId}/erase",
    openapi_extra=IDEMPOTENT,
    response_model=Erasure,
    summary="Erase a user's personal data (crypto-shredding)",
    description=(
        "Destroys the user's data key, so that their name, stored sealed under it in the "
        "events, snapshots and read tables, can never be read again, and records a "
        "`UserErased` event (who asked, when, the request id; no personal data). Kept "
        "idempotent answers showing the name are deleted. Afterwards every read shows the "
        "user with `name` null and `erased` true; their registrations and the seat counts "
        "stay as they were; the userId stays taken (409 DUPLICATE_USER); `/audit/verify` "
        "still passes (no stored byte of history changed). Erasing again answers the same "
        "(idempotent). An unknown user: 404 USER_NOT_FOUND. A user created before names were "
        "sealed: 409 PERSONAL_DATA_NOT_SEALED until `regsvc seal-names` has sealed the "
        "history (see the README). Needs an API key with role `admin`."
    ),
    responses=errors(
        "VALIDATION_ERROR", "FORBIDDEN", "USER_NOT_FOUND", "PERSONAL_DATA_NOT_SEALED", *IDEMPOTENCY
    ),
)
async def erase_user(user_id: UserIdPath, container: ContainerDep, caller: Admin) -> Erasure:
    service = container.service
    command = service.erase_user_command(user_id, caller.name, current_request_id())
    outcome = await perform(service, command)
    await run_in_threadpool(container.forget_user, user_id)
    return Erasure(user_id=outcome.user_id, erased=True, erased_at=outcome.erased_at)
