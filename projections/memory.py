"""The read tables as plain dictionaries, written by the fold.

What time travel replays a prefix of the log into, what the drift check folds
the log into, and the form both stores dump their read tables in
(``ReadModel.dump``), so that they compare with a fold table by table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from uuid import UUID

from projections.personal import ERASED
from projections.ports import ReadTableWriter
from projections.views import EventRow, RegistrationRow, UserRow


@dataclass
class StoredRegistration:
    """A registrations row as the fold writes it."""

    status: str
    sort_key: int
    registered_at: datetime


@dataclass
class MemoryTables(ReadTableWriter):
    """The read tables as plain dictionaries, written by the fold; each is named as
    the stores name theirs (``gatherings`` holds the rows the API serves as events)."""

    users: dict[str, UserRow] = field(default_factory=dict)
    gatherings: dict[str, EventRow] = field(default_factory=dict)
    streams: dict[UUID, str] = field(default_factory=dict)
    registrations: dict[tuple[str, str], StoredRegistration] = field(default_factory=dict)
    user_events: set[tuple[str, str]] = field(default_factory=set)

    def put_user(self, user_id: str, name: str, at: datetime) -> None:
        self.users[user_id] = UserRow(user_id, name, at, at)

    def erase_user(self, user_id: str, at: datetime) -> None:
        held = self.users.get(user_id)
        if held is not None:
            self.users[user_id] = replace(held, name=ERASED, updated_at=at)

    def put_event(self, stream_id: UUID, row: EventRow) -> None:
        self.streams[stream_id] = row.event_id
        self.gatherings[row.event_id] = row

    def event_id_for(self, stream_id: UUID) -> str:
        try:
            return self.streams[stream_id]
        except KeyError:
            msg = f"No gathering is known for stream {stream_id}"
            raise LookupError(msg) from None

    def update_event(self, event_id: str, fields: dict[str, object], at: datetime) -> None:
        self.gatherings[event_id] = replace(self.gatherings[event_id], **fields, updated_at=at)  # type: ignore[arg-type]

    def adjust_counts(self, event_id: str, registered: int, waitlisted: int, at: datetime) -> None:
        row = self.gatherings[event_id]
        self.gatherings[event_id] = replace(
            row,
            registered_count=row.registered_count + registered,
            waitlist_count=row.waitlist_count + waitlisted,
            updated_at=at,
        )

    def delete_event(self, event_id: str) -> None:
        self.gatherings.pop(event_id, None)

    def put_registration(
        self, user_id: str, event_id: str, status: str, sort_key: int, at: datetime
    ) -> None:
        self.registrations[(user_id, event_id)] = StoredRegistration(status, sort_key, at)

    def promote_registration(self, user_id: str, event_id: str, sort_key: int) -> None:
        held = self.registrations[(user_id, event_id)]
        held.status, held.sort_key = "confirmed", sort_key

    def delete_registration(self, user_id: str, event_id: str) -> None:
        self.registrations.pop((user_id, event_id), None)

    def note_registration(self, user_id: str, event_id: str) -> None:
        self.user_events.add((user_id, event_id))

    def _waitlist(self, event_id: str) -> list[str]:
        waiting = [
            (held.sort_key, user_id)
            for (user_id, held_event), held in self.registrations.items()
            if held_event == event_id and held.status == "waitlist"
        ]
        return [user_id for _, user_id in sorted(waiting)]

    def event_row(self, event_id: str) -> EventRow | None:
        row = self.gatherings.get(event_id)
        return None if row is None else replace(row, waitlist=tuple(self._waitlist(event_id)))

    def registration_rows(self, user_id: str) -> list[RegistrationRow]:
        rows = []
        for (holder, event_id), held in sorted(self.registrations.items()):
            event = self.gatherings.get(event_id)
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
