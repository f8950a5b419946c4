"""The read tables on SQLite: Users, Events, Registrations, and the tracking position.

Writes run in ``BEGIN IMMEDIATE`` transactions, which take SQLite's write
lock before reading the tracking position: two server processes that try to
apply the same batch are serialised, and the second sees the advanced
position and skips the batch. Rows and position commit together.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from uuid import UUID

from projections.paging import decode_token, encode_token
from projections.ports import Change, ReadTableWriter
from projections.views import EventRow, Page, RegistrationRow, UserRow

TRACKING_NAME = "read-tables"

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    stream_id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    date TEXT NOT NULL,
    location TEXT,
    organizer TEXT,
    status TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    waitlist_enabled INTEGER NOT NULL,
    registered_count INTEGER NOT NULL,
    waitlist_count INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_status ON events (status, event_id);
CREATE TABLE IF NOT EXISTS streams (
    stream_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS registrations (
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    status TEXT NOT NULL,
    sort_key INTEGER NOT NULL,
    registered_at TEXT NOT NULL,
    PRIMARY KEY (user_id, event_id)
) WITHOUT ROWID;
-- The reverse lookup by event (the seed's GSI eventId-userId-index), ordered
-- as the API lists it: confirmed by seat order, then the waitlist FIFO.
CREATE INDEX IF NOT EXISTS registrations_by_event
    ON registrations (event_id, status, sort_key);
CREATE TABLE IF NOT EXISTS tracking (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;
"""

EVENT_COLUMNS = {
    "title",
    "description",
    "date",
    "location",
    "organizer",
    "status",
    "capacity",
    "waitlist_enabled",
}


def _ts(value: datetime) -> str:
    return value.isoformat()


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


class _Writer(ReadTableWriter):
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self.c = cursor

    def put_user(self, user_id: str, name: str, at: datetime) -> None:
        self.c.execute(
            "INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?)", (user_id, name, _ts(at), _ts(at))
        )

    def put_event(self, stream_id: UUID, row: EventRow) -> None:
        self.c.execute(
            "INSERT OR REPLACE INTO streams VALUES (?, ?)", (stream_id.hex, row.event_id)
        )
        self.c.execute(
            "INSERT OR REPLACE INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                row.event_id,
                stream_id.hex,
                row.title,
                row.description,
                row.date,
                row.location,
                row.organizer,
                row.status,
                row.capacity,
                int(row.waitlist_enabled),
                row.registered_count,
                row.waitlist_count,
                _ts(row.created_at),
                _ts(row.updated_at),
            ),
        )

    def event_id_for(self, stream_id: UUID) -> str:
        found = self.c.execute(
            "SELECT event_id FROM streams WHERE stream_id = ?", (stream_id.hex,)
        ).fetchone()
        if found is None:
            msg = f"No gathering is known for stream {stream_id}"
            raise LookupError(msg)
        return str(found[0])

    def update_event(self, event_id: str, fields: dict[str, object], at: datetime) -> None:
        unknown = set(fields) - EVENT_COLUMNS
        if unknown:
            msg = f"Not columns of the events table: {sorted(unknown)}"
            raise ValueError(msg)
        assignments = "".join(f"{name} = ?, " for name in fields)
        values = [int(v) if isinstance(v, bool) else v for v in fields.values()]
        self.c.execute(
            f"UPDATE events SET {assignments}updated_at = ? WHERE event_id = ?",  # noqa: S608 - names checked above
            (*values, _ts(at), event_id),
        )

    def adjust_counts(self, event_id: str, registered: int, waitlisted: int, at: datetime) -> None:
        self.c.execute(
            "UPDATE events SET registered_count = registered_count + ?, "
            "waitlist_count = waitlist_count + ?, updated_at = ? WHERE event_id = ?",
            (registered, waitlisted, _ts(at), event_id),
        )

    def delete_event(self, event_id: str) -> None:
        self.c.execute("DELETE FROM events WHERE event_id = ?", (event_id,))

    def put_registration(
        self, user_id: str, event_id: str, status: str, sort_key: int, at: datetime
    ) -> None:
        self.c.execute(
            "INSERT OR REPLACE INTO registrations VALUES (?, ?, ?, ?, ?)",
            (user_id, event_id, status, sort_key, _ts(at)),
        )

    def promote_registration(self, user_id: str, event_id: str, sort_key: int) -> None:
        self.c.execute(
            "UPDATE registrations SET status = 'confirmed', sort_key = ? "
            "WHERE user_id = ? AND event_id = ?",
            (sort_key, user_id, event_id),
        )

    def delete_registration(self, user_id: str, event_id: str) -> None:
        self.c.execute(
            "DELETE FROM registrations WHERE user_id = ? AND event_id = ?", (user_id, event_id)
        )


