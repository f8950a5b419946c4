"""The state-based yardstick on SQLite (see ``bench.baseline``)."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The service's own request and response models: every server of the benchmark
# validates and serialises exactly what the service does.
from api.schemas import (
    EventCreate,
    EventUpdate,
    UserCreate,
)
from bench.baseline.common import (
    OPEN_STATUSES,
    STATS,
    ApiError,
    Row,
    already,
    capacity_below,
    event_changes,
    event_full,
    event_not_found,
    event_view,
    not_open,
    now_iso,
    registration_not_found,
    registration_view,
    user_not_found,
)

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
    def _waitlist_position(c: sqlite3.Connection, event_id: str, seq: int) -> int:
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
        changes = event_changes(body)
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
            waitlist_position = (
                self._waitlist_position(c, event_id, seq) if status == "waitlist" else None
            )
        return registration_view(user_id, event_id, status, at, event, waitlist_position)

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
            waitlist_position = (
                self._waitlist_position(c, event_id, row[1]) if row[0] == "waitlist" else None
            )
        return registration_view(user_id, event_id, row[0], row[2], event, waitlist_position)

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
