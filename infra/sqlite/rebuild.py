"""A rebuild's second set of read tables on SQLite, in the event store's own file.

The new tables carry the suffix ``__next`` and the rebuild's state is a row of
``rebuilds`` (position, lease holder and heartbeat, state, error). Each batch
writes rows and position in one ``BEGIN IMMEDIATE`` transaction, so a killed
rebuild resumes from its last batch. The switch is one more: holding SQLite's
write lock (appends queue on it), it folds the last commits, renames the live
tables away and the new ones into their names, and sets the live tracking
position to the head. Readers in WAL mode keep the snapshot they started
with. The old tables are then emptied a few thousand rows per transaction,
and dropped.

Indexes keep their names through a rename, so the new tables' indexes carry
the rebuild's generation (``gatherings_by_status_<generation>``) and are built as
the tables fill, not while appends wait.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from domain.errors import RebuildInProgressError
from infra.sqlite.connections import PerThreadConnections
from infra.sqlite.read_tables import (
    READ_TABLES,
    TRACKING_NAME,
    SQLiteWriter,
    create_read_tables,
)
from projections.ports import Commit
from projections.rebuild import RebuildState

NEXT = "__next"
OLD = "__old"
#: Each table's primary key, by which the replaced tables are emptied in chunks.
KEYS = {
    "users": "user_id",
    "gatherings": "event_id",
    "streams": "stream_id",
    "registrations": "user_id, event_id",
    "user_events": "user_id, event_id",
}
DROP_CHUNK = 5000
#: How long a rebuild leaves the write lock free after each of its steps.
WRITERS_TURN_SECONDS = 0.025

REBUILDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS rebuilds (
    name TEXT PRIMARY KEY,
    generation TEXT NOT NULL,
    position INTEGER NOT NULL,
    owner TEXT NOT NULL,
    heartbeat REAL NOT NULL,
    state TEXT NOT NULL,
    error TEXT
) WITHOUT ROWID
"""


