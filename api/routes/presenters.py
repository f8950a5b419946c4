"""Turns read-table rows and command results into response bodies.

The response models name their fields as the rows do (snake_case; camelCase
only on the wire), so each mapping is pydantic's ``from_attributes``: a field
is written once, in the row, and read by name.
"""

from __future__ import annotations

from api.schemas import Event, Registration, User
from domain.application import GatheringState, RegistrationOutcome, UserState
from projections.views import EventRow, RegistrationRow, UserRow


def user(row: UserRow | UserState) -> User:
    return User.model_validate(row, from_attributes=True)


def event(row: EventRow) -> Event:
    return Event.model_validate(row, from_attributes=True)


def event_from_state(state: GatheringState, waitlist: list[str]) -> Event:
    """For a write answered while an admin rebuild has the read tables behind."""
    return Event.model_validate(
        {
            **{name: getattr(state, name) for name in Event.model_fields if hasattr(state, name)},
            "event_id": state.gathering_id,
            "waitlist": waitlist,
        }
    )


def registration(row: RegistrationRow | RegistrationOutcome) -> Registration:
    if isinstance(row, RegistrationOutcome):
        row = RegistrationRow(
            user_id=row.user_id,
            event_id=row.gathering_id,
            status=str(row.status),
            registered_at=row.registered_at,
            event_title=row.gathering_title,
            event_date=row.gathering_date,
            waitlist_position=row.waitlist_position,
        )
    return Registration.model_validate(row, from_attributes=True)
