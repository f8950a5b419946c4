"""What auditors read (role auditor or admin): histories, the ordered feed, its verification."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import ContainerDep, EventIdPath, Limit, NextToken, UserIdPath
from api.middleware import REQUEST_ID_PATTERN
from api.routes import presenters
from api.routes.docs_helpers import errors
from api.schemas import ID_PATTERN, AuditLogPage, Event, History, UserState, VerifyReport
from api.security import Auditor
from projections.audit import FEED_SCAN_BOUND, FeedFilter
from projections.personal import shown_user
from projections.time_travel import Moment

router = APIRouter(prefix="/audit", tags=["audit"])

# Positions are counted from 1 and never come near it; a larger `after` is refused
# (400), not carried into a store's 64-bit integers (where `after + 1` overflowed: 500).
MAX_POSITION = 2**53

ROLES = " Needs an API key with role `auditor` or `admin` (`Authorization: Bearer <key>`)."


@router.get(
    "/log",
    response_model=AuditLogPage,
    # `undecodable` and `raw` only on the entries that have them.
    response_model_exclude_unset=True,
    summary="The ordered feed",
    description=(
        "Every domain event of the service in log order, from position `after` + 1. "
        "Positions start at 1, never change and are never reused; `next` is the `after` of "
        "the following page, null once a page reaches the head. On DynamoDB positions are "
        "assigned by the stream indexer shortly after each write.\n\n"
        "**Filters** (`requestId`, `eventId`, `userId`; several: an entry must match each): "
        "only the matching entries, in log order. A filtered page examines at most "
        f"{FEED_SCAN_BOUND} entries of the log: when it reaches that bound before `limit` "
        "entries matched, it returns those found (possibly none) with `next` set to the last "
        "position examined, so a client reads on until `next` is null. A malformed filter: "
        "400 VALIDATION_ERROR." + ROLES
    ),
    responses=errors("VALIDATION_ERROR", "FORBIDDEN"),
)
def audit_log(
    container: ContainerDep,
    _caller: Auditor,
    after: Annotated[
        int,
        Query(ge=0, le=MAX_POSITION, description="Last position already read (0: start)."),
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size (1-1000).")] = 100,
    request_id: Annotated[
        str | None,
        Query(
            alias="requestId",
            pattern=REQUEST_ID_PATTERN,
            description=(
                "Only the entries recorded by this request (`metadata.requestId`, the "
                "request's `X-Request-ID`): 1-128 letters, digits, '.', '_', ':' and '-'."
            ),
        ),
    ] = None,
    event_id: Annotated[
        str | None,
        Query(
            alias="eventId",
            pattern=ID_PATTERN,
            description=(
                "Only the entries about this event: its own stream's, and those whose "
                "`data.eventId` names it (every registration entry's)."
            ),
        ),
    ] = None,
    user_id: Annotated[
        str | None,
        Query(
            alias="userId",
            pattern=ID_PATTERN,
            description="Only the entries whose `data.userId` names this user.",
        ),
    ] = None,
) -> dict[str, Any]:
    only = FeedFilter(request_id=request_id, event_id=event_id, user_id=user_id)
    entries, following = container.audit.page(after, limit, only)
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


HISTORY = (
    " Oldest first, paged with `limit` and `nextToken` like the other lists. Each entry is a "
    "stored domain event: `type` is its stable name, `data` its payload as recorded (in "
    "camelCase), `metadata` who caused it (`requestId`, `actor`) and its chain `hash`."
)


@router.get(
    "/events/{eventId}/history",
    response_model=History,
    response_model_exclude_unset=True,
    summary="An event's history",
    description=(
        "Every domain event about the event: its creation and changes, each seat taken or "
        "released, each waitlist place, each promotion (each names its `userId`). Read from "
        "the log; a deleted event's history stays readable. An id never created: 404 "
        "EVENT_NOT_FOUND." + HISTORY + ROLES
    ),
    responses=errors("VALIDATION_ERROR", "EVENT_NOT_FOUND", "FORBIDDEN"),
)
def event_history(
    event_id: EventIdPath,
    container: ContainerDep,
    _caller: Auditor,
    limit: Limit = 50,
    next_token: NextToken = None,
) -> dict[str, Any]:
    entries, following = container.history.of_event(event_id, limit, next_token)
    return {"history": entries, "nextToken": following}


@router.get(
    "/users/{userId}/history",
    response_model=History,
    response_model_exclude_unset=True,
    summary="A user's history",
    description=(
        "Every domain event about the user: their account and each of their registrations "
        "(created, confirmed, waitlisted, promoted, withdrawn), in log order. Read from the "
        "log. An id never created: 404 USER_NOT_FOUND." + HISTORY + ROLES
    ),
    responses=errors("VALIDATION_ERROR", "USER_NOT_FOUND", "FORBIDDEN"),
)
def user_history(
    user_id: UserIdPath,
    container: ContainerDep,
    _caller: Auditor,
    limit: Limit = 50,
    next_token: NextToken = None,
) -> dict[str, Any]:
    entries, following = container.history.of_user(user_id, limit, next_token)
    return {"history": entries, "nextToken": following}


AS_OF = Annotated[
    datetime | None,
    Query(
        alias="asOf",
        description=(
            "ISO 8601 time (UTC when no offset is given): the state after every event that "
            "occurred at or before it. In the future: the current state."
        ),
        examples=["2024-12-01T10:00:00.123456Z"],
    ),
]
TIME_TRAVEL = (
    " Rebuilt by replaying the log up to that point through the same fold that writes the "
    "read tables, never read from them. `asOf` and `version` together: 400 VALIDATION_ERROR."
)


@router.get(
    "/events/{eventId}/state",
    response_model=Event,
    summary="An event as it was",
    description=(
        "The event, in the shape of `GET /events/{eventId}` (with its waitlist in order), as "
        "it was at `asOf` or after `version` of its own stream (its first event is version "
        "1; past the latest: the current state); neither: as it is now. Before its creation "
        "or after its deletion: 404 EVENT_NOT_FOUND." + TIME_TRAVEL + ROLES
    ),
    responses=errors(
        "VALIDATION_ERROR", "EVENT_NOT_FOUND", "STORED_EVENT_UNDECODABLE", "FORBIDDEN"
    ),
)
def event_state(
    event_id: EventIdPath,
    container: ContainerDep,
    _caller: Auditor,
    as_of: AS_OF = None,
    version: Annotated[
        int | None, Query(ge=1, le=2**53, description="A version of the event's stream.")
    ] = None,
) -> Event:
    row = container.time_travel.event(event_id, Moment(as_of=as_of, version=version))
    return presenters.event(row)


@router.get(
    "/users/{userId}/state",
    response_model=UserState,
    # As in GET /users/{userId}/registrations: waitlistPosition only when waiting.
    response_model_exclude_none=True,
    summary="A user as they were",
    description=(
        "The user and their registrations (confirmed or waiting, with each event's title and "
        "date as they were then) at `asOf`; without it, now. Before the user's creation: 404 "
        "USER_NOT_FOUND." + TIME_TRAVEL + ROLES
    ),
    responses=errors("VALIDATION_ERROR", "USER_NOT_FOUND", "STORED_EVENT_UNDECODABLE", "FORBIDDEN"),
)
def user_state(
    user_id: UserIdPath, container: ContainerDep, _caller: Auditor, as_of: AS_OF = None
) -> UserState:
    user, registrations = container.time_travel.user(user_id, Moment(as_of=as_of))
    return UserState(
        # An erased user's name is erased at every moment: the key is gone.
        user=presenters.user(shown_user(user, container.personal_data)),
        registrations=[presenters.registration(r) for r in registrations],
    )
