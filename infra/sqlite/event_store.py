"""The SQLite event store: eventsourcing's recorder, with the read tables written inline.

Events, the read tables and a record of where each append ends live in one
database file, so one append is one ``BEGIN IMMEDIATE`` transaction that
inserts the domain events, folds them into the read tables (with the append's
own cursor) and records the commit: a reader sees all of a command or none of
it, and a command whose transaction committed is reflected by every later
read, in any process.

Durability: WAL mode with ``PRAGMA synchronous=FULL`` by default, so a 2xx
means the events are on disk. ``SQLITE_SYNCHRONOUS=NORMAL`` is an explicit,
documented option that trades the last commits before a power loss for speed.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    IntegrityError,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteCursor,
    SQLiteDatastore,
)

from domain.errors import StoreBusyError
from infra.sqlite.connections import in_chunks
from infra.sqlite.read_tables import TRACKING_NAME, SQLiteWriter, create_read_tables
from projections.fold import InlineChanges

COMMITS_SCHEMA = """
CREATE TABLE IF NOT EXISTS stored_commits (
    last_id INTEGER PRIMARY KEY
);
"""

#: Set by the SQLite kit from settings (``SQLITE_SYNCHRONOUS``); FULL unless told otherwise.
SYNCHRONOUS_MODES = ("FULL", "NORMAL")


class InlineSQLiteApplicationRecorder(SQLiteApplicationRecorder):
    """Appends events and folds them into the read tables in the same transaction."""

    synchronous = "FULL"

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name)
        self._local = threading.local()
        #: The pooled connections appends ran on, each set to ``synchronous``
        #: once (a PRAGMA per append was one more statement on every commit).
        self.appending_connections: weakref.WeakSet[SQLiteConnection] = weakref.WeakSet()

    def create_table(self) -> None:
        super().create_table()
        with self.datastore.transaction(commit=True) as c:
            c.execute(COMMITS_SCHEMA)
            create_read_tables(c.sqlite_cursor)

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        inline: InlineChanges | None = None,
        wait_for_lock: bool = True,
        **kwargs: Any,
    ) -> Sequence[int] | None:
        """``wait_for_lock=False``: when another process holds the write lock,
        raises ``StoreBusyError`` at once instead of waiting (up to the lock
        timeout) for it; the event loop asks so (``LoopBatcher``)."""
        with self.datastore.get_connection(commit=True) as connection:
            cursor = connection.cursor()
            raw = cursor.sqlite_cursor
            try:
                if connection not in self.appending_connections:
                    raw.execute(f"PRAGMA synchronous={self.synchronous}")
                    self.appending_connections.add(connection)
                # IMMEDIATE takes the write lock first: two processes appending
                # queue on SQLite's busy timeout instead of failing an upgrade.
                if wait_for_lock:
                    raw.execute("BEGIN IMMEDIATE")
                else:
                    self._begin_without_waiting(raw)
                try:
                    ids = self._insert_events(cursor, stored_events, **kwargs)
                    if ids:
                        raw.execute("INSERT INTO stored_commits VALUES (?)", (ids[-1],))
                        self._fold_inline(raw, inline, ids)
                except BaseException:
                    connection.rollback()
                    raise
                raw.execute("COMMIT")
                return ids
            except sqlite3.IntegrityError as error:
                raise IntegrityError(error) from error
            except sqlite3.OperationalError as error:
                raise OperationalError(error) from error
            except sqlite3.Error as error:
                raise PersistenceError(error) from error
            finally:
                raw.close()

    def _begin_without_waiting(self, raw: sqlite3.Cursor) -> None:
        """``BEGIN IMMEDIATE`` with no busy timeout; the connection's own is
        restored after (other threads use it, and wait as usual)."""
        raw.execute("PRAGMA busy_timeout = 0")
        try:
            raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            msg = "The event store's write lock is taken by another process"
            raise StoreBusyError(msg) from error
        finally:
            timeout = self.datastore.pool.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT
            raw.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **_: Any
    ) -> Sequence[int] | None:
        """Inserts the events with one statement (eventsourcing runs one per event).

        Each sqlite3 call lets go of the GIL and must win it back from the
        event loop, so fewer calls shorten the writer's turn. The rowids of
        one append are consecutive: the table's rowid is ``max + 1`` and this
        transaction holds the write lock, so the ids end at the last one.
        """
        if not stored_events:
            return []
        raw = c.sqlite_cursor
        raw.executemany(
            self.insert_events_statement,
            [
                (
                    s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id,
                    s.originator_version,
                    s.topic,
                    s.state,
                )
                for s in stored_events
            ],
        )
        last = int(raw.execute("SELECT last_insert_rowid()").fetchone()[0])
        return list(range(last - len(stored_events) + 1, last + 1))

    @staticmethod
    def _fold_inline(raw: sqlite3.Cursor, inline: InlineChanges | None, ids: Sequence[int]) -> None:
        """Folds the append into the read tables when they are live.

        Live means their tracking position is the notification just before
        this append. Otherwise a rebuild is catching them up from the log, and
        it will fold this append too (folding it now would apply it twice).
        """
        if inline is None:
            return  # an append that brings no changes leaves the tables to catch-up
        row = raw.execute("SELECT position FROM tracking WHERE name = ?", (TRACKING_NAME,))
        found = row.fetchone()
        log_position = int(found[0]) if found else 0
        if log_position != ids[0] - 1:
            return
        inline.write(SQLiteWriter(raw, inline.streams))
        raw.execute(
            "INSERT INTO tracking VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            (TRACKING_NAME, ids[-1]),
        )

    def rewrite_states(self, stored_events: Sequence[StoredEvent]) -> None:
        """Replaces the stored state of events already stored, in one transaction:
        only for ``regsvc seal-names`` (``infra/legacy_names.py``), the one
        migration that rewrites history."""
        with self.datastore.transaction(commit=True) as c:
            for stored in stored_events:
                c.execute(
                    f"UPDATE {self.events_table_name} SET state = ? "  # noqa: S608
                    "WHERE originator_id = ? AND originator_version = ?",
                    (stored.state, stored.originator_id.hex, stored.originator_version),  # type: ignore[union-attr]
                )

    def _lookup(self) -> sqlite3.Connection:
        """This thread's own connection for single-statement reads: no pool, no
        BEGIN, each read sees the last commit (the command thread asks these
        once per batch or per new aggregate, so eventsourcing's pooled
        transaction around them was a large share of its time)."""
        connection: sqlite3.Connection | None = getattr(self._local, "lookup", None)
        if connection is None:
            connection = sqlite3.connect(
                self.datastore.pool.db_name, uri=True, check_same_thread=False
            )
            self._local.lookup = connection
        return connection

    def stream_exists(self, originator_id: UUID) -> bool:
        """One indexed look-up."""
        found = (
            self._lookup()
            .execute(
                f"SELECT 1 FROM {self.events_table_name} WHERE originator_id = ? LIMIT 1",  # noqa: S608
                (originator_id.hex,),
            )
            .fetchone()
        )
        return found is not None

    def streams_existing(self, originator_ids: Sequence[UUID]) -> set[UUID]:
        """Which of the streams hold events: one statement per 500 of them, an
        index probe each that stops at the stream's first event."""
        existing: set[UUID] = set()
        for chunk in in_chunks(originator_ids):
            marks = ", ".join("(?)" for _ in chunk)
            rows = self._lookup().cursor()
            rows.row_factory = sqlite3.Row
            rows.execute(
                f"WITH asked(id) AS (VALUES {marks}) SELECT id FROM asked WHERE EXISTS "  # noqa: S608
                f"(SELECT 1 FROM {self.events_table_name} WHERE originator_id = asked.id)",
                [originator_id.hex for originator_id in chunk],
            )
            existing.update(UUID(row["id"]) for row in rows)
        return existing

    def max_notification_id(self) -> int:
        """The log's head: the events table's largest rowid (None when empty,
        as eventsourcing's recorder contract says)."""
        head: int = self._lookup().execute(self.select_max_notification_id_statement).fetchone()[0]
        return head

    def stream_notifications(
        self, originator_id: UUID, *, gt: int | None = None, limit: int | None = None
    ) -> list[tuple[StoredEvent, int | None]]:
        """A stream's events (after version ``gt``) with their positions in the log:
        here the log is the events table, and a position its rowid."""
        statement = (
            f"SELECT rowid, * FROM {self.events_table_name} "  # noqa: S608
            "WHERE originator_id = ? AND originator_version > ? ORDER BY originator_version"
        )
        parameters: list[object] = [originator_id.hex, gt or 0]
        if limit is not None:
            statement += " LIMIT ?"
            parameters.append(limit)
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, parameters)
            rows = c.fetchall()
        return [
            (
                StoredEvent(
                    originator_id=UUID(row["originator_id"]),
                    originator_version=int(row["originator_version"]),
                    topic=str(row["topic"]),
                    state=bytes(row["state"]),
                ),
                int(row["rowid"]),
            )
            for row in rows
        ]

    # -- where commits end (projections.catch_up.CommitLog) --------------------

    def commit_ends(self, lo: int, hi: int) -> Sequence[int]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT last_id FROM stored_commits WHERE last_id BETWEEN ? AND ? ORDER BY last_id",
                (lo, hi),
            )
            return [int(r["last_id"]) for r in c.fetchall()]

    def commit_end_after(self, log_position: int) -> int | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT MIN(last_id) AS e FROM stored_commits WHERE last_id >= ?", (log_position,)
            )
            found = c.fetchone()
        return None if found is None or found["e"] is None else int(found["e"])


__all__ = ["InlineSQLiteApplicationRecorder", "SQLiteCursor"]
