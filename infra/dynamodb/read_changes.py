"""Row changes of the read tables on DynamoDB, as items of one transaction.

``ReadTableChanges`` is the fold's writer (``projections.ports.ReadTableWriter``)
for DynamoDB: it buffers the row changes of one append (written in the
append's own transaction) or of one catch-up chunk, merged to one operation
per item, because a transaction may not touch an item twice.

A registration that is withdrawn keeps its row (``status = "withdrawn"``, its
``eventOrder`` removed so it leaves the sparse ``eventId-order-index``): the
row is the user's registration history, so no separate item records it.

Stream versions on rows (``v``): a gatherings row carries the version of its
gathering's stream that last changed it (every gathering event changes the
row, so ``v`` is the version of the stream its rows hold: the gatherings row and
the gathering's registration rows, all written by the same transactions); a
users row carries its user stream's version. A deleted gathering's row goes,
and its stream-name row (``stream#<uuid>`` in ``projection_state``) keeps
``deleted`` = the version that deleted it. A *guarded* writer (an append's
inline rows, a repair: ``infra/dynamodb/repair.py``) conditions the events
row on ``v`` being the version before the first it folds; the rows are then
the fold of their stream up to ``v``, each commit applied once, in stream
order, and a generation that missed a commit refuses the next one instead of
applying it on top of the gap.
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
    attribute_name,
    event_attributes,
    item,
    order,
    serialize,
)
from infra.dynamodb.waitlists import DIGEST, DIGEST_KEPT, waiting_hash
from projections.personal import ERASED
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
        *,
        guarded: bool = False,
        skip: Mapping[UUID, int] | None = None,
    ) -> None:
        """``guarded``: condition each gatherings row on its version (see above).
        ``skip``: per stream, the version its rows already hold here (a
        rebuild's fill that found a row ahead of the log: a commit landed in
        these tables while they were being filled); its events up to that
        version write nothing."""
        self.model = model
        self.names = names or model.tables()
        self.known_streams = streams or {}
        self.users: dict[str, dict[str, Any]] = {}
        # Users erased whose row this writer does not write: userId -> the
        # attributes the erasure sets on the row.
        self.erased_users: dict[str, dict[str, Any]] = {}
        self.gatherings: dict[str, dict[str, Any] | _Update | None] = {}
        self.registrations: dict[tuple[str, str], dict[str, Any] | _Update | None] = {}
        self.streams: dict[str, str] = {}
        # Registrations noted (a user's first at a gathering) whose row this
        # writer does not write: normally none, since the fold puts the row in
        # the same commit.
        self.noted: set[tuple[str, str]] = set()
        self.guarded = guarded
        self.skip = skip or {}
        self._skipping = False
        # The stream and version of the domain event being folded.
        self._at: tuple[UUID, int] | None = None
        # Each gatherings row written: its stream, and the first and last version
        # of that stream folded here.
        self.versions: dict[str, tuple[UUID, int, int]] = {}
        self.user_versions: dict[str, int] = {}
        # Stream-name rows of gatherings deleted here: stream hex -> version.
        self.deleted: dict[str, int] = {}

    def folding(self, stream_id: UUID, version: int) -> None:
        self._at = (stream_id, version)
        self._skipping = version <= self.skip.get(stream_id, 0)

    def _stamp(self, event_id: str) -> None:
        """Notes that the event being folded changes ``event_id``'s row."""
        if self._at is None:
            return
        stream, version = self._at
        found = self.versions.get(event_id)
        self.versions[event_id] = (stream, found[1] if found else version, version)

    def _history_only(self) -> list[tuple[str, str]]:
        return sorted(self.noted - self.registrations.keys())

    def size(self) -> int:
        return (
            len(self.users)
            + len(self.erased_users)
            + len(self.gatherings)
            + len(self.registrations)
            + len(self.streams)
            + len(self.deleted.keys() - self.streams.keys())
            + len(self._history_only())
        )

    def put_user(self, user_id: str, name: str, at: datetime) -> None:
        if self._skipping:
            return
        stamp = at.isoformat()
        self.users[user_id] = {
            "userId": user_id,
            "name": name,
            "createdAt": stamp,
            "updatedAt": stamp,
            "v": None if self._at is None else self._at[1],
        }

    def erase_user(self, user_id: str, at: datetime) -> None:
        if self._skipping:
            return
        erased: dict[str, Any] = {"name": ERASED, "updatedAt": at.isoformat()}
        if self._at is not None:
            erased["v"] = self._at[1]
        held = self.users.get(user_id)
        if held is not None:  # created in this chunk (a rebuild's): one Put
            held.update(erased)
        else:
            self.erased_users[user_id] = erased

    def put_event(self, stream_id: UUID, row: EventRow) -> None:
        if self._skipping:
            return
        self._stamp(row.event_id)
        self.streams[stream_id.hex] = row.event_id
        self.gatherings[row.event_id] = event_attributes(row) | {
            "listing": EVENT_LISTING,
            "streamId": stream_id.hex,
        }

    def event_id_for(self, stream_id: UUID) -> str:
        found = self.known_streams.get(stream_id) or self.streams.get(stream_id.hex)
        return found if found is not None else self.model.event_id_for(stream_id)

    def _event_change(self, event_id: str) -> dict[str, Any] | _Update:
        self._stamp(event_id)
        current = self.gatherings.get(event_id)
        if current is None:
            current = self.gatherings[event_id] = _Update()
        return current

    def update_event(self, event_id: str, fields: dict[str, object], at: datetime) -> None:
        if self._skipping:
            return
        change = self._event_change(event_id)
        values = {attribute_name(k): v for k, v in fields.items()} | {"updatedAt": at.isoformat()}
        if isinstance(change, _Update):
            change.sets.update(values)
        else:
            change.update(values)

    def adjust_counts(self, event_id: str, registered: int, waitlisted: int, at: datetime) -> None:
        if self._skipping:
            return
        change = self._event_change(event_id)
        if isinstance(change, _Update):
            change.adds["registeredCount"] = change.adds.get("registeredCount", 0) + registered
            change.adds["waitlistCount"] = change.adds.get("waitlistCount", 0) + waitlisted
            change.sets["updatedAt"] = at.isoformat()
        else:
            change["registeredCount"] += registered
            change["waitlistCount"] += waitlisted
            change["updatedAt"] = at.isoformat()

    def waitlist_changed(self, event_id: str, user_id: str, ticket: int, joined: bool) -> None:
        if self._skipping:
            return
        change = self._event_change(event_id)
        delta = waiting_hash(user_id, ticket) * (1 if joined else -1)
        if isinstance(change, _Update):
            change.adds[DIGEST] = change.adds.get(DIGEST, 0) + delta
        else:
            change[DIGEST] = change.get(DIGEST, 0) + delta

    def delete_event(self, event_id: str) -> None:
        if self._skipping:
            return
        self._stamp(event_id)
        self.gatherings[event_id] = None
        if self._at is not None:
            self.deleted[self._at[0].hex] = self._at[1]

    def put_registration(
        self, user_id: str, event_id: str, status: str, sort_key: int, at: datetime
    ) -> None:
        if self._skipping:
            return
        self.registrations[(user_id, event_id)] = {
            "userId": user_id,
            "eventId": event_id,
            "status": status,
            "sortKey": sort_key,
            "eventOrder": order(status, sort_key),
            "registeredAt": at.isoformat(),
        }

    def promote_registration(self, user_id: str, event_id: str, sort_key: int) -> None:
        if self._skipping:
            return
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
        if self._skipping:
            return
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
        if self._skipping:
            return
        # The registrations row is the history: nothing to write when this
        # writer writes the row (the fold puts it in the same commit).
        self.noted.add((user_id, event_id))

    def operations(self) -> Iterator[TransactWriteItemTypeDef]:
        return (operation for operation, _ in self.labelled())

    def labelled(self) -> Iterator[tuple[TransactWriteItemTypeDef, str | None]]:
        """Each operation, with the stream (hex) whose version it is conditioned
        on (a guarded writer's gatherings rows), else None."""
        for operation in self._unguarded():
            yield operation, None
        yield from self._gathering_rows()
        for operation in self._registration_rows():
            yield operation, None

    def _unguarded(self) -> Iterator[TransactWriteItemTypeDef]:
        m = self.names
        for values in self.users.values():
            yield {"Put": {"TableName": m.users, "Item": item(values)}}
        for user_id, erased in self.erased_users.items():
            # No condition: the row exists (its user's creation folded before), and
            # a failed condition would cancel the whole transaction.
            names = {f"#{n}": name for n, name in enumerate(erased)}
            yield {
                "Update": {
                    "TableName": m.users,
                    "Key": {"userId": {"S": user_id}},
                    "UpdateExpression": "SET "
                    + ", ".join(f"#{n} = :{n}" for n in range(len(erased))),
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": {
                        f":{n}": serialize(value) for n, value in enumerate(erased.values())
                    },
                }
            }
        for stream, event_id in self.streams.items():
            name = {
                "pk": f"stream#{stream}",
                "eventId": event_id,
                "deleted": self.deleted.get(stream),
            }
            yield {"Put": {"TableName": m.state, "Item": item(name)}}
        for event_id, (stream_id, _, version) in self.versions.items():
            stream = stream_id.hex
            if stream in self.deleted and stream not in self.streams:
                # The deleted gathering's stream name keeps the version that
                # deleted it: the row is gone, its stream's place is not.
                yield {
                    "Update": {
                        "TableName": m.state,
                        "Key": {"pk": {"S": f"stream#{stream}"}},
                        "UpdateExpression": "SET #e = :e, #d = :d",
                        "ExpressionAttributeNames": {"#e": "eventId", "#d": "deleted"},
                        "ExpressionAttributeValues": {
                            ":e": {"S": event_id},
                            ":d": {"N": str(version)},
                        },
                    }
                }

    def _gathering_rows(self) -> Iterator[tuple[TransactWriteItemTypeDef, str | None]]:
        for event_id, change in self.gatherings.items():
            key = {"eventId": {"S": event_id}}
            if isinstance(change, dict):
                # A whole row is a new gathering's: its waitlist digest starts
                # here, and the marker says the row keeps it (waitlists.py).
                change[DIGEST] = change.get(DIGEST, 0)
                change[DIGEST_KEPT] = True
            found = self.versions.get(event_id)
            if found is None:
                yield self._operation(self.names.gatherings, key, change), None
                continue
            stream, first, last = found
            if isinstance(change, dict):
                change["v"] = last
            elif isinstance(change, _Update):
                change.sets["v"] = last
            if not self.guarded:
                yield self._operation(self.names.gatherings, key, change), None
                continue
            yield self._operation(self.names.gatherings, key, change, after=first - 1), stream.hex

    def _registration_rows(self) -> Iterator[TransactWriteItemTypeDef]:
        m = self.names
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
    def _guard(operation: dict[str, Any], after: int, exists: str) -> None:
        """Conditions a row's write on the row holding its stream up to ``after``.

        WHY: the row is exactly the fold of its stream up to its ``v``, so a
        commit (or a repair) whose first version is ``after + 1`` applies only
        on top of ``after``: once, and in stream order. A generation that
        missed a commit refuses the next (the writer repairs it from the event
        store, then retries). ``after = 0``: the stream starts here, so the row
        must not exist. A row of the layout before versions (no ``v``) passes.
        """
        names = operation.setdefault("ExpressionAttributeNames", {})
        if after == 0:
            names["#k"] = exists
            operation["ConditionExpression"] = "attribute_not_exists(#k)"
            return
        names |= {"#k": exists, "#v": "v"}
        values = operation.setdefault("ExpressionAttributeValues", {})
        values[":after"] = {"N": str(after)}
        operation["ConditionExpression"] = (
            "attribute_exists(#k) AND (#v = :after OR attribute_not_exists(#v))"
        )

    @classmethod
    def _operation(
        cls,
        table: str,
        key: dict[str, Any],
        change: dict[str, Any] | _Update | None,
        *,
        after: int | None = None,
    ) -> TransactWriteItemTypeDef:
        exists = next(iter(key))
        if change is None:
            delete: dict[str, Any] = {"TableName": table, "Key": key}
            if after is not None:
                cls._guard(delete, after, exists)
            return {"Delete": delete}  # type: ignore[typeddict-item]
        if isinstance(change, dict):
            put: dict[str, Any] = {"TableName": table, "Item": item(change)}
            if after is not None:
                cls._guard(put, after, exists)
            return {"Put": put}  # type: ignore[typeddict-item]
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
            "ConditionExpression": f"attribute_exists({exists})",
        }
        if values:
            update["ExpressionAttributeValues"] = values
        if after is not None:
            cls._guard(update, after, exists)
        return {"Update": update}  # type: ignore[typeddict-item]
