"""The read tables on DynamoDB: Users, Events, Registrations, and the projector's state.

Tables (names carry the configured prefix):

- ``users``: key ``userId``.
- ``events``: key ``eventId``; details and the counters ``registeredCount``
  and ``waitlistCount``. Every row carries ``listing = "event"``: GSI
  ``listing-eventId-index`` (``listing``, ``eventId``) lists all events in
  eventId order (``GET /events``).
- ``registrations``: key (``userId``, ``eventId``); ``status``, ``sortKey``,
  ``registeredAt`` and ``eventOrder`` (``"0#<seat order>"`` for confirmed,
  ``"1#<ticket>"`` for waiting, zero-padded). GSI ``eventId-order-index``
  (``eventId``, ``eventOrder``), which lists an event's registrations
  confirmed first, then the waitlist FIFO.
- ``user_events``: key (``userId``, ``eventId``): every event the user ever
  registered for (kept when they leave; their history starts from it).
- ``projection_state``: ``pk = "position#read-tables"`` holds the tracking
  position; ``pk = "stream#<uuid>"`` maps a gathering's stream to its eventId.

Exactly once: a batch of row changes and the new tracking position commit in
one ``TransactWriteItems`` whose tracking update is conditional on the
position the batch started from. A transaction holds at most 100 items and
never two operations on one item, so the writer merges every change to one
item into one operation and commits a batch in chunks of whole events, each
chunk advancing the position; a crash between chunks resumes after the last.

Reads of single items and of the base table use ``ConsistentRead``. Queries of
the GSIs (the event listing, an event's waitlist and registration list) cannot:
DynamoDB updates GSIs asynchronously, usually within a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from domain.errors import StoreUnavailableError
from projections.memory import MemoryTables, StoredRegistration
from projections.paging import decode_token, encode_token
from projections.ports import Commit, ReadTableWriter
from projections.views import EventRow, Page, RegistrationRow, UserRow

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

logger = logging.getLogger(__name__)

POSITION_KEY = "position#read-tables"
# In blue's projection_state: which generation of the read tables is live.
POINTER_KEY = "generation#read-tables"
# How long a process trusts its copy of the pointer (seconds).
POINTER_TTL_SECONDS = 2.0
# The longest an append waits for a switch to end before answering 503.
FENCE_WAIT_LIMIT_SECONDS = 60.0
# The longest a fence holds: a switch must point at its tables within it, or
# give up (so a switch whose process died stops fencing appends).
FENCE_LEASE_SECONDS = 120.0
# A catch-up chunk holds whole commits of at most this many row changes, plus
# the tracking item: within DynamoDB's 100 items per transaction. One commit
# (an append) never changes more rows than its own transaction held.
MAX_ITEMS_PER_CHUNK = 98
# The most rows one domain event's fold writes (a registration row and the
# event row; a new gathering's event row and its stream name).
ROWS_PER_CHANGE = 2
SNAPSHOT_READ_ATTEMPTS = 5
ORDER_GSI = "eventId-order-index"
EVENTS_GSI = "listing-eventId-index"
# The partition key of every event row in EVENTS_GSI: one partition holding all
# events, sorted by eventId. Its write rate is one per event-row change, far
# below a partition's limit given that the event store serialises all appends.
EVENT_LISTING = "event"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def _order(status: str, sort_key: int) -> str:
    return f"{0 if status == 'confirmed' else 1}#{sort_key:020d}"


def _user_row(item: dict[str, Any]) -> UserRow:
    return UserRow(
        user_id=item["userId"],
        name=item["name"],
        created_at=datetime.fromisoformat(item["createdAt"]),
        updated_at=datetime.fromisoformat(item["updatedAt"]),
    )


def _event_row(item: dict[str, Any], waitlist: tuple[str, ...]) -> EventRow:
    return EventRow(
        event_id=item["eventId"],
        title=item["title"],
        description=item.get("description", ""),
        date=item["date"],
        location=item.get("location"),
        organizer=item.get("organizer"),
        status=item["status"],
        capacity=int(item["capacity"]),
        waitlist_enabled=bool(item["waitlistEnabled"]),
        registered_count=int(item["registeredCount"]),
        waitlist_count=int(item["waitlistCount"]),
        created_at=datetime.fromisoformat(item["createdAt"]),
        updated_at=datetime.fromisoformat(item["updatedAt"]),
        waitlist=waitlist,
    )


@dataclass(frozen=True)
class ReadTableSpec:
    name: str
    keys: tuple[str, ...]
    indexes: tuple[tuple[str, str, str], ...] = ()  # (name, partition key, sort key)
    ttl: str | None = None  # the time-to-live attribute (N, epoch seconds), if any


#: The two sets of read tables: one is live, a rebuild fills the other.
GENERATIONS = ("blue", "green")


@dataclass(frozen=True)
class TableSet:
    """The names of one generation's read tables."""

    generation: str
    users: str
    events: str
    registrations: str
    user_events: str
    state: str


