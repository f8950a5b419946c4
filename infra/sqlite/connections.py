"""One SQLite connection per thread, to one database file in WAL mode."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class PerThreadConnections:
    """Connections in autocommit mode (callers open their transactions with
    ``transaction``), rows as ``sqlite3.Row``; ``close`` closes every thread's."""

    def __init__(self, path: Path, *, lock_timeout: float, secure: bool = False) -> None:
        """``secure``: deleted content is overwritten with zeros (``secure_delete``),
        for tables that may hold personal data or keys."""
        self.path = path
        self.lock_timeout = lock_timeout
        self.secure = secure
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path, timeout=self.lock_timeout, isolation_level=None, check_same_thread=False
            )
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            if self.secure:
                connection.execute("PRAGMA secure_delete=ON")
            self._local.connection = connection
            with self._lock:
                self._opened.append(connection)
        return connection

    @contextmanager
    def transaction(self, *, immediate: bool) -> Iterator[sqlite3.Cursor]:
        """``BEGIN IMMEDIATE`` (take the write lock now) or a deferred ``BEGIN``."""
        connection = self.get()
        cursor = connection.cursor()
        cursor.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield cursor
        except BaseException:
            connection.rollback()
            raise
        else:
            cursor.execute("COMMIT")
        finally:
            cursor.close()

    def close(self) -> None:
        with self._lock:
            for connection in self._opened:
                connection.close()
            self._opened.clear()
        self._local = threading.local()


# SQLite binds at most 32,766 parameters per statement (999 before 3.32): a
# statement over many keys is sent in chunks of this many.
MAX_KEYS_PER_STATEMENT = 500


def in_chunks(keys: Sequence[T]) -> Iterator[Sequence[T]]:
    """``keys`` in chunks of at most ``MAX_KEYS_PER_STATEMENT``, in order."""
    for start in range(0, len(keys), MAX_KEYS_PER_STATEMENT):
        yield keys[start : start + MAX_KEYS_PER_STATEMENT]
