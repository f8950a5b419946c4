"""Rows of the read tables, as the API serves them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")

#: A gathering's descriptive fields, named alike in its domain events and the Events row.
DETAIL_FIELDS = (
    "title",
    "description",
    "date",
    "location",
    "organizer",
    "status",
    "waitlist_enabled",
)


@dataclass(frozen=True)
class UserRow:
    user_id: str
    name: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class EventRow:
    """A gathering as the Events read table holds it (plus its waitlist, FIFO)."""

    event_id: str
    title: str
    description: str
    date: str
    location: str | None
    organizer: str | None
    status: str
    capacity: int
    waitlist_enabled: bool
    registered_count: int
    waitlist_count: int
    created_at: datetime
    updated_at: datetime
    waitlist: tuple[str, ...] = ()

    @property
    def available_spots(self) -> int:
        return self.capacity - self.registered_count


@dataclass(frozen=True)
class RegistrationRow:
    user_id: str
    event_id: str
    status: str
    registered_at: datetime
    event_title: str
    event_date: str
    waitlist_position: int | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; ``next_token`` is opaque and None on the last page."""

    items: list[T]
    next_token: str | None
    total: int