def table_set(prefix: str, generation: str) -> TableSet:
    """Blue keeps the tables' original names; green's carry ``green-`` after the prefix."""
    p = prefix if generation == "blue" else f"{prefix}{generation}-"
    return TableSet(
        generation,
        f"{p}users",
        f"{p}events",
        f"{p}registrations",
        f"{p}user_events",
        f"{p}projection_state",
    )


def read_table_specs(prefix: str, generations: Sequence[str] = GENERATIONS) -> list[ReadTableSpec]:
    specs = []
    for generation in generations:
        names = table_set(prefix, generation)
        specs += [
            ReadTableSpec(names.users, ("userId",)),
            ReadTableSpec(names.events, ("eventId",), ((EVENTS_GSI, "listing", "eventId"),)),
            ReadTableSpec(
                names.registrations,
                ("userId", "eventId"),
                ((ORDER_GSI, "eventId", "eventOrder"),),
            ),
            ReadTableSpec(names.user_events, ("userId", "eventId")),
            ReadTableSpec(names.state, ("pk",)),
        ]
    return specs


def _fence_holds(item: dict[str, Any]) -> bool:
    return bool(item.get("fenced", False)) and time.time() < float(item.get("until", 0))


class LivePointer:
    """Which generation is live: one item of blue's ``projection_state``.

    Each process caches it for ``ttl`` seconds from the moment it asked. A
    rebuild's switch first *fences* it (the live generation stays, appends
    wait), waits until every process's cached copy has expired and every
    append sent before has landed, folds the rest of the log into the other
    generation and then points at it. While fenced, every read asks again, so
    no process reads the old generation after the switch.
    """

    def __init__(self, client: DynamoDBClient, table: str, ttl: float = POINTER_TTL_SECONDS):
        self.client = client
        self.table = table
        self.ttl = ttl
        self._lock = threading.Lock()
        self._live = "blue"
        self._fenced = False
        self._valid_until = 0.0

    def _item(self) -> dict[str, Any]:
        try:
            found = self.client.get_item(
                TableName=self.table, Key={"pk": {"S": POINTER_KEY}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as error:
            raise _unavailable(error) from error
        return _plain(found.get("Item") or {})

    def read(self) -> tuple[str, bool]:
        """The live generation and whether a switch has fenced it, as stored (a
        consistent read)."""
        item = self._item()
        return str(item.get("live", "blue")), bool(item.get("fenced", False))

    def fence_holds(self) -> bool:
        """Whether the pointer is fenced and its fence not past its end (a switch
        whose process died fences appends for at most ``FENCE_LEASE_SECONDS``)."""
        return _fence_holds(self._item())

    def current(self) -> tuple[str, bool]:
        """The live generation and whether appends must wait, from this process's
        copy while it is fresh; one read of the item otherwise."""
        with self._lock:
            if time.monotonic() < self._valid_until:
                return self._live, self._fenced
        asked = time.monotonic()
        item = self._item()
        live, fenced = str(item.get("live", "blue")), _fence_holds(item)
        with self._lock:
            self._live, self._fenced = live, fenced
            self._valid_until = asked if fenced else asked + self.ttl
        return live, fenced

    def live(self) -> str:
        return self.current()[0]

    def for_append(self) -> str:
        """The live generation once it is not fenced (appends wait for a switch)."""
        deadline = time.monotonic() + FENCE_WAIT_LIMIT_SECONDS
        while True:
            live, fenced = self.current()
            if not fenced:
                return live
            if time.monotonic() > deadline:
                msg = "The read tables are being switched to a rebuilt set; please retry"
                raise StoreUnavailableError(msg)
            time.sleep(0.05)

    def confirms(self, generation: str) -> bool:
        """Whether an append built for ``generation`` may still be sent."""
        live, fenced = self.current()
        return live == generation and not fenced

    def write(self, live: str, *, fenced: bool, expected: tuple[str, bool]) -> None:
        """Moves the pointer from ``expected`` (ConditionalCheckFailed otherwise)."""
        item = {"pk": POINTER_KEY, "live": live, "fenced": fenced}
        if fenced:
            item["until"] = int(time.time() + FENCE_LEASE_SECONDS)
        condition = "attribute_not_exists(pk)" if expected == ("blue", False) else None
        names: dict[str, str] = {"#l": "live", "#f": "fenced"}
        values = {":l": expected[0], ":f": expected[1]}
        expression = "(#l = :l AND #f = :f)"
        if condition:
            expression = f"{condition} OR {expression}"
        # Two switches never race: only the holder of the rebuild's lease moves
        # the pointer, and only from the state it last saw.
        self.client.put_item(
            TableName=self.table,
            Item=_item(item),
            ConditionExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={k: _serializer.serialize(v) for k, v in values.items()},
        )
        with self._lock:
            self._valid_until = 0.0


def ensure_tables(client: DynamoDBClient, specs: Sequence[ReadTableSpec]) -> None:
    """Creates the missing tables (on-demand billing) and waits until all are ACTIVE
    (then turns on the time to live of those it created that have one)."""
    created: list[ReadTableSpec] = []
    for spec in specs:
        try:
            client.describe_table(TableName=spec.name)
            continue  # exists already (created by the stack, or an earlier start)
        except client.exceptions.ResourceNotFoundException:
            pass
        except (ClientError, BotoCoreError) as error:
            raise _unavailable(error) from error
        attributes = set(spec.keys) | {key for index in spec.indexes for key in index[1:]}
        request: Any = {
            "TableName": spec.name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": name, "AttributeType": "S"} for name in sorted(attributes)
            ],
            "KeySchema": [
                {"AttributeName": name, "KeyType": kind}
                for name, kind in zip(spec.keys, ("HASH", "RANGE"), strict=False)
            ],
        }
        if spec.indexes:
            request["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": name,
                    "KeySchema": [
                        {"AttributeName": pk, "KeyType": "HASH"},
                        {"AttributeName": sk, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
                for name, pk, sk in spec.indexes
            ]
        try:
            client.create_table(**request)
            created.append(spec)
            logger.info("created table %s", spec.name)
        except ClientError as error:
            # Another process (or an earlier start) created it: fine.
            if error.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise _unavailable(error) from error
        except BotoCoreError as error:
            raise _unavailable(error) from error
    for spec in specs:
        deadline = time.monotonic() + 300
        while True:
            table = client.describe_table(TableName=spec.name)["Table"]
            indexes = table.get("GlobalSecondaryIndexes", [])
            if table.get("TableStatus") == "ACTIVE" and all(
                index.get("IndexStatus") == "ACTIVE" for index in indexes
            ):
                break
            if time.monotonic() > deadline:
                msg = f"Table {spec.name} is not ACTIVE after 300 s"
                raise StoreUnavailableError(msg)
            time.sleep(0.1)
    for spec in created:
        if spec.ttl is not None:
            try:
                client.update_time_to_live(
                    TableName=spec.name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl},
                )
            except (ClientError, BotoCoreError) as error:
                raise _unavailable(error) from error


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
        model: DynamoDBReadModel,
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
        self.user_events: set[tuple[str, str]] = set()

    def size(self) -> int:
        return (
            len(self.users)
            + len(self.events)
            + len(self.registrations)
            + len(self.streams)
            + len(self.user_events)
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
            "eventOrder": _order(status, sort_key),
            "registeredAt": at.isoformat(),
        }

    def promote_registration(self, user_id: str, event_id: str, sort_key: int) -> None:
        values = {
            "status": "confirmed",
            "sortKey": sort_key,
            "eventOrder": _order("confirmed", sort_key),
        }
        current = self.registrations.get((user_id, event_id))
        if isinstance(current, dict):
            current.update(values)
        else:
            self.registrations[(user_id, event_id)] = _Update(sets=values)

    def delete_registration(self, user_id: str, event_id: str) -> None:
        self.registrations[(user_id, event_id)] = None

    def note_registration(self, user_id: str, event_id: str) -> None:
        self.user_events.add((user_id, event_id))

    def operations(self) -> Iterator[TransactWriteItemTypeDef]:
        m = self.names
        for values in self.users.values():
            yield {"Put": {"TableName": m.users, "Item": _item(values)}}
        for stream, event_id in self.streams.items():
            item = {"pk": f"stream#{stream}", "eventId": event_id}
            yield {"Put": {"TableName": m.state, "Item": _item(item)}}
        for event_id, change in self.events.items():
            key = {"eventId": {"S": event_id}}
            yield self._operation(m.events, key, change)
        for (user_id, event_id), change in self.registrations.items():
            key = {"userId": {"S": user_id}, "eventId": {"S": event_id}}
            yield self._operation(m.registrations, key, change)
        for user_id, event_id in sorted(self.user_events):
            # Unconditional: the pair is a fact, written again by a rebuild.
            item = {"userId": user_id, "eventId": event_id}
            yield {"Put": {"TableName": m.user_events, "Item": _item(item)}}

    @staticmethod
    def _operation(
        table: str, key: dict[str, Any], change: dict[str, Any] | _Update | None
    ) -> TransactWriteItemTypeDef:
        if change is None:
            return {"Delete": {"TableName": table, "Key": key}}
        if isinstance(change, dict):
            return {"Put": {"TableName": table, "Item": _item(change)}}
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets, removes, adds = [], [], []
        for n, (name, value) in enumerate(change.sets.items()):
            names[f"#s{n}"] = name
            if value is None:
                removes.append(f"#s{n}")
            else:
                values[f":s{n}"] = _serializer.serialize(value)
                sets.append(f"#s{n} = :s{n}")
        for n, (name, delta) in enumerate(change.adds.items()):
            names[f"#a{n}"] = name
            values[f":a{n}"] = _serializer.serialize(delta)
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


class DynamoDBReadModel:
    """The read tables on DynamoDB (real AWS or DynamoDB Local)."""

    def __init__(
        self,
        client: DynamoDBClient,
        prefix: str,
        *,
        create_tables: bool = True,
        generation: str | None = None,
    ) -> None:
        """``generation`` binds the model to one set of tables (a rebuild's);
        without it, the model follows the live pointer."""
        self.client = client
        self.prefix = prefix
        self.generation = generation
        self.pointer = LivePointer(client, table_set(prefix, "blue").state)
        self._streams: dict[str, str] = {}
        self._streams_lock = threading.Lock()
        if create_tables:
            # Blue holds the live pointer and is live until a first rebuild;
            # a rebuild creates green when it first needs it (the CDK stack
            # defines both).
            ensure_tables(client, read_table_specs(prefix, ("blue",)))

    def tables(self) -> TableSet:
        """The tables read: the bound generation's, or the live one's."""
        return table_set(self.prefix, self.generation or self.pointer.live())

    def tables_for_append(self) -> TableSet:
        """The tables an append folds into (waits while a switch is fenced)."""
        return table_set(self.prefix, self.generation or self.pointer.for_append())

    @property
    def users_table(self) -> str:
        return self.tables().users

    @property
    def events_table(self) -> str:
        return self.tables().events

    @property
    def registrations_table(self) -> str:
        return self.tables().registrations

    @property
    def user_events_table(self) -> str:
        return self.tables().user_events

    @property
    def state_table(self) -> str:
        return self.tables().state

    def close(self) -> None:
        self.client.close()

    # -- tracking and writes -------------------------------------------------

    def position(self) -> int | None:
        """None while the tables are live (every append folds into them inline);
        during a rebuild, the notification id the rebuild has reached."""
        item = self._get(self.state_table, {"pk": {"S": POSITION_KEY}})
        return int(item["position"]) if item else None

    def go_live(self, position: int) -> None:
        """Ends a rebuild that reached the log's head: appends fold inline again."""
        try:
            self.client.delete_item(
                TableName=self.state_table,
                Key={"pk": {"S": POSITION_KEY}},
                # Only the rebuild that got there ends it.
                ConditionExpression="#p = :p",
                ExpressionAttributeNames={"#p": "position"},
                ExpressionAttributeValues={":p": {"N": str(position)}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise _unavailable(error) from error
        except BotoCoreError as error:
            raise _unavailable(error) from error

    def event_id_for(self, stream_id: UUID) -> str:
        with self._streams_lock:
            found = self._streams.get(stream_id.hex)
        if found is None:
            item = self._get(self.state_table, {"pk": {"S": f"stream#{stream_id.hex}"}})
            if item is None:
                msg = f"No gathering is known for stream {stream_id}"
                raise LookupError(msg)
            found = str(item["eventId"])
            with self._streams_lock:
                self._streams[stream_id.hex] = found
        return found

    def apply(
        self,
        expected: int,
        commits: Sequence[Commit],
        new_position: int,
        *,
        lease_owner: str | None = None,
    ) -> bool:
        """``lease_owner``: on a rebuild's tables, the holder of its lease."""
        writer = ReadTableChanges(self)
        committed_up_to = expected
        for n, commit in enumerate(commits):
            # Cut only between commits, so readers never see half of a command;
            # a chunk ends before it could pass DynamoDB's 100 items (the fold
            # changes at most ROWS_PER_CHANGE rows per domain event).
            bound = writer.size() + ROWS_PER_CHANGE * len(commit)
            if n and writer.size() and bound > MAX_ITEMS_PER_CHUNK:
                last = commits[n - 1][-1].position
                if not self._commit(writer, committed_up_to, last, lease_owner):
                    return False
                committed_up_to = last
                writer = ReadTableChanges(self)
            for change in commit:
                change.write(writer)
        return self._commit(writer, committed_up_to, new_position, lease_owner)

    def _commit(
        self, writer: ReadTableChanges, expected: int, position: int, lease_owner: str | None
    ) -> bool:
        items = list(writer.operations())
        tracking: TransactWriteItemTypeDef = {
            "Update": {
                "TableName": self.state_table,
                "Key": {"pk": {"S": POSITION_KEY}},
                "UpdateExpression": "SET #p = :new",
                # Exactly once: the batch applies only on top of the position
                # it was read after (a rebuild started by ``reset``); a
                # concurrent projector that got there first makes this
                # transaction fail as a whole.
                "ConditionExpression": "#p = :expected",
                "ExpressionAttributeNames": {"#p": "position"},
                "ExpressionAttributeValues": {
                    ":new": {"N": str(position)},
                    ":expected": {"N": str(expected)},
                },
            }
        }
        if lease_owner is not None:
            update: Any = tracking["Update"]
            # A rebuild's batch: only while its process holds the lease, and
            # renewing it (another process takes over a lapsed lease).
            update["UpdateExpression"] += ", #h = :now"
            update["ConditionExpression"] += " AND #o = :owner"
            update["ExpressionAttributeNames"] |= {"#h": "heartbeat", "#o": "owner"}
            update["ExpressionAttributeValues"] |= {
                ":now": {"N": repr(time.time())},
                ":owner": {"S": lease_owner},
            }
        try:
            self.client.transact_write_items(TransactItems=[*items, tracking])
        except ClientError as error:
            reasons = error.response.get("CancellationReasons", [])
            if reasons and reasons[-1].get("Code") == "ConditionalCheckFailed":
                return False
            raise _unavailable(error) from error
        except BotoCoreError as error:
            raise _unavailable(error) from error
        with self._streams_lock:
            self._streams.update(writer.streams)
        return True

    def reset(self) -> None:
        """Empties the live tables in place and restarts their catch-up at position 0
        (the fold's tests; admins rebuild with ``projections.rebuild.Rebuilder``,
        which never empties what the API serves). Appends keep folding inline
        meanwhile, so nothing may write while this runs."""
        self._put_position(0)
        self.empty()

    def empty(self) -> None:
        """Deletes every row and stream name (not the tracking or pointer items)."""
        for table, keys in (
            (self.users_table, ("userId",)),
            (self.events_table, ("eventId",)),
            (self.registrations_table, ("userId", "eventId")),
            (self.user_events_table, ("userId", "eventId")),
        ):
            kwargs: dict[str, Any] = {"TableName": table, "ProjectionExpression": ", ".join(keys)}
            while True:
                page = self.client.scan(**kwargs)
                for start in range(0, len(page["Items"]), 25):
                    batch = page["Items"][start : start + 25]
                    requests: Any = [{"DeleteRequest": {"Key": item}} for item in batch]
                    pending: Any = {table: requests}
                    while pending:
                        response = self.client.batch_write_item(RequestItems=pending)
                        pending = response.get("UnprocessedItems")
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        with self._streams_lock:
            self._streams.clear()
        self._delete_stream_names()

    def _put_position(self, position: int) -> None:
        try:
            self.client.put_item(
                TableName=self.state_table,
                Item={"pk": {"S": POSITION_KEY}, "position": {"N": str(position)}},
            )
        except (ClientError, BotoCoreError) as error:
            raise _unavailable(error) from error

    def _delete_stream_names(self) -> None:
        kwargs: dict[str, Any] = {"TableName": self.state_table, "ProjectionExpression": "pk"}
        while True:
            page = self.client.scan(**kwargs)
            for item in page["Items"]:
                if item["pk"]["S"].startswith("stream#"):
                    self.client.delete_item(TableName=self.state_table, Key={"pk": item["pk"]})
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- reads ---------------------------------------------------------------

    def _get(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            found = self.client.get_item(TableName=table, Key=key, ConsistentRead=True)
        except (ClientError, BotoCoreError) as error:
            raise _unavailable(error) from error
        item = found.get("Item")
        return _plain(item) if item else None

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item of a query, following LastEvaluatedKey."""
        while True:
            try:
                page = self.client.query(**kwargs)
            except (ClientError, BotoCoreError) as error:
                raise _unavailable(error) from error
            for item in page.get("Items", []):
                yield _plain(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _count(self, **kwargs: Any) -> int:
        total = 0
        while True:
            try:
                page = self.client.query(Select="COUNT", **kwargs)
            except (ClientError, BotoCoreError) as error:
                raise _unavailable(error) from error
            total += page.get("Count", 0)
            if "LastEvaluatedKey" not in page:
                return total
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def get_user(self, user_id: str) -> UserRow | None:
        item = self._get(self.users_table, {"userId": {"S": user_id}})
        return None if item is None else _user_row(item)

    def _waitlist(self, event_id: str) -> tuple[str, ...]:
        return tuple(
            str(item["userId"])
            for item in self._query(
                TableName=self.registrations_table,
                IndexName=ORDER_GSI,
                KeyConditionExpression="eventId = :e AND begins_with(eventOrder, :w)",
                ExpressionAttributeValues={":e": {"S": event_id}, ":w": {"S": "1#"}},
                ProjectionExpression="userId",
            )
        )

    def _event_row(self, item: dict[str, Any]) -> EventRow:
        """The row with its waitlist, as one consistent picture.

        The row (a consistent GetItem) and the waitlist (a GSI query) are two
        reads: a projector commit between them, or a GSI that lags its table,
        could pair counts with a different waitlist. So the row is read again
        after the query and the pair is kept only when the row is unchanged
        and the waitlist has as many people as the row counts (a few tries).
        """
        key = {"eventId": {"S": item["eventId"]}}
        waitlist = self._waitlist(item["eventId"])
        for _ in range(SNAPSHOT_READ_ATTEMPTS):
            again = self._get(self.events_table, key)
            if again is None:
                break
            if again == item and len(waitlist) == int(item["waitlistCount"]):
                break
            item = again
            waitlist = self._waitlist(item["eventId"])
        else:
            logger.warning("event %s: waitlist and counts did not settle", item["eventId"])
        return _event_row(item, waitlist)

    def _scan(self, table: str) -> Iterator[dict[str, Any]]:
        """Every item of a table (consistent reads), following LastEvaluatedKey."""
        kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        while True:
            try:
                page = self.client.scan(**kwargs)
            except (ClientError, BotoCoreError) as error:
                raise _unavailable(error) from error
            for item in page.get("Items", []):
                yield _plain(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def dump(self) -> MemoryTables:
        """Every row, table after table (the drift check allows for writes meanwhile)."""
        tables = MemoryTables()
        for item in self._scan(self.users_table):
            tables.users[item["userId"]] = _user_row(item)
        for item in self._scan(self.events_table):
            tables.events[item["eventId"]] = _event_row(item, ())
        for item in self._scan(self.state_table):
            if item["pk"].startswith("stream#"):
                tables.streams[UUID(item["pk"].removeprefix("stream#"))] = item["eventId"]
        for item in self._scan(self.registrations_table):
            tables.registrations[(item["userId"], item["eventId"])] = StoredRegistration(
                item["status"], int(item["sortKey"]), datetime.fromisoformat(item["registeredAt"])
            )
        for item in self._scan(self.user_events_table):
            tables.user_events.add((item["userId"], item["eventId"]))
        return tables

    def get_event(self, event_id: str) -> EventRow | None:
        item = self._get(self.events_table, {"eventId": {"S": event_id}})
        return None if item is None else self._event_row(item)

    def event_exists(self, event_id: str) -> bool:
        try:
            found = self.client.get_item(
                TableName=self.events_table,
                Key={"eventId": {"S": event_id}},
                ConsistentRead=True,
                ProjectionExpression="eventId",
            )
        except (ClientError, BotoCoreError) as error:
            raise _unavailable(error) from error
        return "Item" in found

    def list_events(self, status: str | None, limit: int, token: str | None) -> Page[EventRow]:
        # Events in eventId order come from EVENTS_GSI. A GSI query cannot be
        # ConsistentRead: an event created, deleted or given another status
        # moments ago may be missing from (or still in) the listing and the
        # total until DynamoDB updates the index, usually within a second. Each
        # listed row is then re-read consistently (``_event_row``). The total
        # and the page are two reads, so concurrent writes may make them differ.
        kwargs: dict[str, Any] = {
            "TableName": self.events_table,
            "IndexName": EVENTS_GSI,
            "KeyConditionExpression": "listing = :l",
            "ExpressionAttributeValues": {":l": {"S": EVENT_LISTING}},
        }
        if status is not None:
            kwargs["FilterExpression"] = "#s = :s"
            kwargs["ExpressionAttributeNames"] = {"#s": "status"}
            kwargs["ExpressionAttributeValues"][":s"] = {"S": status}
        total = self._count(**kwargs)
        if token is not None:
            start = decode_token(token, {"e": str})
            kwargs["ExclusiveStartKey"] = {
                "listing": {"S": EVENT_LISTING},
                "eventId": {"S": start["e"]},
            }
        items, more = self._limited(limit, **kwargs)
        rows = [self._event_row(item) for item in items]
        next_token = encode_token({"e": items[-1]["eventId"]}) if more and items else None
        return Page(items=rows, next_token=next_token, total=total)

    def _titles(self, event_ids: set[str]) -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        pending = sorted(event_ids)
        for start in range(0, len(pending), 100):
            keys = [{"eventId": {"S": e}} for e in pending[start : start + 100]]
            request: Any = {
                self.events_table: {
                    "Keys": keys,
                    "ConsistentRead": True,
                    "ProjectionExpression": "eventId, title, #d",
                    "ExpressionAttributeNames": {"#d": "date"},
                }
            }
            while request:
                try:
                    response = self.client.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as error:
                    raise _unavailable(error) from error
                for item in response.get("Responses", {}).get(self.events_table, []):
                    plain = _plain(item)
                    found[plain["eventId"]] = (plain["title"], plain["date"])
                request = response.get("UnprocessedKeys") or None
        return found

    def _position_in_waitlist(self, event_id: str, sort_key: int) -> int:
        """1 + how many wait ahead of the ticket ``sort_key`` (counted on the GSI)."""
        return self._count(
            TableName=self.registrations_table,
            IndexName=ORDER_GSI,
            KeyConditionExpression="eventId = :e AND eventOrder BETWEEN :head AND :mine",
            ExpressionAttributeValues={
                ":e": {"S": event_id},
                ":head": {"S": "1#"},
                ":mine": {"S": _order("waitlist", sort_key)},
            },
        )

    def _registration_rows(
        self, items: list[dict[str, Any]], positions: dict[str, int] | None = None
    ) -> list[RegistrationRow]:
        titles = self._titles({item["eventId"] for item in items})
        rows = []
        for item in items:
            if item["eventId"] not in titles:
                continue
            title, date = titles[item["eventId"]]
            position = None
            if item["status"] == "waitlist":
                position = (
                    positions[item["userId"]]
                    if positions is not None
                    else self._position_in_waitlist(item["eventId"], int(item["sortKey"]))
                )
            rows.append(
                RegistrationRow(
                    user_id=item["userId"],
                    event_id=item["eventId"],
                    status=item["status"],
                    registered_at=datetime.fromisoformat(item["registeredAt"]),
                    event_title=title,
                    event_date=date,
                    waitlist_position=position,
                )
            )
        return rows

    def get_registration(self, user_id: str, event_id: str) -> RegistrationRow | None:
        item = self._get(
            self.registrations_table, {"userId": {"S": user_id}, "eventId": {"S": event_id}}
        )
        rows = self._registration_rows([item]) if item else []
        return rows[0] if rows else None

    def _limited(self, limit: int, **kwargs: Any) -> tuple[list[dict[str, Any]], bool]:
        items: list[dict[str, Any]] = []
        for item in self._query(Limit=limit + 1, **kwargs):
            items.append(item)
            if len(items) > limit:
                return items[:limit], True
        return items, False

    def list_user_registrations(
        self, user_id: str, limit: int, token: str | None
    ) -> Page[RegistrationRow]:
        kwargs: dict[str, Any] = {
            "TableName": self.registrations_table,
            "KeyConditionExpression": "userId = :u",
            "ExpressionAttributeValues": {":u": {"S": user_id}},
            "ConsistentRead": True,
        }
        total = self._count(**kwargs)
        if token is not None:
            start = decode_token(token, {"e": str})
            kwargs["ExclusiveStartKey"] = {"userId": {"S": user_id}, "eventId": {"S": start["e"]}}
        items, more = self._limited(limit, **kwargs)
        rows = self._registration_rows(items)
        next_token = encode_token({"e": items[-1]["eventId"]}) if more and items else None
        return Page(items=rows, next_token=next_token, total=total)

    def registered_event_ids(self, user_id: str) -> list[str]:
        items = self._query(
            TableName=self.user_events_table,
            KeyConditionExpression="userId = :u",
            ExpressionAttributeValues={":u": {"S": user_id}},
            ProjectionExpression="eventId",
            # An audit reads what was committed.
            ConsistentRead=True,
        )
        return [str(item["eventId"]) for item in items]

    def list_event_registrations(
        self, event_id: str, limit: int, token: str | None
    ) -> Page[RegistrationRow]:
        event = self._get(self.events_table, {"eventId": {"S": event_id}})
        total = 0 if event is None else int(event["registeredCount"]) + int(event["waitlistCount"])
        kwargs: dict[str, Any] = {
            "TableName": self.registrations_table,
            "IndexName": ORDER_GSI,
            "KeyConditionExpression": "eventId = :e",
            "ExpressionAttributeValues": {":e": {"S": event_id}},
        }
        if token is not None:
            start = decode_token(token, {"o": str, "u": str})
            kwargs["ExclusiveStartKey"] = {
                "eventId": {"S": event_id},
                "eventOrder": {"S": start["o"]},
                "userId": {"S": start["u"]},
            }
        items, more = self._limited(limit, **kwargs)
        waiting = [item for item in items if item["status"] == "waitlist"]
        positions: dict[str, int] = {}
        if waiting:
            first = self._position_in_waitlist(event_id, int(waiting[0]["sortKey"]))
            positions = {item["userId"]: first + n for n, item in enumerate(waiting)}
        rows = self._registration_rows(items, positions)
        next_token = None
        if more and items:
            next_token = encode_token({"o": items[-1]["eventOrder"], "u": items[-1]["userId"]})
        return Page(items=rows, next_token=next_token, total=total)


def _unavailable(error: Exception) -> StoreUnavailableError:
    logger.error("read tables unavailable: %s", error)
    return StoreUnavailableError(f"The read tables are unavailable: {error}")
