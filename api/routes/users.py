"""Users."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from api.deps import (
    IDEMPOTENT,
    PersonalDataDep,
    ReadModelDep,
    ServiceDep,
    UserIdPath,
    perform,
    reads,
)
from api.routes import presenters
from api.routes.docs_helpers import IDEMPOTENCY, errors
from api.schemas import User, UserCreate
from domain.errors import UserNotFoundError
from projections.personal import shown_user

router = APIRouter(prefix="/users", tags=["users"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=User,
    summary="Create a user",
    description=(
        "Creates a user with a client-chosen userId. The userId is 1-100 characters of "
        "letters, digits, `_` and `-`; the name is 1-200 characters on one line (no "
        "control characters or bidirectional overrides), not all whitespace or invisible. "
        "An existing userId is refused with 409 DUPLICATE_USER and the original is unchanged "
        "(an erased user's id too: it stays taken). The name is personal data: it is stored "
        "sealed under the user's own key, which erasure destroys. "
        "The `Location` header names the new user."
    ),
    openapi_extra=IDEMPOTENT,
    responses=errors(*IDEMPOTENCY, "VALIDATION_ERROR", "DUPLICATE_USER", "PAYLOAD_TOO_LARGE"),
)
async def create_user(body: UserCreate, service: ServiceDep, response: Response) -> User:
    state = await perform(service, service.create_user_command(body.user_id, body.name))
    response.headers["Location"] = f"/users/{state.user_id}"
    return presenters.user(state)


@router.get(
    "/{userId}",
    response_model=User,
    summary="Get a user",
    description=(
        "Returns the user, or 404 USER_NOT_FOUND. An erased user is still found, with "
        "`name` null and `erased` true."
    ),
    responses=errors("VALIDATION_ERROR", "USER_NOT_FOUND"),
)
@reads
def get_user(user_id: UserIdPath, read_model: ReadModelDep, personal_data: PersonalDataDep) -> User:
    row = read_model.get_user(user_id)
    if row is None:
        raise UserNotFoundError(f"User '{user_id}' not found")
    return presenters.user(shown_user(row, personal_data))
