"""Time travel: an event or a user as they were at a moment or a version.

Rebuilt by replaying the log through the same fold that writes the read
tables (``projections/fold.py``), into tables held in memory, never read from
the live read tables. A stream is replayed as a prefix: up to the version
asked for, or up to its last event that occurred at or before the moment
asked for (an event at exactly that moment is included).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent

from domain.errors import (
    GatheringNotFoundError,
    InvalidCommandError,
    UndecodableEventError,
    UserNotFoundError,
)
from domain.model import gathering_aggregate_id, user_aggregate_id
from projections.fold import fold
from projections.memory import MemoryTables
from projections.views import EventRow, RegistrationRow, UserRow

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
            try:
                fact = self.decode(event)
            except Exception as error:  # altered bytes can fail to decode in any way
                # Its time is unknown too: a state at any moment it might precede is
                # refused, never replayed past it as if it were not there.
                msg = (
                    f"Version {event.originator_version} of stream {event.originator_id} "
                    "cannot be decoded: the state cannot be replayed past it "
                    "(see /audit/verify)"
                )
                raise UndecodableEventError(msg) from error
            yield fact

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
