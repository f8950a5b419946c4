"""The state-based yardstick: the same REST API on current-state rows, no events.

What a good team would build instead of an event-sourced service, so that the
benchmark can show what event sourcing costs. It is a yardstick, not the
product. Each change is one transaction that re-checks what it decided on:

- SQLite (``STORE=sqlite``, file ``$DATA_DIR/baseline.sqlite3``): WAL with
  ``synchronous=FULL`` (every commit durable, like the service), writes in
  ``BEGIN IMMEDIATE`` transactions taken in turn by the process's threads,
  reads in one snapshot each. Tables ``users``, ``events`` (with
  ``registered_count``) and ``registrations`` (status and a per-event ``seq``
  that orders the waitlist).
- DynamoDB (``STORE=dynamodb``, ``AWS_ENDPOINT_URL_DYNAMODB``, tables
  ``$DYNAMODB_TABLE_PREFIX{Users,Events,Registrations}``): the event item holds
  ``registeredCount`` and the waitlist (a list of userIds); every change that
  touches an event is one ``TransactWriteItems`` conditional on the state it
  was decided on, re-read and retried when that moved. Every call asks for
  ``ReturnConsumedCapacity``. ``DYNAMODB_SIMULATED_LATENCY_MS`` delays every
  call as the service's setting of that name does (a benchmark tool).

``GET /_stats``: requests per operation and, on DynamoDB, the capacity units
they consumed (``readUnits`` / ``writeUnits`` in ``total``): reads as DynamoDB
reports them, writes by AWS's rule through the service's own function
(``infra.dynamodb.capacity.write_units``, GSI writes included), from the
request: exact for items under 1 KB; an update of the event item once its
waitlist passes 1 KB is counted as of 1 KB (``bench.dynamodb_capacity`` and
``bench.dynamodb_census`` read the items and count it exactly).

    STORE=sqlite DATA_DIR=/tmp/b PORT=8001 python -m bench.baseline
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The service's own request and response models: every server of the benchmark
# validates and serialises exactly what the service does.
from api.schemas import (
    Event,
    EventCreate,
    EventList,
    EventUpdate,
    Registration,
    RegistrationCreate,
    RegistrationList,
    User,
    UserCreate,
)
from infra.dynamodb.capacity import learn_shapes, write_units

OPEN_STATUSES = ("active", "published")

Row = dict[str, Any]
EVENT_FIELDS = (
    "title",
    "description",
    "date",
    "location",
    "capacity",
    "organizer",
    "status",
    "waitlistEnabled",
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def user_not_found() -> ApiError:
    return ApiError(404, "USER_NOT_FOUND", "User not found")


def event_not_found() -> ApiError:
    return ApiError(404, "EVENT_NOT_FOUND", "Event not found")


def registration_not_found() -> ApiError:
    return ApiError(404, "REGISTRATION_NOT_FOUND", "No registration for this user and event")


def already(status: str) -> ApiError:
    if status == "confirmed":
        return ApiError(409, "ALREADY_REGISTERED", "The user is already registered")
    return ApiError(409, "ALREADY_ON_WAITLIST", "The user is already on the waitlist")


def not_open() -> ApiError:
    return ApiError(409, "EVENT_NOT_OPEN", "The event is not open for registration")


def event_full() -> ApiError:
    return ApiError(409, "EVENT_FULL", "The event is full and has no waitlist")


def capacity_below(count: int) -> ApiError:
    return ApiError(409, "CAPACITY_BELOW_REGISTERED", f"{count} are registered already")


def contention() -> ApiError:
    return ApiError(409, "CONCURRENT_MODIFICATION", "Too much contention on this event, retry")


def event_view(event: Row, waitlist: list[str]) -> Row:
    return {
        **event,
        "waitlist": waitlist,
        "waitlistCount": len(waitlist),
        "availableSpots": max(0, event["capacity"] - event["registeredCount"]),
    }


def registration_view(
    user_id: str, event_id: str, status: str, at: str, event: Row, position: int | None
) -> Row:
    view = {
        "userId": user_id,
        "eventId": event_id,
        "status": status,
        "registeredAt": at,
        "eventTitle": event["title"],
        "eventDate": event["date"],
    }
    if status == "waitlist":
        view["waitlistPosition"] = position
    return view


class Stats:
    """Requests per operation; on DynamoDB also the capacity units they consumed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops: dict[str, dict[str, float]] = {}

    def bump(self, op: str, **counts: float) -> None:
        with self.lock:
            entry = self.ops.setdefault(
                op, {"requests": 0, "calls": 0, "readUnits": 0.0, "writeUnits": 0.0, "retries": 0}
            )
            for key, value in counts.items():
                entry[key] += value

    def snapshot(self, store: str) -> Row:
        with self.lock:
            ops = {name: dict(entry) for name, entry in self.ops.items()}
        keys = ("requests", "calls", "readUnits", "writeUnits", "retries")
        total = {k: sum(entry[k] for entry in ops.values()) for k in keys}
        return {"store": store, "ops": ops, "total": total}


STATS = Stats()


class Store(Protocol):
    def create_user(self, body: UserCreate) -> Row: ...
    def get_user(self, user_id: str) -> Row: ...
    def create_event(self, body: EventCreate) -> Row: ...
    def get_event(self, event_id: str) -> Row: ...
    def list_events(self, status: str | None, limit: int) -> tuple[list[Row], int]:
        """The first ``limit`` events (with ``status``) and how many there are in all."""
        ...

    def update_event(self, event_id: str, body: EventUpdate) -> Row: ...
    def delete_event(self, event_id: str) -> None: ...
    def register(self, user_id: str, event_id: str) -> Row: ...
    def leave(self, user_id: str, event_id: str) -> None: ...
    def get_registration(self, user_id: str, event_id: str) -> Row: ...
    def user_registrations(self, user_id: str) -> list[Row]: ...
    def event_registrations(self, event_id: str) -> list[Row]: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


