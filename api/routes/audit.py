"""What auditors read (role auditor or admin): the ordered feed and its verification."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import ContainerDep
from api.routes.docs_helpers import errors
from api.schemas import AuditLogPage, VerifyReport
from api.security import Auditor

router = APIRouter(prefix="/audit", tags=["audit"])

ROLES = " Needs an API key with role `auditor` or `admin` (`Authorization: Bearer <key>`)."


@router.get(
    "/log",
    response_model=AuditLogPage,
    summary="The ordered feed",
    description=(
        "Every domain event of the service in log order, from position `after` + 1. "
        "Positions start at 1, never change and are never reused; `next` is the `after` of "
        "the following page, null once a page reaches the head. On DynamoDB positions are "
        "assigned by the stream indexer shortly after each write." + ROLES
    ),
    responses=errors("VALIDATION_ERROR", "FORBIDDEN"),
)
def audit_log(
    container: ContainerDep,
    _caller: Auditor,
    after: Annotated[int, Query(ge=0, description="Last position already read (0: start).")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size (1-1000).")] = 100,
) -> dict[str, Any]:
    entries, following = container.audit.page(after, limit)
    return {"entries": entries, "next": following}


@router.get(
    "/verify",
    response_model=VerifyReport,
    summary="Verify the hash chains",
    description=(
        "Recomputes every stream's hash chain over the whole log and names the first broken "
        "link: an event altered, removed or reordered since it was stored. On DynamoDB it "
        "also checks that the feed's copy of each event equals the event its stream holds. "
        "Reads the whole log: minutes for millions of events." + ROLES
    ),
    responses=errors("FORBIDDEN"),
)
def audit_verify(container: ContainerDep, _caller: Auditor) -> dict[str, Any]:
    return container.audit.verify().report()
