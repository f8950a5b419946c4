"""Events (gatherings, in the domain's words), their registration lists, and the
event-centric shape of registering and leaving."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from api.deps import (
    IDEMPOTENT,
    EventIdPath,
    Limit,
    NextToken,
    ReadModelDep,
    ServiceDep,
    UserIdPath,
    perform,
    reads,
)
from api.idempotency import generated_id
from api.routes import presenters
from api.routes.docs_helpers import IDEMPOTENCY, errors
from api.routes.registrations import leaving, register_user, registering, withdraw_user
from api.schemas import (
    Event,
    EventCreate,
    EventList,
    EventRegistrationCreate,
    EventUpdate,
    Registration,
    RegistrationList,
    Status,
)
from domain.application import GatheringChanges, GatheringSpec, GatheringState
from domain.errors import GatheringNotFoundError, InvalidCommandError
from domain.model import GatheringStatus
from projections.ports import ReadModel

router = APIRouter(prefix="/events", tags=["events"])


def _current(state: GatheringState, read_model: ReadModel, service: ServiceDep) -> Event:
    row = read_model.get_event(state.gathering_id)
    if row is not None and row.updated_at >= state.updated_at:
        return presenters.event(row)
    # The read tables are written with the events, so they hold this write;
    # only while an admin rebuild catches them up may they lag: then answer
    # from the command's own state and the event store's view of the waitlist.
    waitlist = service.waitlist_head(state.gathering_id, state.waitlist_count)
    return presenters.event_from_state(state, waitlist)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Event,
    summary="Create an event",
    description=(
        "Creates an event with a capacity (an integer of at least 1) and an optional FIFO "
        "waitlist. eventId follows the userId pattern and is a UUID when absent (with an "
        "Idempotency-Key, derived from the caller and the key, so a retry draws the same "
        "one); ids of deleted events are never reused (409 DUPLICATE_EVENT). `date` is an "
        "ISO 8601 date or date-time string; `status` defaults to `active`. registeredCount "
        "starts at 0."
    ),
    openapi_extra=IDEMPOTENT,
    responses=errors(*IDEMPOTENCY, "VALIDATION_ERROR", "DUPLICATE_EVENT", "PAYLOAD_TOO_LARGE"),
)
async def create_event(
    body: EventCreate,
    service: ServiceDep,
    read_model: ReadModelDep,
    request: Request,
    response: Response,
) -> Event:
    spec = GatheringSpec(
        **body.model_dump(exclude={"event_id", "status"}),
        gathering_id=body.event_id or generated_id(request.state),
        status=GatheringStatus(body.status),
    )
    state = await perform(service, service.create_gathering_command(spec))
    response.headers["Location"] = f"/events/{state.gathering_id}"
    return await run_in_threadpool(_current, state, read_model, service)


@router.get(
    "",
    response_model=EventList,
    summary="List events",
    description=(
        "Lists events in eventId order, optionally only those with the given status. "
        "Pages hold `limit` events (default 50, at most 500); `nextToken` is set while more "
        "remain; `total` counts all pages."
    ),
    responses=errors("VALIDATION_ERROR"),
)
@reads
def list_events(
    read_model: ReadModelDep,
    status_filter: Annotated[Status | None, Query(alias="status")] = None,
    limit: Limit = 50,
    next_token: NextToken = None,
) -> EventList:
    page = read_model.list_events(status_filter, limit, next_token)
    return EventList(
        events=[presenters.event(r) for r in page.items],
        total=page.total,
        next_token=page.next_token,
    )


@router.get(
    "/{eventId}",
    response_model=Event,
    summary="Get an event",
    description="Returns the event with its counts and its waitlist (FIFO), or 404.",
    responses=errors("VALIDATION_ERROR", "EVENT_NOT_FOUND"),
)
@reads
def get_event(event_id: EventIdPath, read_model: ReadModelDep) -> Event:
    row = read_model.get_event(event_id)
    if row is None:
        raise GatheringNotFoundError(f"Event '{event_id}' not found")
    return presenters.event(row)


@router.put(
    "/{eventId}",
    response_model=Event,
    summary="Update an event",
    description=(
        "Changes only the fields sent (an empty body is refused). Raising capacity promotes "
        "waitlisted users into the new spots in FIFO order, atomically with the change. "
        "Lowering capacity below registeredCount is refused with 409 "
        "CAPACITY_BELOW_REGISTERED. Any number of promotions succeeds; when the response "
        "arrives every read shows all of them (on DynamoDB, a concurrent reader may see them "
        "arrive in FIFO steps of up to 12 while the update runs). "
        "registeredCount, waitlist, waitlistCount and "
        "availableSpots are not client-writable (400). Title and date changes show in every "
        "registration list."
    ),
    openapi_extra=IDEMPOTENT,
    responses=errors(
        *IDEMPOTENCY,
        "VALIDATION_ERROR",
        "EVENT_NOT_FOUND",
        "CAPACITY_BELOW_REGISTERED",
        "CONCURRENT_MODIFICATION",
        "PAYLOAD_TOO_LARGE",
    ),
)
async def update_event(
    event_id: EventIdPath,
    body: EventUpdate,
    service: ServiceDep,
    read_model: ReadModelDep,
) -> Event:
    if not body.model_fields_set:
        raise InvalidCommandError("The update names no field to change", field="body")
    nulls = sorted(name for name in body.model_fields_set if getattr(body, name) is None)
    if nulls:
        field = EventUpdate.model_fields[nulls[0]].alias or nulls[0]
        raise InvalidCommandError("must not be null", field=field)
    command = service.revise_gathering_command(
        event_id, GatheringChanges(**body.model_dump(exclude_unset=True))
    )
    state = await perform(service, command)
    return await run_in_threadpool(_current, state, read_model, service)


@router.delete(
    "/{eventId}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an event",
    description=(
        "Deletes an event nobody is registered or waitlisted for; otherwise 409 "
        "EVENT_HAS_REGISTRATIONS. Its history stays in the event store."
    ),
    openapi_extra=IDEMPOTENT,
    responses=errors(
        *IDEMPOTENCY,
        "VALIDATION_ERROR",
        "EVENT_NOT_FOUND",
        "EVENT_HAS_REGISTRATIONS",
        "CONCURRENT_MODIFICATION",
    ),
)
async def delete_event(event_id: EventIdPath, service: ServiceDep) -> Response:
    await perform(service, service.delete_gathering_command(event_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{eventId}/registrations",
    response_model=RegistrationList,
    summary="List an event's registrations",
    description=(
        "Confirmed registrations in the order their seats were taken, then the waitlist in "
        "FIFO order (with waitlistPosition). `total` counts all pages."
    ),
    responses=errors("VALIDATION_ERROR", "EVENT_NOT_FOUND"),
)
@reads
def list_event_registrations(
    event_id: EventIdPath,
    read_model: ReadModelDep,
    limit: Limit = 50,
    next_token: NextToken = None,
) -> RegistrationList:
    if not read_model.event_exists(event_id):
        raise GatheringNotFoundError(f"Event '{event_id}' not found")
    page = read_model.list_event_registrations(event_id, limit, next_token)
    return RegistrationList(
        registrations=[presenters.registration(r) for r in page.items],
        total=page.total,
        next_token=page.next_token,
    )


# The original API's event-centric shape of registering and leaving: the same
# command, answer and documentation as POST /users/{userId}/registrations and
# DELETE /users/{userId}/registrations/{eventId} (api/routes/registrations.py).


@router.post(
    "/{eventId}/registrations",
    tags=["registrations"],
    **registering(
        "Register a user for an event (event-centric)", "/events/pycon-2024/registrations"
    ),
)
async def register_attendee(
    event_id: EventIdPath,
    body: EventRegistrationCreate,
    service: ServiceDep,
    response: Response,
) -> Registration:
    return await register_user(body.user_id, event_id, service, response)


@router.delete(
    "/{eventId}/registrations/{userId}",
    tags=["registrations"],
    **leaving("Leave an event (event-centric)", "/events/pycon-2024/registrations/alice"),
)
async def withdraw_attendee(
    event_id: EventIdPath, user_id: UserIdPath, service: ServiceDep
) -> Response:
    return await withdraw_user(user_id, event_id, service)
