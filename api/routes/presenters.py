"""Turns read-table rows and command results into response bodies."""

from __future__ import annotations

from typing import Literal, cast

from api.schemas import Event, Registration, Status, User
from domain.application import GatheringState, RegistrationOutcome, UserState
from projections.views import EventRow, RegistrationRow, UserRow


def user(row: UserRow | UserState) -> User:
    return User(
        user_id=row.user_id, name=row.name, created_at=row.created_at, updated_at=row.updated_at
    )


def event(row: EventRow) -> Event:
    return Event(
        event_id=row.event_id,
        title=row.title,
        description=row.description,
        date=row.date,
        location=row.location,
        capacity=row.capacity,
        organizer=row.organizer,
        status=cast(Status, row.status),
        waitlist_enabled=row.waitlist_enabled,
        registered_count=row.registered_count,
        waitlist=list(row.waitlist),
        waitlist_count=row.waitlist_count,
        available_spots=row.available_spots,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def event_from_state(state: GatheringState, waitlist: list[str]) -> Event:
    """For the rare write whose read tables did not catch up in time."""
    return event(
        EventRow(
            event_id=state.gathering_id,
            title=state.title,
            description=state.description,
            date=state.date,
            location=state.location,
            organizer=state.organizer,
            status=str(state.status),
            capacity=state.capacity,
            waitlist_enabled=state.waitlist_enabled,
            registered_count=state.registered_count,
            waitlist_count=state.waitlist_count,
            created_at=state.created_at,
            updated_at=state.updated_at,
            waitlist=tuple(waitlist),
        )
    )


def registration(row: RegistrationRow | RegistrationOutcome) -> Registration:
    if isinstance(row, RegistrationOutcome):
        return Registration(
            user_id=row.user_id,
            event_id=row.gathering_id,
            status=cast(Literal["confirmed", "waitlist"], str(row.status)),
            registered_at=row.registered_at,
            event_title=row.gathering_title,
            event_date=row.gathering_date,
            waitlist_position=row.waitlist_position,
        )
    return Registration(
        user_id=row.user_id,
        event_id=row.event_id,
        status=cast(Literal["confirmed", "waitlist"], row.status),
        registered_at=row.registered_at,
        event_title=row.event_title,
        event_date=row.event_date,
        waitlist_position=row.waitlist_position,
    )
