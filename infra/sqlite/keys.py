"""The key table on SQLite (``infra/personal_data.py``), in the event store's file.

``secure_delete`` is on for its connections, so a destroyed key's bytes are
overwritten in the database pages, and the WAL is checkpointed and truncated
after each erasure (``scrub``), so that no copy of the key survives in it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

from infra.sqlite.connections import PerThreadConnections, in_chunks

if TYPE_CHECKING:
    from collections.abc import Collection

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS personal_keys (
    user_id TEXT PRIMARY KEY,
    key BLOB,                        -- NULL once the user is erased (a tombstone)
    erased_at REAL
) WITHOUT ROWID;
"""


class SQLiteKeyStore:
    def __init__(self, path: Path, *, lock_timeout: float = 30.0) -> None:
        self._connections = PerThreadConnections(path, lock_timeout=lock_timeout, secure=True)
        self._connections.get().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = self._connections.get()
        # A key's write needs no fsync of its own (1.4 ms of a 1.5 ms seal, measured):
        # it is committed to the WAL before the event that depends on it (the
        # user's creation, or erasure), and the WAL is written in order, so that
        # event's commit (synced as SQLITE_SYNCHRONOUS says) makes it durable too.
        # A key without its creation event is harmless.
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def create(self, user_id: str, stored_key: bytes) -> bytes | None:
        db = self._db()
        db.execute(
            "INSERT OR IGNORE INTO personal_keys (user_id, key) VALUES (?, ?)",
            (user_id, stored_key),
        )
        return self.get(user_id)

    def get(self, user_id: str) -> bytes | None:
        row = (
            self._connections.get()
            .execute("SELECT key FROM personal_keys WHERE user_id = ?", (user_id,))
            .fetchone()
        )
        return None if row is None or row["key"] is None else bytes(row["key"])

    def get_many(self, user_ids: Collection[str]) -> dict[str, bytes]:
        ids = list(dict.fromkeys(user_ids))
        found: dict[str, bytes] = {}
        db = self._connections.get()
        for chunk in in_chunks(ids):
            marks = ", ".join("?" * len(chunk))
            rows = db.execute(
                f"SELECT user_id, key FROM personal_keys WHERE user_id IN ({marks})",  # noqa: S608 - placeholders only
                chunk,
            )
            found.update(
                {row["user_id"]: bytes(row["key"]) for row in rows if row["key"] is not None}
            )
        return found

    def destroy(self, user_id: str) -> None:
        self._db().execute(
            "INSERT INTO personal_keys (user_id, key, erased_at) VALUES (?, NULL, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET key = NULL, "
            "erased_at = coalesce(erased_at, excluded.erased_at)",
            (user_id, time.time()),
        )

    def close(self) -> None:
        self._connections.close()


def scrub(connections: PerThreadConnections, attempts: int = 20) -> bool:
    """Checkpoints the WAL into the database and truncates it, so that the old
    page images it held (a destroyed key, a deleted answer) are gone; True once
    done (a reader holding an old snapshot makes it wait: retried a while)."""
    db = connections.get()
    for _ in range(attempts):
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return True
        time.sleep(0.05)
    logger.warning("the WAL could not be truncated after an erasure (readers kept it busy)")
    return False
