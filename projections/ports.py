"""What the projector needs of a read-table store, and what the API reads from it.

Both stores (SQLite, DynamoDB) implement these two protocols; the projector
in ``projections/projector.py`` holds the only copy of "which domain event
changes which row".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from projections.views import EventRow, Page, RegistrationRow, UserRow

if TYPE_CHECKING:
    from projections.memory import MemoryTables


class ReadTableWriter(Protocol):
    """Row changes made inside one read-model transaction."""

    def folding(self, stream_id: UUID, version: int) -> None:
        """Called before the rows of each domain event: the stream and version
        it comes from (a store that keeps, on each row, the version of the
        stream that last changed it notes them; others ignore them)."""
        return

    def put_user(self, user_id: str, name: str, at: datetime) -> None: ...

    def erase_user(self, user_id: str, at: datetime) -> None:
        """Replaces the user's (sealed) name with ``projections.personal.ERASED``."""

    def put_event(self, stream_id: UUID, row: EventRow) -> None: ...

    def event_id_for(self, stream_id: UUID) -> str:
        """The gathering id of a stream, recorded by ``put_event`` (raises LookupError)."""

    def update_event(self, event_id: str, fields: dict[str, object], at: datetime) -> None:
        """Sets the given columns (snake_case names of ``EventRow``)."""

    def adjust_counts(
        self, event_id: str, registered: int, waitlisted: int, at: datetime
    ) -> None: ...

    def delete_event(self, event_id: str) -> None: ...

    def put_registration(
        self, user_id: str, event_id: str, status: str, sort_key: int, at: datetime
    ) -> None: ...

    def promote_registration(self, user_id: str, event_id: str, sort_key: int) -> None: ...

    def delete_registration(self, user_id: str, event_id: str) -> None: ...

    def waitlist_changed(self, event_id: str, user_id: str, ticket: int, joined: bool) -> None:
        """Called when ``user_id`` joins the event's waitlist with ``ticket``
        (``joined``) or leaves it holding ``ticket`` (left, or promoted). A store
        that keeps a digest of each waitlist on its row notes it (DynamoDB:
        ``infra/dynamodb/waitlists.py``); others ignore it."""
        return

    def note_registration(self, user_id: str, event_id: str) -> None:
        """Records that the user registered for the event at least once (kept when
        they leave: it is how their history finds their registrations)."""


@dataclass(frozen=True)
class Change:
    """The row writes one domain event causes, at its notification id."""

    log_position: int
    write: Callable[[ReadTableWriter], None]


#: The changes of one save (one store transaction), in log order. Catch-up
#: commits whole commits only, so readers never see half of a command.
Commit = Sequence[Change]


class ReadModel(Protocol):
    """The Users, Events and Registrations read tables plus their tracking position."""

    local: bool
    """Whether a query is answered from this machine's storage without waiting on
    anyone (SQLite in WAL mode: readers never wait for the writer), so a request
    may run it on the event loop; False where each query is a network round
    trip (DynamoDB), run in a worker thread instead."""

    def log_position(self) -> int | None:
        """The last notification id whose effects the tables hold (0 when empty);
        None when appends fold into them inline and so they hold the log's head."""

    def go_live(self, log_position: int) -> None:
        """Called when catch-up reached the log's head at ``log_position``."""

    def apply(self, expected: int, commits: Sequence[Commit], new_log_position: int) -> bool:
        """Applies ``commits`` (in order) and records ``new_log_position``, exactly once.

        A store that must apply them in several transactions cuts only between
        commits and advances the position with each, so a crash between them
        resumes after the last applied commit. Does nothing and returns False
        when the recorded position is not ``expected`` (another process got
        there first).
        """

    def reset(self) -> None:
        """Empties every read table and sets the position back to 0."""

    def get_user(self, user_id: str) -> UserRow | None: ...

    def get_event(self, event_id: str) -> EventRow | None: ...

    def event_exists(self, event_id: str) -> bool:
        """Whether the Events table has the row (without reading its waitlist)."""

    def get_registration(self, user_id: str, event_id: str) -> RegistrationRow | None: ...

    def list_events(self, status: str | None, limit: int, token: str | None) -> Page[EventRow]: ...

    def list_user_registrations(
        self, user_id: str, limit: int, token: str | None
    ) -> Page[RegistrationRow]: ...

    def list_event_registrations(
        self, event_id: str, limit: int, token: str | None
    ) -> Page[RegistrationRow]: ...

    def dump(self) -> MemoryTables:
        """Every row of every read table (for the drift check)."""

    def registered_event_ids(self, user_id: str) -> list[str]:
        """Every event the user ever registered for (``note_registration``), sorted."""

    def close(self) -> None: ...
