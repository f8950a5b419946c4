"""Rows of the read tables, as the API serves them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from domain.model import GatheringDetails

T = TypeVar("T")


@dataclass(frozen=True)
class UserRow:
    """A user. As the read tables hold it, ``name`` is the sealed name, or
    ``projections.personal.ERASED``; as served, the name (None once erased)."""

    user_id: str
    name: str | None
    created_at: datetime
    updated_at: datetime
    erased: bool = False


@dataclass(frozen=True, kw_only=True)
class EventRow(GatheringDetails):
    """A gathering as the Events read table holds it (plus its waitlist, FIFO):
    its details (``GatheringDetails``, a column each) and its counts."""

    event_id: str
    capacity: int
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
