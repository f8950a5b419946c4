"""Time travel: an event or a user as they were at a moment or a version.

Rebuilt by replaying the log through the same fold that writes the read
tables (``projections/fold.py``), into tables held in memory, never read from
the live read tables. A stream is replayed as a prefix: up to the version
asked for, or up to its last event that occurred at or before the moment
asked for (an event at exactly that moment is included).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent

from domain.errors import GatheringNotFoundError, InvalidCommandError, UserNotFoundError
from domain.model import gathering_aggregate_id, user_aggregate_id
from projections.fold import fold
from projections.ports import ReadTableWriter
from projections.views import EventRow, RegistrationRow, UserRow


@dataclass
class _Registration:
    status: str
    sort_key: int
    registered_at: datetime


@dataclass
class MemoryTables(ReadTableWriter):
    """The read tables as plain dictionaries, written by the fold."""

    users: dict[str, UserRow] = field(default_factory=dict)
    events: dict[str, EventRow] = field(default_factory=dict)
    streams: dict[UUID, str] = field(default_factory=dict)
    registrations: dict[tuple[str, str], _Registration] = field(default_factory=dict)

    def put_user(self, user_id: str, name: str, at: datetime) -> None:
        self.users[user_id] = UserRow(user_id, name, at, at)

    def put_event(self, stream_id: UUID, row: EventRow) -> None:
        self.streams[stream_id] = row.event_id
        self.events[row.event_id] = row

    def event_id_for(self, stream_id: UUID) -> str:
        try:
            return self.streams[stream_id]
        except KeyError:
            msg = f"No gathering is known for stream {stream_id}"
            raise LookupError(msg) from None

    def update_event(self, event_id: str, fields: dict[str, object], at: datetime) -> None:
        self.events[event_id] = replace(self.events[event_id], **fields, updated_at=at)  # type: ignore[arg-type]

    def adjust_counts(self, event_id: str, registered: int, waitlisted: int, at: datetime) -> None:
        row = self.events[event_id]
        self.events[event_id] = replace(
            row,
            registered_count=row.registered_count + registered,
            waitlist_count=row.waitlist_count + waitlisted,
            updated_at=at,
        )

    def delete_event(self, event_id: str) -> None:
        self.events.pop(event_id, None)

    def put_registration(
        self, user_id: str, event_id: str, status: str, sort_key: int, at: datetime
    ) -> None:
        self.registrations[(user_id, event_id)] = _Registration(status, sort_key, at)

    def promote_registration(self, user_id: str, event_id: str, sort_key: int) -> None:
        held = self.registrations[(user_id, event_id)]
        held.status, held.sort_key = "confirmed", sort_key

    def delete_registration(self, user_id: str, event_id: str) -> None:
        self.registrations.pop((user_id, event_id), None)

    def note_registration(self, user_id: str, event_id: str) -> None:
        """Which events a user ever registered for: not needed to answer a state."""

    def _waitlist(self, event_id: str) -> list[str]:
        waiting = [
            (held.sort_key, user_id)
            for (user_id, held_event), held in self.registrations.items()
            if held_event == event_id and held.status == "waitlist"
        ]
        return [user_id for _, user_id in sorted(waiting)]

    def event_row(self, event_id: str) -> EventRow | None:
        row = self.events.get(event_id)
        return None if row is None else replace(row, waitlist=tuple(self._waitlist(event_id)))

    def registration_rows(self, user_id: str) -> list[RegistrationRow]:
        rows = []
        for (holder, event_id), held in sorted(self.registrations.items()):
            event = self.events.get(event_id)
            if holder != user_id or event is None:
                continue
            waitlist = self._waitlist(event_id)
            rows.append(
                RegistrationRow(
                    user_id=user_id,
                    event_id=event_id,
                    status=held.status,
                    registered_at=held.registered_at,
                    event_title=event.title,
                    event_date=event.date,
                    waitlist_position=(
                        waitlist.index(user_id) + 1 if held.status == "waitlist" else None
                    ),
                )
            )
        return rows


ReadStream = Callable[..., Sequence[StoredEvent]]
"""``recorder.select_events``: (originator_id, gt=, lte=, ...)."""
Decode = Callable[[StoredEvent], Any]
"""``mapper.to_domain_event`` (upcasting what was stored by older versions)."""


@dataclass(frozen=True)
class Moment:
    """Where to stop replaying: at a stream version, or at a time (inclusive);
    neither means now."""

    as_of: datetime | None = None
    version: int | None = None

    def __post_init__(self) -> None:
        if self.as_of is not None and self.version is not None:
            msg = "Give asOf or version, not both"
            raise InvalidCommandError(msg, field="asOf")
        if self.as_of is not None and self.as_of.tzinfo is None:
            object.__setattr__(self, "as_of", self.as_of.replace(tzinfo=UTC))

    def includes(self, fact: Aggregate.Event) -> bool:
        if self.version is not None:
            return fact.originator_version <= self.version
        return self.as_of is None or fact.timestamp <= self.as_of


class TimeTravel:
    """States as they were, replayed from the log."""

    def __init__(
        self,
        read_stream: ReadStream,
        decode: Decode,
        registered_event_ids: Callable[[str], list[str]],
    ) -> None:
        self.read_stream = read_stream
        self.decode = decode
        self.registered_event_ids = registered_event_ids

    def _replay(self, stream: UUID, moment: Moment, tables: MemoryTables) -> int:
        """Folds the stream's prefix up to ``moment``; returns how many events it held."""
        lte = moment.version if moment.version is not None else None
        replayed = 0
        for fact in self._facts(self.read_stream(stream, lte=lte)):
            if not moment.includes(fact):
                break
            fold(fact, tables)
            replayed += 1
        return replayed

    def _facts(self, stored: Iterable[StoredEvent]) -> Iterable[Aggregate.Event]:
        for event in stored:
            yield self.decode(event)

    def event(self, event_id: str, moment: Moment) -> EventRow:
        """The event as ``GET /events/{id}`` showed it then (404 before its creation
        and after its deletion)."""
        tables = MemoryTables()
        self._replay(gathering_aggregate_id(event_id), moment, tables)
        row = tables.event_row(event_id)
        if row is None:
            msg = f"Event '{event_id}' did not exist at that moment"
            raise GatheringNotFoundError(msg)
        return row

    def user(self, user_id: str, moment: Moment) -> tuple[UserRow, list[RegistrationRow]]:
        """The user and their registrations then, each with the event's title and date
        as they were then."""
        tables = MemoryTables()
        self._replay(user_aggregate_id(user_id), moment, tables)
        user = tables.users.get(user_id)
        if user is None:
            msg = f"User '{user_id}' did not exist at that moment"
            raise UserNotFoundError(msg)
        for event_id in self.registered_event_ids(user_id):
            self._replay(gathering_aggregate_id(event_id), moment, tables)
        return user, tables.registration_rows(user_id)
