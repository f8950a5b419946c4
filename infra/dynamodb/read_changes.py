"""Row changes of the read tables on DynamoDB, as items of one transaction.

``ReadTableChanges`` is the fold's writer (``projections.ports.ReadTableWriter``)
for DynamoDB: it buffers the row changes of one append (written in the
append's own transaction) or of one catch-up chunk, merged to one operation
per item, because a transaction may not touch an item twice.

A registration that is withdrawn keeps its row (``status = "withdrawn"``, its
``eventOrder`` removed so it leaves the sparse ``eventId-order-index``): the
row is the user's registration history, so no separate item records it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from infra.dynamodb.read_schema import (
    EVENT_LISTING,
    WITHDRAWN,
    TableSet,
    item,
    order,
    serialize,
)
from projections.ports import ReadTableWriter
from projections.views import EventRow

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

# The most rows one domain event's fold writes (a registration row and the
# event row; a new gathering's event row and its stream name).
ROWS_PER_CHANGE = 2


class StreamNames(Protocol):
    """Where the writer finds a stream's gathering and the tables it writes."""

    def tables(self) -> TableSet: ...

    def event_id_for(self, stream_id: UUID) -> str: ...


@dataclass
class _Update:
    """Changes to an item that exists in the table (not written in this chunk)."""

    sets: dict[str, Any] = field(default_factory=dict)
    adds: dict[str, int] = field(default_factory=dict)


