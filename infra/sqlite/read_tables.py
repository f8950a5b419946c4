# ruff: noqa: S608 - statements name fixed tables and columns; values are bound
"""The read tables on SQLite: Users, Events, Registrations, and the tracking position.

They live in the event store's own database file. Appends fold into them
inline (``infra/sqlite/event_store.py``, ``SQLiteWriter`` on the append's
cursor). Catch-up (rebuild, start-up after a rebuild was interrupted) writes
them in ``BEGIN IMMEDIATE`` transactions, which take SQLite's write lock
before reading the tracking position: rows and position commit together, and
a batch another process applied first is skipped.

Rows are read by column name (``sqlite3.Row``), never by index.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from uuid import UUID

from infra.sqlite.connections import PerThreadConnections
from projections.memory import MemoryTables, StoredRegistration
from projections.paging import (
    decode_token,
    encode_token,
    event_registrations_list,
    events_list,
    user_registrations_list,
)
from projections.personal import ERASED
from projections.ports import Commit, ReadTableWriter
from projections.views import EventRow, Page, RegistrationRow, UserRow

TRACKING_NAME = "read-tables"

#: The read tables. ``{t}`` is the suffix of a table set: "" for the live one,
#: ``__next`` for the set a rebuild fills (``infra/sqlite/rebuild.py``).
TABLES_SCHEMA = """
CREATE TABLE IF NOT EXISTS users{t} (
    user_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gatherings{t} (
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
CREATE TABLE IF NOT EXISTS streams{t} (
    stream_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS registrations{t} (
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    status TEXT NOT NULL,
    sort_key INTEGER NOT NULL,
    registered_at TEXT NOT NULL,
    PRIMARY KEY (user_id, event_id)
) WITHOUT ROWID;
-- Every (user, event) pair that ever had a registration: a user's history.
CREATE TABLE IF NOT EXISTS user_events{t} (
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (user_id, event_id)
) WITHOUT ROWID;
"""

#: The secondary indexes the reads use: name -> (table, columns). An index
#: keeps its name when a rebuild renames its table into place, so an index is
#: found by its name's prefix and a rebuilt table's carry the rebuild's
#: generation (``gatherings_by_status_<generation>``).
INDEXES = {
    "gatherings_by_status": ("gatherings", "status, event_id"),
    # The lookup by event (a GSI on DynamoDB), ordered as the API
    # lists it: confirmed by seat order, then the waitlist FIFO.
    "registrations_by_event": ("registrations", "event_id, status, sort_key"),
}

TRACKING_SCHEMA = """
CREATE TABLE IF NOT EXISTS tracking (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;
"""

#: The tables a rebuild replaces (``tracking`` stays: it says where they stand).
READ_TABLES = ("users", "gatherings", "streams", "registrations", "user_events")


#: The gatherings' read table was called ``events`` (beside eventsourcing's
#: ``stored_events``) until the names were set apart: ``old -> new`` for each
#: table set (live, a rebuild's next, a switched-out old) and its status index.
RENAMED_TABLES = {f"events{t}": f"gatherings{t}" for t in ("", "__next", "__old")}
RENAMED_INDEX = ("events_by_status", "gatherings_by_status")


def rename_earlier_tables(c: sqlite3.Cursor) -> None:
    """Renames the read tables of the earlier layout in place (idempotent).

    A file written before the rename holds its gathering rows in ``events``;
    renaming keeps them (and the tracking position that says they are folded)
    where the reads now look. Runs in the caller's transaction, so a crash
    leaves the file in one layout or the other. Index names stay through a
    table's rename, so its status index is built again under the new name.
    """
    for old, new in RENAMED_TABLES.items():
        if not _table_exists(c, old) or _table_exists(c, new):
            continue
        c.execute(f"ALTER TABLE {old} RENAME TO {new}")
        indexes = c.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND name LIKE ?",
            (new, RENAMED_INDEX[0] + "%"),
        ).fetchall()
        for index in indexes:
            c.execute(f"DROP INDEX {index['name']}")
            renamed = RENAMED_INDEX[1] + index["name"][len(RENAMED_INDEX[0]) :]
            c.execute(f"CREATE INDEX {renamed} ON {new} ({INDEXES[RENAMED_INDEX[1]][1]})")


def _table_exists(c: sqlite3.Cursor, name: str) -> bool:
    found = c.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return found is not None


def create_read_tables(c: sqlite3.Cursor, suffix: str = "", generation: str = "") -> None:
    """Creates a set of read tables and their indexes where missing (idempotent),
    after renaming the tables of the earlier layout (``rename_earlier_tables``),
    and the columns an existing table lacks (``_add_missing_columns``)."""
    rename_earlier_tables(c)
    for statement in (TABLES_SCHEMA.format(t=suffix) + TRACKING_SCHEMA).split(";"):
        if statement.strip():
            c.execute(statement)
            _add_missing_columns(c, statement)
    for name, (table, columns) in INDEXES.items():
        found = c.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND name LIKE ?",
            (table + suffix, name + "%"),
        ).fetchone()
        if found is None:
            index = f"{name}_{generation}" if generation else name
            c.execute(f"CREATE INDEX {index} ON {table}{suffix} ({columns})")


_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*)\)", re.DOTALL)


def _add_missing_columns(c: sqlite3.Cursor, statement: str) -> None:
    """Adds each column the DDL names that a table created by an earlier
    version lacks (a new detail): existing rows hold its ``DEFAULT``, or NULL,
    which is what a fold of their history gives them (no stored event set it)."""
    found = _CREATE_TABLE.search(statement)
    if found is None:
        return
    table, body = found.groups()
    present = {
        str(name) for (name,) in c.execute("SELECT name FROM pragma_table_info(?)", (table,))
    }
    for line in body.splitlines():
        definition = line.strip().rstrip(",")
        name = definition.split(" ", 1)[0]
        if definition and name.islower() and name not in present:
            c.execute(f"ALTER TABLE {table} ADD COLUMN {definition}")


EVENT_COLUMNS = frozenset(f.name for f in fields(EventRow)) - {"waitlist"}
UPDATABLE_EVENT_COLUMNS = EVENT_COLUMNS - {"event_id", "created_at", "updated_at"}
# The columns a RegistrationRow is made of (r: registrations, e: gatherings).
REGISTRATION_COLUMNS = (
    "r.user_id, r.event_id, r.status, r.registered_at, e.title AS event_title, e.date AS event_date"
)
# Registrations with, for the waiting ones, their 1-based place in line.
SELECT_REGISTRATIONS_WITH_POSITION = (
    f"SELECT {REGISTRATION_COLUMNS}, "
    "CASE WHEN r.status = 'waitlist' THEN ("
    "  SELECT COUNT(*) + 1 FROM registrations w WHERE w.event_id = r.event_id"
    "  AND w.status = 'waitlist' AND w.sort_key < r.sort_key) END AS waitlist_position "
    "FROM registrations r JOIN gatherings e ON e.event_id = r.event_id"
)


def _ts(value: datetime) -> str:
    return value.isoformat()


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _column(value: object) -> object:
    if isinstance(value, datetime):
        return _ts(value)
    if isinstance(value, bool):
        return int(value)
    return value


class SQLiteWriter(ReadTableWriter):
    """Row changes on one cursor, inside the caller's transaction, to the live
    tables or (``suffix``) to the set a rebuild fills."""

    def __init__(
        self, cursor: sqlite3.Cursor, streams: Mapping[UUID, str] | None = None, suffix: str = ""
    ) -> None:
        self.c = cursor
        self.streams = streams or {}
        self.t = suffix

    def put_user(self, user_id: str, name: str, at: datetime) -> None:
        self.c.execute(
            f"INSERT OR REPLACE INTO users{self.t} (user_id, name, created_at, updated_at) "
            "VALUES (?, ?, ?, ?)",
            (user_id, name, _ts(at), _ts(at)),
        )

    def erase_user(self, user_id: str, at: datetime) -> None:
        self.c.execute(
            f"UPDATE users{self.t} SET name = ?, updated_at = ? WHERE user_id = ?",
            (ERASED, _ts(at), user_id),
        )

    def put_event(self, stream_id: UUID, row: EventRow) -> None:
        self.c.execute(
            f"INSERT OR REPLACE INTO streams{self.t} VALUES (?, ?)", (stream_id.hex, row.event_id)
        )
        values = {name: _column(getattr(row, name)) for name in sorted(EVENT_COLUMNS)}
        values["stream_id"] = stream_id.hex
        self.c.execute(
            f"INSERT OR REPLACE INTO gatherings{self.t} ({', '.join(values)}) "
            f"VALUES ({', '.join('?' for _ in values)})",
            tuple(values.values()),
        )

    def event_id_for(self, stream_id: UUID) -> str:
        known = self.streams.get(stream_id)
        if known is not None:
            return known
        found = self.c.execute(
            f"SELECT event_id FROM streams{self.t} WHERE stream_id = ?",
            (stream_id.hex,),
        ).fetchone()
        if found is None:
            msg = f"No gathering is known for stream {stream_id}"
            raise LookupError(msg)
        return str(found[0])

    def update_event(self, event_id: str, fields: dict[str, object], at: datetime) -> None:
        unknown = set(fields) - UPDATABLE_EVENT_COLUMNS
        if unknown:
            msg = f"Not columns of the gatherings table: {sorted(unknown)}"
            raise ValueError(msg)
        assignments = "".join(f"{name} = ?, " for name in fields)
        values = [_column(v) for v in fields.values()]
        self.c.execute(
            f"UPDATE gatherings{self.t} SET {assignments}updated_at = ? WHERE event_id = ?",
            (*values, _ts(at), event_id),
        )

    def adjust_counts(self, event_id: str, registered: int, waitlisted: int, at: datetime) -> None:
        self.c.execute(
            f"UPDATE gatherings{self.t} SET registered_count = registered_count + ?, "
            "waitlist_count = waitlist_count + ?, updated_at = ? WHERE event_id = ?",
            (registered, waitlisted, _ts(at), event_id),
        )

    def delete_event(self, event_id: str) -> None:
        self.c.execute(f"DELETE FROM gatherings{self.t} WHERE event_id = ?", (event_id,))

    def put_registration(
        self, user_id: str, event_id: str, status: str, sort_key: int, at: datetime
    ) -> None:
        self.c.execute(
            f"INSERT OR REPLACE INTO registrations{self.t} VALUES (?, ?, ?, ?, ?)",
            (user_id, event_id, status, sort_key, _ts(at)),
        )

    def promote_registration(self, user_id: str, event_id: str, sort_key: int) -> None:
        self.c.execute(
            f"UPDATE registrations{self.t} SET status = 'confirmed', sort_key = ? "
            "WHERE user_id = ? AND event_id = ?",
            (sort_key, user_id, event_id),
        )

    def delete_registration(self, user_id: str, event_id: str) -> None:
        self.c.execute(
            f"DELETE FROM registrations{self.t} WHERE user_id = ? AND event_id = ?",
            (user_id, event_id),
        )

    def note_registration(self, user_id: str, event_id: str) -> None:
        self.c.execute(
            f"INSERT OR IGNORE INTO user_events{self.t} VALUES (?, ?)",
            (user_id, event_id),
        )


class SQLiteReadModel:
    """The read tables, in the event store's SQLite file (WAL mode, safe across processes)."""

    local = True  # a read takes no lock in WAL mode: see ReadModel.local

    def __init__(self, path: Path, *, lock_timeout: float = 30.0) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connections = PerThreadConnections(path, lock_timeout=lock_timeout)
        with self._transaction(immediate=True) as c:
            create_read_tables(c)

    # -- connections ---------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        return self._connections.get()

    def _transaction(self, *, immediate: bool) -> AbstractContextManager[sqlite3.Cursor]:
        return self._connections.transaction(immediate=immediate)

    def close(self) -> None:
        self._connections.close()

    # -- tracking and writes -------------------------------------------------

    def log_position(self) -> int:
        row = (
            self._connection()
            .execute("SELECT position FROM tracking WHERE name = ?", (TRACKING_NAME,))
            .fetchone()
        )
        return int(row["position"]) if row else 0

    def go_live(self, log_position: int) -> None:
        """Nothing to do: appends fold inline whenever tracking is at their start."""

    def apply(self, expected: int, commits: Sequence[Commit], new_log_position: int) -> bool:
        with self._transaction(immediate=True) as c:
            row = c.execute(
                "SELECT position FROM tracking WHERE name = ?", (TRACKING_NAME,)
            ).fetchone()
            current = int(row["position"]) if row else 0
            if current != expected:
                return False
            writer = SQLiteWriter(c)
            for commit in commits:
                for change in commit:
                    change.write(writer)
            c.execute(
                "INSERT INTO tracking VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (TRACKING_NAME, new_log_position),
            )
            return True

    def reset(self) -> None:
        with self._transaction(immediate=True) as c:
            for table in (*READ_TABLES, "tracking"):
                c.execute(f"DELETE FROM {table}")

    # -- reads ---------------------------------------------------------------

    def get_user(self, user_id: str) -> UserRow | None:
        row = (
            self._connection()
            .execute("SELECT * FROM users WHERE user_id = ?", (user_id,))
            .fetchone()
        )
        return None if row is None else self._user_row(row)

    def dump(self) -> MemoryTables:
        """Every row, in one read transaction (one snapshot of all the tables)."""
        tables = MemoryTables()
        with self._transaction(immediate=False) as c:
            for row in c.execute("SELECT * FROM users"):
                tables.users[row["user_id"]] = self._user_row(row)
            for row in c.execute("SELECT * FROM gatherings"):
                tables.gatherings[row["event_id"]] = self._event_row(c, row, with_waitlist=False)
            for row in c.execute("SELECT * FROM streams"):
                tables.streams[UUID(row["stream_id"])] = row["event_id"]
            for row in c.execute("SELECT * FROM registrations"):
                tables.registrations[(row["user_id"], row["event_id"])] = StoredRegistration(
                    row["status"], int(row["sort_key"]), _dt(row["registered_at"])
                )
            for row in c.execute("SELECT * FROM user_events"):
                tables.user_events.add((row["user_id"], row["event_id"]))
        return tables

    @staticmethod
    def _user_row(row: sqlite3.Row) -> UserRow:
        return UserRow(
            user_id=row["user_id"],
            name=row["name"],
            created_at=_dt(row["created_at"]),
            updated_at=_dt(row["updated_at"]),
        )

    def get_event(self, event_id: str) -> EventRow | None:
        with self._transaction(immediate=False) as c:
            row = c.execute("SELECT * FROM gatherings WHERE event_id = ?", (event_id,)).fetchone()
            if row is None:
                return None
            return self._event_row(c, row)

    def get_registration(self, user_id: str, event_id: str) -> RegistrationRow | None:
        with self._transaction(immediate=False) as c:
            row = c.execute(
                f"{SELECT_REGISTRATIONS_WITH_POSITION} WHERE r.user_id = ? AND r.event_id = ?",
                (user_id, event_id),
            ).fetchone()
        return None if row is None else self._registration_row(row, row["waitlist_position"])

    def event_exists(self, event_id: str) -> bool:
        found = (
            self._connection()
            .execute("SELECT 1 FROM gatherings WHERE event_id = ?", (event_id,))
            .fetchone()
        )
        return found is not None

    def list_events(self, status: str | None, limit: int, token: str | None) -> Page[EventRow]:
        after = (
            ""
            if token is None
            else str(decode_token(token, {"e": str}, list_of=events_list(status))["e"])
        )
        where = "WHERE event_id > ?"
        params: list[object] = [after]
        if status is not None:
            where += " AND status = ?"
            params.append(status)
        with self._transaction(immediate=False) as c:
            rows = c.execute(
                f"SELECT * FROM gatherings {where} ORDER BY event_id LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
            total_where = "" if status is None else "WHERE status = ?"
            total = c.execute(
                f"SELECT COUNT(*) AS n FROM gatherings {total_where}",
                () if status is None else (status,),
            ).fetchone()["n"]
            waitlists = self._waitlists(c, [str(row["event_id"]) for row in rows[:limit]])
            items = [
                self._event_row(c, row, waitlist=waitlists.get(str(row["event_id"]), ()))
                for row in rows[:limit]
            ]
        next_token = (
            encode_token({"e": items[-1].event_id}, list_of=events_list(status))
            if len(rows) > limit
            else None
        )
        return Page(items=items, next_token=next_token, total=int(total))

    @staticmethod
    def _waitlists(c: sqlite3.Cursor, event_ids: list[str]) -> dict[str, tuple[str, ...]]:
        """The waitlists of a page of events in one query (not one per event)."""
        if not event_ids:
            return {}
        found: dict[str, list[str]] = {}
        marks = ", ".join("?" * len(event_ids))
        for r in c.execute(
            f"SELECT event_id, user_id FROM registrations WHERE event_id IN ({marks}) "
            "AND status = 'waitlist' ORDER BY event_id, sort_key",
            event_ids,
        ):
            found.setdefault(str(r["event_id"]), []).append(str(r["user_id"]))
        return {event_id: tuple(users) for event_id, users in found.items()}

    def list_user_registrations(
        self, user_id: str, limit: int, token: str | None
    ) -> Page[RegistrationRow]:
        after = (
            ""
            if token is None
            else str(decode_token(token, {"e": str}, list_of=user_registrations_list(user_id))["e"])
        )
        with self._transaction(immediate=False) as c:
            rows = c.execute(
                f"{SELECT_REGISTRATIONS_WITH_POSITION} "
                "WHERE r.user_id = ? AND r.event_id > ? ORDER BY r.event_id LIMIT ?",
                (user_id, after, limit + 1),
            ).fetchall()
            total = c.execute(
                "SELECT COUNT(*) AS n FROM registrations WHERE user_id = ?", (user_id,)
            ).fetchone()["n"]
        items = [self._registration_row(row, row["waitlist_position"]) for row in rows[:limit]]
        next_token = (
            encode_token({"e": items[-1].event_id}, list_of=user_registrations_list(user_id))
            if len(rows) > limit
            else None
        )
        return Page(items=items, next_token=next_token, total=int(total))

    def registered_event_ids(self, user_id: str) -> list[str]:
        rows = (
            self._connection()
            .execute(
                "SELECT event_id FROM user_events WHERE user_id = ? ORDER BY event_id", (user_id,)
            )
            .fetchall()
        )
        return [str(row["event_id"]) for row in rows]

    def list_event_registrations(
        self, event_id: str, limit: int, token: str | None
    ) -> Page[RegistrationRow]:
        rank, sort_key = 0, -1
        if token is not None:
            key = decode_token(
                token, {"r": int, "k": int}, list_of=event_registrations_list(event_id)
            )
            rank, sort_key = int(str(key["r"])), int(str(key["k"]))
        with self._transaction(immediate=False) as c:
            # Confirmed (rank 0) by seat order, then the waitlist (rank 1) FIFO.
            rows = c.execute(
                f"SELECT {REGISTRATION_COLUMNS}, "
                "CASE r.status WHEN 'confirmed' THEN 0 ELSE 1 END AS rank, r.sort_key "
                "FROM registrations r JOIN gatherings e ON e.event_id = r.event_id "
                "WHERE r.event_id = ? AND (CASE r.status WHEN 'confirmed' THEN 0 ELSE 1 END, "
                "r.sort_key) > (?, ?) ORDER BY rank, r.sort_key LIMIT ?",
                (event_id, rank, sort_key, limit + 1),
            ).fetchall()
            counts = c.execute(
                "SELECT registered_count + waitlist_count AS n FROM gatherings WHERE event_id = ?",
                (event_id,),
            ).fetchone()
            waiting = [row for row in rows[:limit] if row["rank"] == 1]
            ahead = 0
            if waiting:
                ahead = c.execute(
                    "SELECT COUNT(*) AS n FROM registrations WHERE event_id = ? "
                    "AND status = 'waitlist' AND sort_key < ?",
                    (event_id, waiting[0]["sort_key"]),
                ).fetchone()["n"]
        waitlist_positions = {
            row["user_id"]: int(ahead) + n for n, row in enumerate(waiting, start=1)
        }
        items = [
            self._registration_row(row, waitlist_positions.get(row["user_id"]))
            for row in rows[:limit]
        ]
        next_token = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_token = encode_token(
                {"r": int(last["rank"]), "k": int(last["sort_key"])},
                list_of=event_registrations_list(event_id),
            )
        return Page(items=items, next_token=next_token, total=int(counts["n"]) if counts else 0)

    @staticmethod
    def _event_row(
        c: sqlite3.Cursor,
        row: sqlite3.Row,
        *,
        with_waitlist: bool = True,
        waitlist: tuple[str, ...] | None = None,
    ) -> EventRow:
        """The row with its waitlist: ``waitlist`` when the caller read it
        (a list page reads its events' waitlists at once), else read here
        unless ``with_waitlist`` is False."""
        if waitlist is None:
            waitlist = (
                tuple(
                    str(r["user_id"])
                    for r in c.execute(
                        "SELECT user_id FROM registrations "
                        "WHERE event_id = ? AND status = 'waitlist' ORDER BY sort_key",
                        (row["event_id"],),
                    ).fetchall()
                )
                if with_waitlist
                else ()
            )
        values = {name: row[name] for name in EVENT_COLUMNS}
        return EventRow(
            **values
            | {
                "waitlist_enabled": bool(values["waitlist_enabled"]),
                "created_at": _dt(values["created_at"]),
                "updated_at": _dt(values["updated_at"]),
            },
            waitlist=waitlist,
        )

    @staticmethod
    def _registration_row(row: sqlite3.Row, waitlist_position: int | None) -> RegistrationRow:
        return RegistrationRow(
            user_id=row["user_id"],
            event_id=row["event_id"],
            status=row["status"],
            registered_at=_dt(row["registered_at"]),
            event_title=row["event_title"],
            event_date=row["event_date"],
            waitlist_position=None if waitlist_position is None else int(waitlist_position),
        )