def _changes(body: EventUpdate) -> Row:
    data = body.model_dump(by_alias=True, exclude_unset=True)
    return {k: v for k, v in data.items() if v is not None}


# ---- SQLite ---------------------------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
  user_id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  event_id TEXT PRIMARY KEY, title TEXT NOT NULL, description TEXT NOT NULL, date TEXT NOT NULL,
  location TEXT, capacity INTEGER NOT NULL CHECK (capacity > 0), organizer TEXT,
  status TEXT NOT NULL, waitlist_enabled INTEGER NOT NULL,
  registered_count INTEGER NOT NULL DEFAULT 0
    CHECK (registered_count >= 0 AND registered_count <= capacity),
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS registrations (
  user_id TEXT NOT NULL REFERENCES users(user_id),
  event_id TEXT NOT NULL REFERENCES events(event_id),
  status TEXT NOT NULL CHECK (status IN ('confirmed', 'waitlist')), seq INTEGER NOT NULL,
  registered_at TEXT NOT NULL, PRIMARY KEY (user_id, event_id));
CREATE INDEX IF NOT EXISTS registrations_by_event ON registrations(event_id, status, seq);
"""

SQL_COLUMNS = {
    "title": "title",
    "description": "description",
    "date": "date",
    "location": "location",
    "capacity": "capacity",
    "organizer": "organizer",
    "status": "status",
    "waitlistEnabled": "waitlist_enabled",
}


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.local = threading.local()
        self.connections: list[sqlite3.Connection] = []
        # The process's threads take turns to write; BEGIN IMMEDIATE guards across processes.
        self.write_lock = threading.Lock()
        self._connection().executescript(SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self.local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path, isolation_level=None, timeout=30, check_same_thread=False
            )
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA foreign_keys=ON")
            self.local.connection = connection
            self.connections.append(connection)
        return connection

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        if write:
            self.write_lock.acquire()
        try:
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            if write:
                self.write_lock.release()

    @staticmethod
    def _event(row: sqlite3.Row) -> Row:
        return {
            "eventId": row["event_id"],
            "title": row["title"],
            "description": row["description"],
            "date": row["date"],
            "location": row["location"],
            "capacity": row["capacity"],
            "organizer": row["organizer"],
            "status": row["status"],
            "waitlistEnabled": bool(row["waitlist_enabled"]),
            "registeredCount": row["registered_count"],
            "createdAt": row["created_at"],
            "updatedAt": row["updated_at"],
        }

    @staticmethod
    def _waitlist(c: sqlite3.Connection, event_id: str) -> list[str]:
        rows = c.execute(
            "SELECT user_id FROM registrations WHERE event_id = ? AND status = 'waitlist' "
            "ORDER BY seq",
            (event_id,),
        )
        return [r[0] for r in rows]

    @staticmethod
    def _position(c: sqlite3.Connection, event_id: str, seq: int) -> int:
        row = c.execute(
            "SELECT COUNT(*) FROM registrations WHERE event_id = ? AND status = 'waitlist' "
            "AND seq <= ?",
            (event_id, seq),
        ).fetchone()
        return int(row[0])

    def _load_event(self, c: sqlite3.Connection, event_id: str) -> Row:
        row = c.execute("SELECT * FROM events WHERE event_id = ?", (event_id,)).fetchone()
        if row is None:
            raise event_not_found()
        return self._event(row)

    def _event_view(self, c: sqlite3.Connection, event_id: str) -> Row:
        return event_view(self._load_event(c, event_id), self._waitlist(c, event_id))

    def create_user(self, body: UserCreate) -> Row:
        STATS.bump("createUser", requests=1)
        at = now_iso()
        with self._transaction(write=True) as c:
            try:
                c.execute(
                    "INSERT INTO users VALUES (?, ?, ?, ?)", (body.user_id, body.name, at, at)
                )
            except sqlite3.IntegrityError:
                raise ApiError(409, "DUPLICATE_USER", "The userId is taken") from None
        return {"userId": body.user_id, "name": body.name, "createdAt": at, "updatedAt": at}

    def get_user(self, user_id: str) -> Row:
        STATS.bump("getUser", requests=1)
        row = self._connection().execute("SELECT * FROM users WHERE user_id = ?", (user_id,))
        found = row.fetchone()
        if found is None:
            raise user_not_found()
        return {
            "userId": found["user_id"],
            "name": found["name"],
            "createdAt": found["created_at"],
            "updatedAt": found["updated_at"],
        }

    def create_event(self, body: EventCreate) -> Row:
        STATS.bump("createEvent", requests=1)
        at, event_id = now_iso(), body.event_id or str(uuid.uuid4())
        with self._transaction(write=True) as c:
            try:
                c.execute(
                    "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                    (
                        event_id,
                        body.title,
                        body.description,
                        body.date,
                        body.location,
                        body.capacity,
                        body.organizer,
                        body.status,
                        int(body.waitlist_enabled),
                        at,
                        at,
                    ),
                )
            except sqlite3.IntegrityError:
                raise ApiError(409, "DUPLICATE_EVENT", "The eventId is taken") from None
            return event_view(self._load_event(c, event_id), [])

    def get_event(self, event_id: str) -> Row:
        STATS.bump("getEvent", requests=1)
        with self._transaction(write=False) as c:
            return self._event_view(c, event_id)

    def list_events(self, status: str | None, limit: int) -> tuple[list[Row], int]:
        STATS.bump("listEvents", requests=1)
        with self._transaction(write=False) as c:
            where, args = ("WHERE status = ?", (status, limit)) if status else ("", (limit,))
            rows = c.execute(
                f"SELECT event_id FROM events {where} ORDER BY event_id LIMIT ?",
                args,
            ).fetchall()
            total = c.execute(f"SELECT COUNT(*) FROM events {where}", args[:-1]).fetchone()[0]
            return [self._event_view(c, r[0]) for r in rows], int(total)

    def update_event(self, event_id: str, body: EventUpdate) -> Row:
        STATS.bump("updateEvent", requests=1)
        changes = _changes(body)
        with self._transaction(write=True) as c:
            event = self._load_event(c, event_id)
            if changes.get("capacity", event["capacity"]) < event["registeredCount"]:
                raise capacity_below(event["registeredCount"])
            if changes:
                sets = ", ".join(f"{SQL_COLUMNS[k]} = ?" for k in changes)
                values = [int(v) if isinstance(v, bool) else v for v in changes.values()]
                c.execute(
                    f"UPDATE events SET {sets}, updated_at = ? WHERE event_id = ?",
                    (*values, now_iso(), event_id),
                )
            self._promote(c, event_id)
            return self._event_view(c, event_id)

    def delete_event(self, event_id: str) -> None:
        STATS.bump("deleteEvent", requests=1)
        with self._transaction(write=True) as c:
            self._load_event(c, event_id)
            taken = c.execute(
                "SELECT 1 FROM registrations WHERE event_id = ? LIMIT 1", (event_id,)
            ).fetchone()
            if taken is not None:
                raise ApiError(409, "EVENT_HAS_REGISTRATIONS", "People are registered")
            c.execute("DELETE FROM events WHERE event_id = ?", (event_id,))

    @staticmethod
    def _promote(c: sqlite3.Connection, event_id: str) -> None:
        """Moves the head of the waitlist into free seats, in the caller's transaction."""
        while True:
            count, capacity = c.execute(
                "SELECT registered_count, capacity FROM events WHERE event_id = ?", (event_id,)
            ).fetchone()
            if count >= capacity:
                return
            head = c.execute(
                "SELECT user_id FROM registrations WHERE event_id = ? AND status = 'waitlist' "
                "ORDER BY seq LIMIT 1",
                (event_id,),
            ).fetchone()
            if head is None:
                return
            c.execute(
                "UPDATE registrations SET status = 'confirmed' WHERE user_id = ? AND event_id = ?",
                (head[0], event_id),
            )
            c.execute(
                "UPDATE events SET registered_count = registered_count + 1 WHERE event_id = ?",
                (event_id,),
            )

    def register(self, user_id: str, event_id: str) -> Row:
        STATS.bump("register", requests=1)
        with self._transaction(write=True) as c:
            if c.execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,)).fetchone() is None:
                raise user_not_found()
            event = self._load_event(c, event_id)
            if event["status"] not in OPEN_STATUSES:
                raise not_open()
            previous = c.execute(
                "SELECT status FROM registrations WHERE user_id = ? AND event_id = ?",
                (user_id, event_id),
            ).fetchone()
            if previous is not None:
                raise already(previous[0])
            someone_waits = c.execute(
                "SELECT 1 FROM registrations WHERE event_id = ? AND status = 'waitlist' LIMIT 1",
                (event_id,),
            ).fetchone()
            if event["registeredCount"] < event["capacity"] and someone_waits is None:
                status = "confirmed"
                c.execute(
                    "UPDATE events SET registered_count = registered_count + 1 WHERE event_id = ?",
                    (event_id,),
                )
            elif event["waitlistEnabled"]:
                status = "waitlist"
            else:
                raise event_full()
            seq = c.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM registrations "
                "WHERE event_id = ? AND status = ?",
                (event_id, status),
            ).fetchone()[0]
            at = now_iso()
            c.execute(
                "INSERT INTO registrations VALUES (?, ?, ?, ?, ?)",
                (user_id, event_id, status, seq, at),
            )
            position = self._position(c, event_id, seq) if status == "waitlist" else None
        return registration_view(user_id, event_id, status, at, event, position)

    def leave(self, user_id: str, event_id: str) -> None:
        STATS.bump("leave", requests=1)
        with self._transaction(write=True) as c:
            previous = c.execute(
                "SELECT status FROM registrations WHERE user_id = ? AND event_id = ?",
                (user_id, event_id),
            ).fetchone()
            if previous is None:
                raise registration_not_found()
            c.execute(
                "DELETE FROM registrations WHERE user_id = ? AND event_id = ?", (user_id, event_id)
            )
            if previous[0] == "confirmed":
                c.execute(
                    "UPDATE events SET registered_count = registered_count - 1 WHERE event_id = ?",
                    (event_id,),
                )
                self._promote(c, event_id)

    def get_registration(self, user_id: str, event_id: str) -> Row:
        STATS.bump("getRegistration", requests=1)
        with self._transaction(write=False) as c:
            row = c.execute(
                "SELECT status, seq, registered_at FROM registrations "
                "WHERE user_id = ? AND event_id = ?",
                (user_id, event_id),
            ).fetchone()
            if row is None:
                raise registration_not_found()
            event = self._load_event(c, event_id)
            position = self._position(c, event_id, row[1]) if row[0] == "waitlist" else None
        return registration_view(user_id, event_id, row[0], row[2], event, position)

    def user_registrations(self, user_id: str) -> list[Row]:
        STATS.bump("userRegistrations", requests=1)
        with self._transaction(write=False) as c:
            if c.execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,)).fetchone() is None:
                raise user_not_found()
            rows = c.execute(
                "SELECT r.event_id, r.status, r.registered_at, e.title, e.date "
                "FROM registrations r JOIN events e USING (event_id) WHERE r.user_id = ? "
                "ORDER BY r.event_id",
                (user_id,),
            ).fetchall()
        return [
            registration_view(user_id, r[0], r[1], r[2], {"title": r[3], "date": r[4]}, None)
            for r in rows
        ]

    def event_registrations(self, event_id: str) -> list[Row]:
        STATS.bump("eventRegistrations", requests=1)
        with self._transaction(write=False) as c:
            event = self._load_event(c, event_id)
            rows = c.execute(
                "SELECT user_id, status, registered_at FROM registrations WHERE event_id = ? "
                "ORDER BY status, seq",
                (event_id,),
            ).fetchall()
        out, waiting = [], 0
        for user_id, status, at in rows:
            waiting += status == "waitlist"
            out.append(registration_view(user_id, event_id, status, at, event, waiting))
        return out

    def ping(self) -> None:
        self._connection().execute("SELECT 1").fetchone()

    def close(self) -> None:
        for connection in self.connections:
            connection.close()


