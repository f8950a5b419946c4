"""A user's registrations, and the code path both shapes of registering and leaving share
(user-centric here, event-centric in api/routes/events.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

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
from api.routes import presenters
from api.routes.docs_helpers import IDEMPOTENCY, errors
from api.schemas import Registration, RegistrationCreate, RegistrationList
from domain.errors import GatheringNotFoundError, RegistrationNotFoundError, UserNotFoundError

router = APIRouter(prefix="/users/{userId}/registrations", tags=["registrations"])


REGISTER_DESCRIPTION = (
    "Confirms a seat while one is free and nobody waits; otherwise puts the user at the "
    "tail of the waitlist (status `waitlist`, with its 1-based waitlistPosition) when the "
    "event has one. Checked in this order: 400 VALIDATION_ERROR; 404 USER_NOT_FOUND; 404 "
    "EVENT_NOT_FOUND; 409 EVENT_NOT_OPEN (status not active or published); 409 "
    "ALREADY_REGISTERED or ALREADY_ON_WAITLIST; 409 EVENT_FULL (full, no waitlist). A user "
    "who left may register again, as a newcomer. `Location` names the registration, "
    "`/users/{userId}/registrations/{eventId}`."
)
REGISTER_ERRORS = (
    *IDEMPOTENCY,
    "VALIDATION_ERROR",
    "USER_NOT_FOUND",
    "EVENT_NOT_FOUND",
    "EVENT_NOT_OPEN",
    "ALREADY_REGISTERED",
    "ALREADY_ON_WAITLIST",
    "EVENT_FULL",
    "CONCURRENT_MODIFICATION",
    "PAYLOAD_TOO_LARGE",
)
LEAVE_DESCRIPTION = (
    "Withdraws the registration. A confirmed user leaving hands the seat to the head of "
    "the waitlist in the same atomic step; a waitlisted user leaving keeps the others' "
    "order. Checked in this order: 400 VALIDATION_ERROR; 404 USER_NOT_FOUND; 404 "
    "EVENT_NOT_FOUND; 404 REGISTRATION_NOT_FOUND."
)
LEAVE_ERRORS = (
    *IDEMPOTENCY,
    "VALIDATION_ERROR",
    "USER_NOT_FOUND",
    "EVENT_NOT_FOUND",
    "REGISTRATION_NOT_FOUND",
    "CONCURRENT_MODIFICATION",
)


def registering(summary: str, example_path: str) -> dict[str, Any]:
    """The route arguments of registering, in either shape (user- or event-centric):
    both answer alike, so both document the same statuses, codes and examples."""
    return {
        "status_code": status.HTTP_201_CREATED,
        "response_model": Registration,
        "summary": summary,
        "description": REGISTER_DESCRIPTION,
        "openapi_extra": IDEMPOTENT,
        "responses": errors(*REGISTER_ERRORS, path=example_path),
    }


def leaving(summary: str, example_path: str) -> dict[str, Any]:
    """The route arguments of leaving, in either shape."""
    return {
        "status_code": status.HTTP_204_NO_CONTENT,
        "summary": summary,
        "description": LEAVE_DESCRIPTION,
        "openapi_extra": IDEMPOTENT,
        "responses": errors(*LEAVE_ERRORS, path=example_path),
    }


async def register_user(
    user_id: str, event_id: str, service: ServiceDep, response: Response
) -> Registration:
    """Registers the user for the event: the one code path of both POST shapes."""
    outcome = await perform(service, service.register_command(user_id, event_id))
    response.headers["Location"] = f"/users/{user_id}/registrations/{event_id}"
    return presenters.registration(outcome)


async def withdraw_user(user_id: str, event_id: str, service: ServiceDep) -> Response:
    """Withdraws the user's registration: the one code path of both DELETE shapes."""
    await perform(service, service.leave_command(user_id, event_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("", **registering("Register a user for an event", "/users/alice/registrations"))
async def register(
    user_id: UserIdPath,
    body: RegistrationCreate,
    service: ServiceDep,
    response: Response,
) -> Registration:
    return await register_user(user_id, body.event_id, service, response)


@router.get(
    "",
    response_model=RegistrationList,
    summary="List a user's registrations",
    description=(
        "The user's confirmed and waitlisted registrations (left ones are not listed), in "
        "eventId order, each with status, eventTitle and eventDate; `[]` when none."
    ),
    responses=errors("VALIDATION_ERROR", "USER_NOT_FOUND"),
)
@reads
def list_registrations(
    user_id: UserIdPath,
    read_model: ReadModelDep,
    limit: Limit = 50,
    next_token: NextToken = None,
) -> RegistrationList:
    page = read_model.list_user_registrations(user_id, limit, next_token)
    # A user who holds registrations exists (users are never deleted): only an
    # empty list needs the user read to tell "none" from "no such user".
    if page.total == 0 and read_model.get_user(user_id) is None:
        raise UserNotFoundError(f"User '{user_id}' not found")
    return RegistrationList(
        registrations=[presenters.registration(r) for r in page.items],
        total=page.total,
        next_token=page.next_token,
    )


@router.get(
    "/{eventId}",
    response_model=Registration,
    summary="Get one registration",
    description=(
        "The user's registration for the event. Checked in this order, as leaving is: 400 "
        "VALIDATION_ERROR; 404 USER_NOT_FOUND; 404 EVENT_NOT_FOUND; 404 REGISTRATION_NOT_FOUND."
    ),
    responses=errors(
        "VALIDATION_ERROR", "USER_NOT_FOUND", "EVENT_NOT_FOUND", "REGISTRATION_NOT_FOUND"
    ),
)
@reads
def get_registration(
    user_id: UserIdPath, event_id: EventIdPath, read_model: ReadModelDep
) -> Registration:
    if read_model.get_user(user_id) is None:
        raise UserNotFoundError(f"User '{user_id}' not found")
    row = read_model.get_registration(user_id, event_id)
    if row is None:
        # Only a miss reads the event, to name what is missing as DELETE does.
        if not read_model.event_exists(event_id):
            raise GatheringNotFoundError(f"Event '{event_id}' not found")
        raise RegistrationNotFoundError(
            f"User '{user_id}' is not registered for event '{event_id}'"
        )
    return presenters.registration(row)


@router.delete("/{eventId}", **leaving("Leave an event", "/users/alice/registrations/pycon-2024"))
async def leave(user_id: UserIdPath, event_id: EventIdPath, service: ServiceDep) -> Response:
    return await withdraw_user(user_id, event_id, service)