class SQLiteRebuildTarget:
    """The read tables' rebuild on SQLite (``projections.rebuild.RebuildTarget``)."""

    def __init__(
        self, path: Path, *, lock_timeout: float = 30.0, name: str = TRACKING_NAME
    ) -> None:
        self.name = name
        self._connections = PerThreadConnections(path, lock_timeout=lock_timeout)
        with self._connections.transaction(immediate=True) as c:
            c.execute(REBUILDS_SCHEMA)

    def close(self) -> None:
        self._connections.close()

    def _row(self, c: sqlite3.Cursor) -> sqlite3.Row | None:
        found: sqlite3.Row | None = c.execute(
            "SELECT * FROM rebuilds WHERE name = ?", (self.name,)
        ).fetchone()
        return found

    @staticmethod
    def _state(row: sqlite3.Row) -> RebuildState:
        return RebuildState(
            log_position=int(row["position"]),
            state=row["state"],
            error=row["error"],
            owner=row["owner"],
            heartbeat=float(row["heartbeat"]),
        )

    def state(self) -> RebuildState | None:
        with self._connections.transaction(immediate=False) as c:
            row = self._row(c)
        return None if row is None else self._state(row)

    def claim(self, owner: str, lease_seconds: float) -> int:
        with self._connections.transaction(immediate=True) as c:
            row = self._row(c)
            if row is not None and self._state(row).held(lease_seconds):
                msg = f"Projection {self.name!r} is being rebuilt"
                raise RebuildInProgressError(msg)
            if row is None:
                generation = uuid.uuid4().hex[:8]
                for table in READ_TABLES:
                    # Leftovers of a rebuild killed between its switch and its clean-up.
                    c.execute(f"DROP TABLE IF EXISTS {table}{OLD}")
                    c.execute(f"DROP TABLE IF EXISTS {table}{NEXT}")
                create_read_tables(c, NEXT, generation)
                c.execute(
                    "INSERT INTO rebuilds VALUES (?, ?, 0, ?, ?, 'rebuilding', NULL)",
                    (self.name, generation, owner, time.time()),
                )
                log_position = 0
            else:
                # Resumed, maybe by a newer version: its tables get the columns it adds.
                create_read_tables(c, NEXT, str(row["generation"]))
                c.execute(
                    "UPDATE rebuilds SET owner = ?, heartbeat = ?, state = 'rebuilding', "
                    "error = NULL WHERE name = ?",
                    (owner, time.time(), self.name),
                )
                log_position = int(row["position"])
        return log_position

    def _held_row(self, c: sqlite3.Cursor, owner: str) -> sqlite3.Row:
        """The rebuild's row, while ``owner`` still holds its lease."""
        row = self._row(c)
        if row is None or row["owner"] != owner:
            msg = f"The rebuild of {self.name!r} was taken over by another process"
            raise RebuildInProgressError(msg)
        return row

    def apply(
        self, owner: str, expected: int, commits: Sequence[Commit], new_log_position: int
    ) -> bool:
        with self._connections.transaction(immediate=True) as c:
            if int(self._held_row(c, owner)["position"]) != expected:
                return False
            writer = SQLiteWriter(c, suffix=NEXT)
            for commit in commits:
                for change in commit:
                    change.write(writer)
            c.execute(
                "UPDATE rebuilds SET position = ?, heartbeat = ? WHERE name = ?",
                (new_log_position, time.time(), self.name),
            )
        self._let_writers_in()
        return True

    def _let_writers_in(self) -> None:
        """Pauses between two write-locked steps. An append waiting for the lock
        polls it at growing intervals (SQLite's busy handler: 1 ms up to 25 ms in
        its first 130 ms of waiting); a step that took the lock again at once
        would starve it."""
        time.sleep(WRITERS_TURN_SECONDS)

    def switch(self, owner: str, rest: Callable[[int], tuple[list[Commit], int]]) -> int:
        # The write lock holds off every append until the new tables are in
        # place: each append after the switch folds into them, none is missed.
        with self._connections.transaction(immediate=True) as c:
            row = self._held_row(c, owner)
            commits, head = rest(int(row["position"]))
            writer = SQLiteWriter(c, suffix=NEXT)
            for commit in commits:
                for change in commit:
                    change.write(writer)
            for table in READ_TABLES:
                c.execute(f"ALTER TABLE {table} RENAME TO {table}{OLD}")
                c.execute(f"ALTER TABLE {table}{NEXT} RENAME TO {table}")
            c.execute(
                "INSERT INTO tracking VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (self.name, head),
            )
            c.execute("DELETE FROM rebuilds WHERE name = ?", (self.name,))
        self._drop_old()
        return head

    def _drop_old(self) -> None:
        """Drops the replaced tables a few thousand rows per transaction: each
        holds the write lock (and appends) for milliseconds, not for the
        whole table."""
        for table in READ_TABLES:
            keys = KEYS[table]
            while True:
                with self._connections.transaction(immediate=True) as c:
                    if not c.execute(
                        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (table + OLD,),
                    ).fetchone():
                        break
                    c.execute(
                        f"DELETE FROM {table}{OLD} WHERE ({keys}) IN "  # noqa: S608 - fixed names
                        f"(SELECT {keys} FROM {table}{OLD} LIMIT ?)",
                        (DROP_CHUNK,),
                    )
                    if c.rowcount < DROP_CHUNK:
                        c.execute(f"DROP TABLE {table}{OLD}")
                        break
                self._let_writers_in()

    def fail(self, owner: str, error: str) -> None:
        with self._connections.transaction(immediate=True) as c:
            c.execute(
                "UPDATE rebuilds SET state = 'failed', error = ? WHERE name = ? AND owner = ?",
                (error[:500], self.name, owner),
            )

    def release(self, owner: str) -> None:
        with self._connections.transaction(immediate=True) as c:
            c.execute(
                "UPDATE rebuilds SET heartbeat = 0 WHERE name = ? AND owner = ?",
                (self.name, owner),
            )