class ReadTableChanges(ReadTableWriter):
    """Buffers row changes, merged to one operation per item (a transaction may not
    touch an item twice): one append's, or one catch-up chunk's."""

    def __init__(
        self,
        model: StreamNames,
        streams: Mapping[UUID, str] | None = None,
        names: TableSet | None = None,
    ) -> None:
        self.model = model
        self.names = names or model.tables()
        self.known_streams = streams or {}
        self.users: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any] | _Update | None] = {}
        self.registrations: dict[tuple[str, str], dict[str, Any] | _Update | None] = {}
        self.streams: dict[str, str] = {}
        # Registrations noted (a user's first at a gathering) whose row this
        # writer does not write: normally none, since the fold puts the row in
        # the same commit.
        self.noted: set[tuple[str, str]] = set()

    def _history_only(self) -> list[tuple[str, str]]:
        return sorted(self.noted - self.registrations.keys())

    def size(self) -> int:
        return (
            len(self.users)
            + len(self.events)
            + len(self.registrations)
            + len(self.streams)
            + len(self._history_only())
        )

    def put_user(self, user_id: str, name: str, at: datetime) -> None:
        stamp = at.isoformat()
        self.users[user_id] = {
            "userId": user_id,
            "name": name,
            "createdAt": stamp,
            "updatedAt": stamp,
        }

    def put_event(self, stream_id: UUID, row: EventRow) -> None:
        self.streams[stream_id.hex] = row.event_id
        self.events[row.event_id] = {
            "eventId": row.event_id,
            "listing": EVENT_LISTING,
            "streamId": stream_id.hex,
            "title": row.title,
            "description": row.description,
            "date": row.date,
            "location": row.location,
            "organizer": row.organizer,
            "status": row.status,
            "capacity": row.capacity,
            "waitlistEnabled": row.waitlist_enabled,
            "registeredCount": row.registered_count,
            "waitlistCount": row.waitlist_count,
            "createdAt": row.created_at.isoformat(),
            "updatedAt": row.updated_at.isoformat(),
        }

    def event_id_for(self, stream_id: UUID) -> str:
        found = self.known_streams.get(stream_id) or self.streams.get(stream_id.hex)
        return found if found is not None else self.model.event_id_for(stream_id)

    def _event_change(self, event_id: str) -> dict[str, Any] | _Update:
        current = self.events.get(event_id)
        if current is None:
            current = self.events[event_id] = _Update()
        return current

    def update_event(self, event_id: str, fields: dict[str, object], at: datetime) -> None:
        names = {"waitlist_enabled": "waitlistEnabled"}
        change = self._event_change(event_id)
        values = {names.get(k, k): v for k, v in fields.items()} | {"updatedAt": at.isoformat()}
        if isinstance(change, _Update):
            change.sets.update(values)
        else:
            change.update(values)

    def adjust_counts(self, event_id: str, registered: int, waitlisted: int, at: datetime) -> None:
        change = self._event_change(event_id)
        if isinstance(change, _Update):
            change.adds["registeredCount"] = change.adds.get("registeredCount", 0) + registered
            change.adds["waitlistCount"] = change.adds.get("waitlistCount", 0) + waitlisted
            change.sets["updatedAt"] = at.isoformat()
        else:
            change["registeredCount"] += registered
            change["waitlistCount"] += waitlisted
            change["updatedAt"] = at.isoformat()

    def delete_event(self, event_id: str) -> None:
        self.events[event_id] = None

    def put_registration(
        self, user_id: str, event_id: str, status: str, sort_key: int, at: datetime
    ) -> None:
        self.registrations[(user_id, event_id)] = {
            "userId": user_id,
            "eventId": event_id,
            "status": status,
            "sortKey": sort_key,
            "eventOrder": order(status, sort_key),
            "registeredAt": at.isoformat(),
        }

    def promote_registration(self, user_id: str, event_id: str, sort_key: int) -> None:
        values = {
            "status": "confirmed",
            "sortKey": sort_key,
            "eventOrder": order("confirmed", sort_key),
        }
        current = self.registrations.get((user_id, event_id))
        if isinstance(current, dict):
            current.update(values)
        else:
            self.registrations[(user_id, event_id)] = _Update(sets=values)

    def delete_registration(self, user_id: str, event_id: str) -> None:
        # The row stays as the user's history: withdrawn, and without the
        # sort attribute of ORDER_GSI, so it leaves the event's lists.
        values: dict[str, Any] = {"status": WITHDRAWN, "eventOrder": None}
        current = self.registrations.get((user_id, event_id))
        if isinstance(current, dict):
            current.update(values)
            del current["eventOrder"]
        elif isinstance(current, _Update):
            current.sets.update(values)
        else:
            self.registrations[(user_id, event_id)] = _Update(sets=values)

    def note_registration(self, user_id: str, event_id: str) -> None:
        # The registrations row is the history: nothing to write when this
        # writer writes the row (the fold puts it in the same commit).
        self.noted.add((user_id, event_id))

    def operations(self) -> Iterator[TransactWriteItemTypeDef]:
        m = self.names
        for values in self.users.values():
            yield {"Put": {"TableName": m.users, "Item": item(values)}}
        for stream, event_id in self.streams.items():
            name = {"pk": f"stream#{stream}", "eventId": event_id}
            yield {"Put": {"TableName": m.state, "Item": item(name)}}
        for event_id, change in self.events.items():
            key = {"eventId": {"S": event_id}}
            yield self._operation(m.events, key, change)
        for (user_id, event_id), change in self.registrations.items():
            key = {"userId": {"S": user_id}, "eventId": {"S": event_id}}
            yield self._operation(m.registrations, key, change)
        for user_id, event_id in self._history_only():
            # A registration noted without its row in this batch (a history
            # whose commit held no seat or ticket for it): the row records it,
            # as withdrawn unless a row is there already. Unconditional: the
            # pair is a fact, written again by a rebuild.
            yield {
                "Update": {
                    "TableName": m.registrations,
                    "Key": {"userId": {"S": user_id}, "eventId": {"S": event_id}},
                    "UpdateExpression": "SET #s = if_not_exists(#s, :w)",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":w": {"S": WITHDRAWN}},
                }
            }

    @staticmethod
    def _operation(
        table: str, key: dict[str, Any], change: dict[str, Any] | _Update | None
    ) -> TransactWriteItemTypeDef:
        if change is None:
            return {"Delete": {"TableName": table, "Key": key}}
        if isinstance(change, dict):
            return {"Put": {"TableName": table, "Item": item(change)}}
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets, removes, adds = [], [], []
        for n, (name, value) in enumerate(change.sets.items()):
            names[f"#s{n}"] = name
            if value is None:
                removes.append(f"#s{n}")
            else:
                values[f":s{n}"] = serialize(value)
                sets.append(f"#s{n} = :s{n}")
        for n, (name, delta) in enumerate(change.adds.items()):
            names[f"#a{n}"] = name
            values[f":a{n}"] = serialize(delta)
            adds.append(f"#a{n} :a{n}")
        expression = " ".join(
            part
            for part in (
                "SET " + ", ".join(sets) if sets else "",
                "REMOVE " + ", ".join(removes) if removes else "",
                "ADD " + ", ".join(adds) if adds else "",
            )
            if part
        )
        update: dict[str, Any] = {
            "TableName": table,
            "Key": key,
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            # Only rows the projector created earlier are updated: a missing
            # row means the history is inconsistent, which must not pass silently.
            "ConditionExpression": f"attribute_exists({next(iter(key))})",
        }
        if values:
            update["ExpressionAttributeValues"] = values
        return {"Update": update}  # type: ignore[typeddict-item]