class SQLiteReadModel:
    """The read tables in one SQLite file (WAL mode, safe across processes)."""

    def __init__(self, path: Path, *, lock_timeout: float = 30.0) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection().executescript(SCHEMA)

    # -- connections ---------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=self.lock_timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self, *, immediate: bool) -> Iterator[sqlite3.Cursor]:
        conn = self._connection()
        cursor = conn.cursor()
        cursor.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield cursor
        except BaseException:
            conn.rollback()
            raise
        else:
            cursor.execute("COMMIT")
        finally:
            cursor.close()

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- tracking and writes -------------------------------------------------

    def position(self) -> int:
        row = (
            self._connection()
            .execute("SELECT position FROM tracking WHERE name = ?", (TRACKING_NAME,))
            .fetchone()
        )
        return int(row[0]) if row else 0

    def apply(self, expected: int, changes: Sequence[Change], new_position: int) -> bool:
        with self._transaction(immediate=True) as c:
            row = c.execute(
                "SELECT position FROM tracking WHERE name = ?", (TRACKING_NAME,)
            ).fetchone()
            current = int(row[0]) if row else 0
            if current != expected:
                return False
            writer = _Writer(c)
            for change in changes:
                change.write(writer)
            c.execute(
                "INSERT INTO tracking VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (TRACKING_NAME, new_position),
            )
            return True

    def reset(self) -> None:
        with self._transaction(immediate=True) as c:
            for table in ("users", "events", "streams", "registrations", "tracking"):
                c.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names

    # -- reads ---------------------------------------------------------------

    def get_user(self, user_id: str) -> UserRow | None:
        row = (
            self._connection()
            .execute("SELECT * FROM users WHERE user_id = ?", (user_id,))
            .fetchone()
        )
        if row is None:
            return None
        return UserRow(user_id=row[0], name=row[1], created_at=_dt(row[2]), updated_at=_dt(row[3]))

    def get_event(self, event_id: str) -> EventRow | None:
        with self._transaction(immediate=False) as c:
            row = c.execute("SELECT * FROM events WHERE event_id = ?", (event_id,)).fetchone()
            if row is None:
                return None
            return self._event_row(c, row)

    def get_registration(self, user_id: str, event_id: str) -> RegistrationRow | None:
        with self._transaction(immediate=False) as c:
            row = c.execute(
                "SELECT r.user_id, r.event_id, r.status, r.registered_at, e.title, e.date, "
                "CASE WHEN r.status = 'waitlist' THEN ("
                "  SELECT COUNT(*) + 1 FROM registrations w WHERE w.event_id = r.event_id"
                "  AND w.status = 'waitlist' AND w.sort_key < r.sort_key) END "
                "FROM registrations r JOIN events e ON e.event_id = r.event_id "
                "WHERE r.user_id = ? AND r.event_id = ?",
                (user_id, event_id),
            ).fetchone()
        return None if row is None else self._registration_row(row)

    def event_exists(self, event_id: str) -> bool:
        found = (
            self._connection()
            .execute("SELECT 1 FROM events WHERE event_id = ?", (event_id,))
            .fetchone()
        )
        return found is not None

    def list_events(self, status: str | None, limit: int, token: str | None) -> Page[EventRow]:
        after = "" if token is None else str(decode_token(token, {"e": str})["e"])
        where = "WHERE event_id > ?"
        params: list[object] = [after]
        if status is not None:
            where += " AND status = ?"
            params.append(status)
        with self._transaction(immediate=False) as c:
            rows = c.execute(
                f"SELECT * FROM events {where} ORDER BY event_id LIMIT ?",  # noqa: S608 - fixed text
                (*params, limit + 1),
            ).fetchall()
            total_where = "" if status is None else "WHERE status = ?"
            total = c.execute(
                f"SELECT COUNT(*) FROM events {total_where}",  # noqa: S608 - fixed text
                () if status is None else (status,),
            ).fetchone()[0]
            items = [self._event_row(c, row) for row in rows[:limit]]
        next_token = encode_token({"e": items[-1].event_id}) if len(rows) > limit else None
        return Page(items=items, next_token=next_token, total=int(total))

    def list_user_registrations(
        self, user_id: str, limit: int, token: str | None
    ) -> Page[RegistrationRow]:
        after = "" if token is None else str(decode_token(token, {"e": str})["e"])
        with self._transaction(immediate=False) as c:
            rows = c.execute(
                "SELECT r.user_id, r.event_id, r.status, r.registered_at, e.title, e.date, "
                "CASE WHEN r.status = 'waitlist' THEN ("
                "  SELECT COUNT(*) + 1 FROM registrations w WHERE w.event_id = r.event_id"
                "  AND w.status = 'waitlist' AND w.sort_key < r.sort_key) END "
                "FROM registrations r JOIN events e ON e.event_id = r.event_id "
                "WHERE r.user_id = ? AND r.event_id > ? ORDER BY r.event_id LIMIT ?",
                (user_id, after, limit + 1),
            ).fetchall()
            total = c.execute(
                "SELECT COUNT(*) FROM registrations WHERE user_id = ?", (user_id,)
            ).fetchone()[0]
        items = [self._registration_row(row) for row in rows[:limit]]
        next_token = encode_token({"e": items[-1].event_id}) if len(rows) > limit else None
        return Page(items=items, next_token=next_token, total=int(total))

    def list_event_registrations(
        self, event_id: str, limit: int, token: str | None
    ) -> Page[RegistrationRow]:
        rank, sort_key = 0, -1
        if token is not None:
            key = decode_token(token, {"r": int, "k": int})
            rank, sort_key = int(str(key["r"])), int(str(key["k"]))
        with self._transaction(immediate=False) as c:
            # Confirmed (rank 0) by seat order, then the waitlist (rank 1) FIFO.
            rows = c.execute(
                "SELECT r.user_id, r.event_id, r.status, r.registered_at, e.title, e.date, "
                "NULL, CASE r.status WHEN 'confirmed' THEN 0 ELSE 1 END AS rank, r.sort_key "
                "FROM registrations r JOIN events e ON e.event_id = r.event_id "
                "WHERE r.event_id = ? AND (CASE r.status WHEN 'confirmed' THEN 0 ELSE 1 END, "
                "r.sort_key) > (?, ?) ORDER BY rank, r.sort_key LIMIT ?",
                (event_id, rank, sort_key, limit + 1),
            ).fetchall()
            counts = c.execute(
                "SELECT registered_count + waitlist_count FROM events WHERE event_id = ?",
                (event_id,),
            ).fetchone()
            waiting = [row for row in rows[:limit] if row[7] == 1]
            ahead = 0
            if waiting:
                ahead = c.execute(
                    "SELECT COUNT(*) FROM registrations WHERE event_id = ? "
                    "AND status = 'waitlist' AND sort_key < ?",
                    (event_id, waiting[0][8]),
                ).fetchone()[0]
        positions = {row[0]: int(ahead) + n for n, row in enumerate(waiting, start=1)}
        rows = [(*row[:6], positions.get(row[0]), *row[7:]) for row in rows]
        items = [self._registration_row(row) for row in rows[:limit]]
        next_token = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_token = encode_token({"r": int(last[7]), "k": int(last[8])})
        return Page(items=items, next_token=next_token, total=int(counts[0]) if counts else 0)

    @staticmethod
    def _event_row(c: sqlite3.Cursor, row: tuple[object, ...]) -> EventRow:
        waitlist = tuple(
            str(r[0])
            for r in c.execute(
                "SELECT user_id FROM registrations WHERE event_id = ? AND status = 'waitlist' "
                "ORDER BY sort_key",
                (row[0],),
            ).fetchall()
        )
        return EventRow(
            event_id=str(row[0]),
            title=str(row[2]),
            description=str(row[3]),
            date=str(row[4]),
            location=None if row[5] is None else str(row[5]),
            organizer=None if row[6] is None else str(row[6]),
            status=str(row[7]),
            capacity=int(str(row[8])),
            waitlist_enabled=bool(row[9]),
            registered_count=int(str(row[10])),
            waitlist_count=int(str(row[11])),
            created_at=_dt(str(row[12])),
            updated_at=_dt(str(row[13])),
            waitlist=waitlist,
        )

    @staticmethod
    def _registration_row(row: tuple[object, ...]) -> RegistrationRow:
        return RegistrationRow(
            user_id=str(row[0]),
            event_id=str(row[1]),
            status=str(row[2]),
            registered_at=_dt(str(row[3])),
            event_title=str(row[4]),
            event_date=str(row[5]),
            waitlist_position=None if row[6] is None else int(str(row[6])),
        )