# ---- DynamoDB -------------------------------------------------------------------------------

READ_CALLS = frozenset({"get_item", "query", "scan", "batch_get_item", "transact_get_items"})
PROMOTE_AT_ONCE = 90  # items per transaction stay under DynamoDB's 100


class DynamoStore:
    """Users(userId), Events(eventId; registeredCount, waitlist), Registrations(userId, eventId;
    GSI byEvent). Every change touching an event is one TransactWriteItems whose conditions
    re-check what the decision was based on; a cancelled one is re-read and decided again."""

    def __init__(self) -> None:
        import boto3
        from botocore.config import Config

        from infra.devtools.simulated_latency import add_simulated_latency, latency_from_env

        self.client: Any = boto3.session.Session().client(
            "dynamodb",
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or None,
            region_name=os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1",
            config=Config(max_pool_connections=64, retries={"max_attempts": 5, "mode": "standard"}),
        )
        # Measured alike with the service: the same simulated round trip per call.
        add_simulated_latency(self.client, latency_from_env(os.environ))
        self.cancelled = self.client.exceptions.TransactionCanceledException
        self.condition_failed = self.client.exceptions.ConditionalCheckFailedException
        prefix = os.environ.get("DYNAMODB_TABLE_PREFIX", "baseline-")
        self.users, self.events = f"{prefix}Users", f"{prefix}Events"
        self.registrations = f"{prefix}Registrations"
        self.max_attempts = 64
        self._create_tables()

    def _call(self, op: str, method: str, **params: Any) -> Any:
        params["ReturnConsumedCapacity"] = "TOTAL"
        try:
            response = getattr(self.client, method)(**params)
        except self.client.exceptions.ClientError as e:
            self._account(op, method, params, e.response.get("ConsumedCapacity"), written=False)
            raise
        self._account(op, method, params, response.get("ConsumedCapacity"), written=True)
        return response

    def _account(self, op: str, method: str, params: Row, consumed: Any, *, written: bool) -> None:
        """Reads as DynamoDB reports them; writes by AWS's rule, the service's
        own function (``infra.dynamodb.capacity``), GSI writes included."""
        if method in READ_CALLS:
            entries = consumed if isinstance(consumed, list) else [consumed] if consumed else []
            units = sum(float(e.get("CapacityUnits", 0.0)) for e in entries)
            STATS.bump(op, calls=1, readUnits=units)
            return
        operation = self.client.meta.method_to_api_mapping[method]
        units = sum(write_units(operation, params).values()) if written else 0.0
        STATS.bump(op, calls=1, writeUnits=units)

    def _create_tables(self) -> None:
        existing = set(self.client.list_tables().get("TableNames", []))
        by_event = {
            "IndexName": "byEvent",
            "Projection": {"ProjectionType": "ALL"},
            "KeySchema": [
                {"AttributeName": "eventId", "KeyType": "HASH"},
                {"AttributeName": "userId", "KeyType": "RANGE"},
            ],
        }
        specs: list[tuple[str, list[tuple[str, str]], list[Row]]] = [
            (self.users, [("userId", "HASH")], []),
            (self.events, [("eventId", "HASH")], []),
            (self.registrations, [("userId", "HASH"), ("eventId", "RANGE")], [by_event]),
        ]
        for name, keys, indexes in specs:
            if name in existing:
                continue
            extra = {"GlobalSecondaryIndexes": indexes} if indexes else {}
            with suppress(self.client.exceptions.ResourceInUseException):
                self.client.create_table(
                    TableName=name,
                    BillingMode="PAY_PER_REQUEST",
                    KeySchema=[{"AttributeName": a, "KeyType": t} for a, t in keys],
                    AttributeDefinitions=[
                        {"AttributeName": a, "AttributeType": "S"} for a, _ in keys
                    ],
                    **extra,
                )
        for name, _, _ in specs:
            self.client.get_waiter("table_exists").wait(
                TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        # The write rule needs each table's keys and GSIs (with their projections).
        learn_shapes(self.client, [name for name, _, _ in specs])

    @staticmethod
    def _backoff(attempt: int) -> None:
        time.sleep(random.uniform(0, min(0.05, 0.002 * 2 ** min(attempt, 5))))

    @staticmethod
    def _s(value: str | None) -> Row:
        return {"NULL": True} if value is None else {"S": value}

    @staticmethod
    def _event(item: Row) -> Row:
        def text(key: str) -> str | None:
            return item[key].get("S") if key in item else None

        return {
            "eventId": text("eventId"),
            "title": text("title"),
            "description": text("description") or "",
            "date": text("date"),
            "location": text("location"),
            "capacity": int(item["capacity"]["N"]),
            "organizer": text("organizer"),
            "status": text("status"),
            "waitlistEnabled": item["waitlistEnabled"]["BOOL"],
            "registeredCount": int(item["registeredCount"]["N"]),
            "waitlist": [x["S"] for x in item.get("waitlist", {}).get("L", [])],
            "createdAt": text("createdAt"),
            "updatedAt": text("updatedAt"),
        }

    def _get_event(self, op: str, event_id: str) -> Row:
        item = self._call(
            op,
            "get_item",
            TableName=self.events,
            Key={"eventId": {"S": event_id}},
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            raise event_not_found()
        return self._event(item)

    def _user_exists(self, op: str, user_id: str) -> bool:
        response = self._call(
            op,
            "get_item",
            TableName=self.users,
            Key={"userId": {"S": user_id}},
            ConsistentRead=True,
            ProjectionExpression="userId",
        )
        return "Item" in response

    def _get_registration(self, op: str, user_id: str, event_id: str) -> Row | None:
        item: Row | None = self._call(
            op,
            "get_item",
            TableName=self.registrations,
            ConsistentRead=True,
            Key={"userId": {"S": user_id}, "eventId": {"S": event_id}},
        ).get("Item")
        return item

    @staticmethod
    def _view(event: Row) -> Row:
        waitlist = event.pop("waitlist")
        return event_view(event, waitlist)

    def create_user(self, body: UserCreate) -> Row:
        STATS.bump("createUser", requests=1)
        at = now_iso()
        try:
            self._call(
                "createUser",
                "put_item",
                TableName=self.users,
                ConditionExpression="attribute_not_exists(userId)",
                Item={
                    "userId": {"S": body.user_id},
                    "name": {"S": body.name},
                    "createdAt": {"S": at},
                    "updatedAt": {"S": at},
                },
            )
        except self.condition_failed:
            raise ApiError(409, "DUPLICATE_USER", "The userId is taken") from None
        return {"userId": body.user_id, "name": body.name, "createdAt": at, "updatedAt": at}

    def get_user(self, user_id: str) -> Row:
        STATS.bump("getUser", requests=1)
        item = self._call(
            "getUser",
            "get_item",
            TableName=self.users,
            Key={"userId": {"S": user_id}},
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            raise user_not_found()
        return {k: item[k]["S"] for k in ("userId", "name", "createdAt", "updatedAt")}

    def create_event(self, body: EventCreate) -> Row:
        STATS.bump("createEvent", requests=1)
        at, event_id = now_iso(), body.event_id or str(uuid.uuid4())
        item = {
            "eventId": {"S": event_id},
            "title": {"S": body.title},
            "description": {"S": body.description},
            "date": {"S": body.date},
            "location": self._s(body.location),
            "capacity": {"N": str(body.capacity)},
            "organizer": self._s(body.organizer),
            "status": {"S": body.status},
            "waitlistEnabled": {"BOOL": body.waitlist_enabled},
            "registeredCount": {"N": "0"},
            "waitlist": {"L": []},
            "createdAt": {"S": at},
            "updatedAt": {"S": at},
        }
        try:
            self._call(
                "createEvent",
                "put_item",
                TableName=self.events,
                Item=item,
                ConditionExpression="attribute_not_exists(eventId)",
            )
        except self.condition_failed:
            raise ApiError(409, "DUPLICATE_EVENT", "The eventId is taken") from None
        return self._view(self._event(item))

    def get_event(self, event_id: str) -> Row:
        STATS.bump("getEvent", requests=1)
        return self._view(self._get_event("getEvent", event_id))

    def list_events(self, status: str | None, limit: int) -> tuple[list[Row], int]:
        STATS.bump("listEvents", requests=1)
        params: Row = {"TableName": self.events}
        if status:
            params |= {
                "FilterExpression": "#s = :s",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":s": {"S": status}},
            }
        events: list[Row] = []
        while True:
            response = self._call("listEvents", "scan", **params)
            events += [self._event(i) for i in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        events.sort(key=lambda e: e["eventId"])
        return [self._view(e) for e in events[:limit]], len(events)

    def _promotions(self, event_id: str, heads: list[str], at: str) -> list[Row]:
        return [
            {
                "Update": {
                    "TableName": self.registrations,
                    "Key": {"userId": {"S": head}, "eventId": {"S": event_id}},
                    "UpdateExpression": "SET #s = :confirmed, promotedAt = :at",
                    "ConditionExpression": "#s = :waitlist",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {
                        ":confirmed": {"S": "confirmed"},
                        ":waitlist": {"S": "waitlist"},
                        ":at": {"S": at},
                    },
                }
            }
            for head in heads
        ]

    def update_event(self, event_id: str, body: EventUpdate) -> Row:
        op = "updateEvent"
        STATS.bump(op, requests=1)
        changes = _changes(body)
        for attempt in range(self.max_attempts):
            event = self._get_event(op, event_id)
            count, waitlist = event["registeredCount"], event["waitlist"]
            capacity = changes.get("capacity", event["capacity"])
            if capacity < count:
                raise capacity_below(count)
            heads = waitlist[: max(0, min(capacity - count, len(waitlist), PROMOTE_AT_ONCE))]
            at = now_iso()
            names = {"#updatedAt": "updatedAt", "#rc": "registeredCount"}
            values: Row = {":at": {"S": at}, ":count": {"N": str(count)}}
            sets = ["#updatedAt = :at"]
            for i, (key, value) in enumerate(changes.items()):
                names[f"#f{i}"] = key
                if isinstance(value, bool):
                    values[f":v{i}"] = {"BOOL": value}
                elif isinstance(value, int):
                    values[f":v{i}"] = {"N": str(value)}
                else:
                    values[f":v{i}"] = {"S": value}
                sets.append(f"#f{i} = :v{i}")
            conditions = ["attribute_exists(eventId)", "#rc = :count"]
            remove = ""
            if heads:
                values[":n"] = {"N": str(len(heads))}
                sets.append("#rc = #rc + :n")
                for i, head in enumerate(heads):
                    values[f":h{i}"] = {"S": head}
                    conditions.append(f"waitlist[{i}] = :h{i}")
                remove = " REMOVE " + ", ".join(f"waitlist[{i}]" for i in range(len(heads)))
            update = {
                "TableName": self.events,
                "Key": {"eventId": {"S": event_id}},
                "UpdateExpression": "SET " + ", ".join(sets) + remove,
                "ConditionExpression": " AND ".join(conditions),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
            try:
                if heads:
                    items = [{"Update": update}, *self._promotions(event_id, heads, at)]
                    self._call(op, "transact_write_items", TransactItems=items)
                else:
                    self._call(op, "update_item", **update)
            except (self.cancelled, self.condition_failed):
                STATS.bump(op, retries=1)
                self._backoff(attempt)
                continue
            self._fill(op, event_id)  # more than PROMOTE_AT_ONCE seats opened at once
            return self._view(self._get_event(op, event_id))
        raise contention()

    def _fill(self, op: str, event_id: str) -> None:
        for attempt in range(self.max_attempts):
            event = self._get_event(op, event_id)
            waitlist, count = event["waitlist"], event["registeredCount"]
            free = event["capacity"] - count
            heads = waitlist[: max(0, min(free, len(waitlist), PROMOTE_AT_ONCE))]
            if not heads:
                return
            values: Row = {":count": {"N": str(count)}, ":n": {"N": str(len(heads))}}
            values |= {f":h{i}": {"S": h} for i, h in enumerate(heads)}
            update = {
                "TableName": self.events,
                "Key": {"eventId": {"S": event_id}},
                "UpdateExpression": "SET #rc = #rc + :n REMOVE "
                + ", ".join(f"waitlist[{i}]" for i in range(len(heads))),
                "ConditionExpression": " AND ".join(
                    ["#rc = :count"] + [f"waitlist[{i}] = :h{i}" for i in range(len(heads))]
                ),
                "ExpressionAttributeNames": {"#rc": "registeredCount"},
                "ExpressionAttributeValues": values,
            }
            items = [{"Update": update}, *self._promotions(event_id, heads, now_iso())]
            try:
                self._call(op, "transact_write_items", TransactItems=items)
            except self.cancelled:
                STATS.bump(op, retries=1)
                self._backoff(attempt)

    def register(self, user_id: str, event_id: str) -> Row:
        op = "register"
        STATS.bump(op, requests=1)
        if not self._user_exists(op, user_id):
            raise user_not_found()
        for attempt in range(self.max_attempts):
            event = self._get_event(op, event_id)
            if event["status"] not in OPEN_STATUSES:
                raise not_open()
            count, capacity, waitlist = (
                event["registeredCount"],
                event["capacity"],
                event["waitlist"],
            )
            if user_id in waitlist:
                raise already("waitlist")
            names = {"#rc": "registeredCount", "#cap": "capacity", "#st": "status"}
            values: Row = {":open1": {"S": OPEN_STATUSES[0]}, ":open2": {"S": OPEN_STATUSES[1]}}
            is_open = "#st IN (:open1, :open2)"
            if count < capacity and not waitlist:
                status = "confirmed"
                update = {
                    "UpdateExpression": "SET #rc = #rc + :one",
                    "ConditionExpression": f"{is_open} AND #rc < #cap AND size(waitlist) = :zero",
                    "ExpressionAttributeValues": values | {":one": {"N": "1"}, ":zero": {"N": "0"}},
                }
            elif event["waitlistEnabled"]:
                status = "waitlist"
                names["#we"] = "waitlistEnabled"
                update = {
                    "UpdateExpression": "SET waitlist = list_append(waitlist, :me)",
                    "ConditionExpression": f"{is_open} AND #we = :true AND "
                    "(#rc >= #cap OR size(waitlist) > :zero) AND NOT contains(waitlist, :user)",
                    "ExpressionAttributeValues": values
                    | {
                        ":me": {"L": [{"S": user_id}]},
                        ":user": {"S": user_id},
                        ":true": {"BOOL": True},
                        ":zero": {"N": "0"},
                    },
                }
            else:
                previous = self._get_registration(op, user_id, event_id)
                if previous is not None:
                    raise already(previous["status"]["S"])
                raise event_full()
            at = now_iso()
            items = [
                {
                    "Update": {
                        "TableName": self.events,
                        "Key": {"eventId": {"S": event_id}},
                        "ExpressionAttributeNames": names,
                        **update,
                    }
                },
                {
                    "Put": {
                        "TableName": self.registrations,
                        "ConditionExpression": "attribute_not_exists(userId)",
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        "Item": {
                            "userId": {"S": user_id},
                            "eventId": {"S": event_id},
                            "status": {"S": status},
                            "registeredAt": {"S": at},
                        },
                    }
                },
            ]
            try:
                self._call(op, "transact_write_items", TransactItems=items)
            except self.cancelled as e:
                reasons: list[Any] = e.response.get("CancellationReasons") or [{}, {}]
                if reasons[1].get("Code") == "ConditionalCheckFailed":
                    old = reasons[1].get("Item") or self._get_registration(op, user_id, event_id)
                    raise already(old["status"]["S"] if old else status) from None
                STATS.bump(op, retries=1)
                if any(r.get("Code") == "TransactionConflict" for r in reasons):
                    self._backoff(attempt)
                continue  # the event moved on: read it again and decide again
            position = len(waitlist) + 1 if status == "waitlist" else None
            return registration_view(user_id, event_id, status, at, event, position)
        raise contention()

    def leave(self, user_id: str, event_id: str) -> None:
        op = "leave"
        STATS.bump(op, requests=1)
        for attempt in range(self.max_attempts):
            previous = self._get_registration(op, user_id, event_id)
            if previous is None:
                raise registration_not_found()
            status = previous["status"]["S"]
            event = self._get_event(op, event_id)
            waitlist = event["waitlist"]
            event_key = {"TableName": self.events, "Key": {"eventId": {"S": event_id}}}
            delete = {
                "Delete": {
                    "TableName": self.registrations,
                    "Key": {"userId": {"S": user_id}, "eventId": {"S": event_id}},
                    "ConditionExpression": "#s = :status",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":status": {"S": status}},
                }
            }
            at = now_iso()
            if status == "waitlist":
                if user_id not in waitlist:  # a promotion is under way: read again
                    STATS.bump(op, retries=1)
                    self._backoff(attempt)
                    continue
                i = waitlist.index(user_id)
                change = {
                    **event_key,
                    "UpdateExpression": f"REMOVE waitlist[{i}] SET updatedAt = :at",
                    "ConditionExpression": f"waitlist[{i}] = :user",
                    "ExpressionAttributeValues": {":user": {"S": user_id}, ":at": {"S": at}},
                }
                items = [delete, {"Update": change}]
            elif waitlist:  # the freed seat goes to the head of the waitlist, in the same step
                change = {
                    **event_key,
                    "UpdateExpression": "REMOVE waitlist[0] SET updatedAt = :at",
                    "ConditionExpression": "waitlist[0] = :head",
                    "ExpressionAttributeValues": {":head": {"S": waitlist[0]}, ":at": {"S": at}},
                }
                items = [delete, {"Update": change}, *self._promotions(event_id, waitlist[:1], at)]
            else:
                change = {
                    **event_key,
                    "UpdateExpression": "SET #rc = #rc - :one, updatedAt = :at",
                    "ConditionExpression": "size(waitlist) = :zero AND #rc > :zero",
                    "ExpressionAttributeNames": {"#rc": "registeredCount"},
                    "ExpressionAttributeValues": {
                        ":one": {"N": "1"},
                        ":zero": {"N": "0"},
                        ":at": {"S": at},
                    },
                }
                items = [delete, {"Update": change}]
            try:
                self._call(op, "transact_write_items", TransactItems=items)
            except self.cancelled as e:
                STATS.bump(op, retries=1)
                reasons = e.response.get("CancellationReasons") or []
                if any(r.get("Code") == "TransactionConflict" for r in reasons):
                    self._backoff(attempt)
                continue
            return
        raise contention()

    def delete_event(self, event_id: str) -> None:
        STATS.bump("deleteEvent", requests=1)
        try:
            self._call(
                "deleteEvent",
                "delete_item",
                TableName=self.events,
                Key={"eventId": {"S": event_id}},
                ConditionExpression="attribute_exists(eventId) AND "
                "registeredCount = :zero AND size(waitlist) = :zero",
                ExpressionAttributeValues={":zero": {"N": "0"}},
            )
        except self.condition_failed:
            self._get_event("deleteEvent", event_id)  # 404 when it is gone
            raise ApiError(409, "EVENT_HAS_REGISTRATIONS", "People are registered") from None

    def get_registration(self, user_id: str, event_id: str) -> Row:
        op = "getRegistration"
        STATS.bump(op, requests=1)
        item = self._get_registration(op, user_id, event_id)
        if item is None:
            raise registration_not_found()
        event = self._get_event(op, event_id)
        status = item["status"]["S"]
        waitlist = event["waitlist"]
        position = waitlist.index(user_id) + 1 if user_id in waitlist else None
        return registration_view(
            user_id, event_id, status, item["registeredAt"]["S"], event, position
        )

    def _titles(self, op: str, event_ids: list[str]) -> dict[str, Row]:
        out: dict[str, Row] = {}
        ids = list(dict.fromkeys(event_ids))
        for i in range(0, len(ids), 100):
            request: Row | None = {
                self.events: {
                    "Keys": [{"eventId": {"S": e}} for e in ids[i : i + 100]],
                    "ConsistentRead": True,
                    "ProjectionExpression": "eventId, title, #d",
                    "ExpressionAttributeNames": {"#d": "date"},
                }
            }
            while request:
                response = self._call(op, "batch_get_item", RequestItems=request)
                for item in response["Responses"].get(self.events, []):
                    out[item["eventId"]["S"]] = {
                        "title": item["title"]["S"],
                        "date": item["date"]["S"],
                    }
                request = response.get("UnprocessedKeys") or None
        return out

    def _query(self, op: str, **params: Any) -> list[Row]:
        items: list[Row] = []
        while True:
            response = self._call(op, "query", **params)
            items += response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return items
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def user_registrations(self, user_id: str) -> list[Row]:
        op = "userRegistrations"
        STATS.bump(op, requests=1)
        if not self._user_exists(op, user_id):
            raise user_not_found()
        items = self._query(
            op,
            TableName=self.registrations,
            ConsistentRead=True,
            KeyConditionExpression="userId = :u",
            ExpressionAttributeValues={":u": {"S": user_id}},
        )
        titles = self._titles(op, [i["eventId"]["S"] for i in items]) if items else {}
        return [
            registration_view(
                user_id,
                i["eventId"]["S"],
                i["status"]["S"],
                i["registeredAt"]["S"],
                titles.get(i["eventId"]["S"], {"title": "", "date": ""}),
                None,
            )
            for i in items
        ]

    def event_registrations(self, event_id: str) -> list[Row]:
        op = "eventRegistrations"
        STATS.bump(op, requests=1)
        event = self._get_event(op, event_id)
        items = self._query(
            op,
            TableName=self.registrations,
            IndexName="byEvent",
            KeyConditionExpression="eventId = :e",
            ExpressionAttributeValues={":e": {"S": event_id}},
        )
        place = {u: i for i, u in enumerate(event["waitlist"])}
        items.sort(
            key=lambda i: (
                i["status"]["S"] != "confirmed",
                place.get(i["userId"]["S"], 0),
                i["registeredAt"]["S"],
            )
        )
        return [
            registration_view(
                i["userId"]["S"],
                event_id,
                i["status"]["S"],
                i["registeredAt"]["S"],
                event,
                place.get(i["userId"]["S"], 0) + 1,
            )
            for i in items
        ]

    def ping(self) -> None:
        self.client.describe_table(TableName=self.events)

    def close(self) -> None:
        self.client.close()


# ---- HTTP -----------------------------------------------------------------------------------


def make_store() -> tuple[str, Store]:
    kind = os.environ.get("STORE", "sqlite").lower()
    if kind == "dynamodb":
        return kind, DynamoStore()
    if kind != "sqlite":
        msg = f"unknown STORE={kind!r} (sqlite or dynamodb)"
        raise SystemExit(msg)
    data_dir = Path(os.environ.get("DATA_DIR", "data"))
    data_dir.mkdir(parents=True, exist_ok=True)
    return kind, SqliteStore(data_dir / "baseline.sqlite3")


class _State:
    kind = "sqlite"
    store: Store | None = None


STATE = _State()


def store() -> Store:
    assert STATE.store is not None, "the app has not started"
    return STATE.store


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    STATE.kind, STATE.store = make_store()
    try:
        yield
    finally:
        STATE.store.close()


class RequestIdMiddleware:
    """Puts an X-Request-ID on every response (the client's, or a new one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"),
            uuid.uuid4().hex,
        )
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        await self.app(scope, receive, send_with_id)


app = FastAPI(
    title="State-based baseline", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
)
app.add_middleware(RequestIdMiddleware)


def error_response(
    request: Request, status: int, code: str, message: str, details: list[Row] | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={
            "error": {
                "code": code,
                "message": message,
                "details": details or [],
                "timestamp": now_iso(),
                "path": request.url.path,
                "requestId": getattr(request.state, "request_id", ""),
            }
        },
    )


@app.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(request, exc.status, exc.code, exc.message)


@app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    details = [
        {
            "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
            "message": e.get("msg"),
        }
        for e in exc.errors()
    ]
    return error_response(request, 400, "VALIDATION_ERROR", "Invalid request", details)


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    return error_response(request, exc.status_code, code, str(exc.detail))


@app.get("/health")
def health() -> Row:
    store().ping()
    return {"status": "ok", "store": STATE.kind}


@app.get("/_stats")
def stats() -> Row:
    return STATS.snapshot(STATE.kind)


@app.post("/users", status_code=201, response_model=User)
def create_user(body: UserCreate, response: Response) -> Row:
    user = store().create_user(body)
    response.headers["Location"] = f"/users/{body.user_id}"
    return user


@app.get("/users/{user_id}", response_model=User)
def get_user(user_id: str) -> Row:
    return store().get_user(user_id)


@app.post("/events", status_code=201, response_model=Event)
def create_event(body: EventCreate, response: Response) -> Row:
    event = store().create_event(body)
    response.headers["Location"] = f"/events/{event['eventId']}"
    return event


@app.get("/events", response_model=EventList)
def list_events(status: str | None = None, limit: int = 50) -> Row:
    events, total = store().list_events(status, max(1, min(limit, 500)))
    return {"events": events, "total": total, "nextToken": None}


@app.get("/events/{event_id}", response_model=Event)
def get_event(event_id: str) -> Row:
    return store().get_event(event_id)


@app.put("/events/{event_id}", response_model=Event)
def update_event(event_id: str, body: EventUpdate) -> Row:
    return store().update_event(event_id, body)


@app.delete("/events/{event_id}", status_code=204)
def delete_event(event_id: str) -> Response:
    store().delete_event(event_id)
    return Response(status_code=204)


@app.get("/events/{event_id}/registrations", response_model=RegistrationList)
def event_registrations(event_id: str) -> Row:
    registrations = store().event_registrations(event_id)
    return {"registrations": registrations, "total": len(registrations), "nextToken": None}


@app.post(
    "/users/{user_id}/registrations",
    status_code=201,
    response_model=Registration,
    response_model_exclude_none=True,
)
def register(user_id: str, body: RegistrationCreate, response: Response) -> Row:
    registration = store().register(user_id, body.event_id)
    response.headers["Location"] = f"/users/{user_id}/registrations/{body.event_id}"
    return registration


@app.get(
    "/users/{user_id}/registrations",
    response_model=RegistrationList,
    response_model_exclude_none=True,
)
def user_registrations(user_id: str, limit: int = 50) -> Row:
    registrations = store().user_registrations(user_id)
    page = registrations[: max(1, min(limit, 500))]
    return {"registrations": page, "total": len(registrations), "nextToken": None}


@app.get(
    "/users/{user_id}/registrations/{event_id}",
    response_model=Registration,
    response_model_exclude_none=True,
)
def get_registration(user_id: str, event_id: str) -> Row:
    return store().get_registration(user_id, event_id)


@app.delete("/users/{user_id}/registrations/{event_id}", status_code=204)
def leave(user_id: str, event_id: str) -> Response:
    store().leave(user_id, event_id)
    return Response(status_code=204)


if __name__ == "__main__":
    from bench.servers import serve

    serve(app)
