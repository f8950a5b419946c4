"""Turns read-table rows and command results into response bodies.

The response models name their fields as the rows do (snake_case; camelCase
only on the wire), so each mapping is pydantic's ``from_attributes``: a field
is written once, in the row, and read by name. A command's result names them
alike, but in the domain's words: what the edge calls an "event" the domain
calls a "gathering" (``gathering_title`` is ``eventTitle``).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from api.schemas import Event, Registration, User
from domain.application import GatheringState, RegistrationOutcome, UserState
from projections.views import EventRow, RegistrationRow, UserRow

M = TypeVar("M", bound=BaseModel)


def _from_result(model: type[M], result: object, **more: Any) -> M:
    """``model`` read from a command's ``result``: each field by its name, or
    by the domain's name for it ("gathering" for "event")."""
    values = {}
    for name in model.model_fields:
        for known_as in (name, name.replace("event", "gathering")):
            if hasattr(result, known_as):
                values[name] = getattr(result, known_as)
                break
    return model.model_validate(values | more)


def user(row: UserRow | UserState) -> User:
    return User.model_validate(row, from_attributes=True)


def event(row: EventRow) -> Event:
    return Event.model_validate(row, from_attributes=True)


def event_from_state(state: GatheringState, waitlist: list[str]) -> Event:
    """For a write answered while an admin rebuild has the read tables behind."""
    return _from_result(Event, state, waitlist=waitlist)


def registration(row: RegistrationRow | RegistrationOutcome) -> Registration:
    if isinstance(row, RegistrationOutcome):
        return _from_result(Registration, row)
    return Registration.model_validate(row, from_attributes=True)
