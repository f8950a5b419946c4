"""Idempotency records on SQLite, in the event store's file (shared by every
process using it; see ``infra/idempotency.py``)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from infra.idempotency import Claim, StoredResponse, shows_personal_data
from infra.sqlite.connections import PerThreadConnections

SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,             -- 'in_progress' or 'done'
    lease_until REAL NOT NULL,       -- in progress: until when its request holds it
    expires_at REAL NOT NULL,        -- kept until then at least
    status INTEGER,
    headers TEXT,
    body BLOB,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_at);
"""


class SQLiteIdempotencyStore:
    def __init__(self, path: Path, *, ttl_seconds: float, lock_timeout: float = 30.0) -> None:
        self.ttl_seconds = ttl_seconds
        # Kept answers may hold personal data: what is deleted is overwritten.
        self._connections = PerThreadConnections(path, lock_timeout=lock_timeout, secure=True)
        self._connections.get().executescript(SCHEMA)

    def claim(self, scope: str, key: str, fingerprint: str, *, lease_seconds: float) -> Claim:
        now = time.time()
        # One claimant at a time, across processes: the write lock is taken first.
        with self._connections.transaction(immediate=True) as db:
            row = db.execute(
                "SELECT * FROM idempotency WHERE scope = ? AND key = ?", (scope, key)
            ).fetchone()
            # Replaced: a record past its time to live (left for ``sweep``: no request
            # deletes other keys), or an in-progress one whose lease ran out.
            if (
                row is not None
                and row["expires_at"] >= now
                and not (row["state"] == "in_progress" and row["lease_until"] < now)
            ):
                return _claim_of(row)
            db.execute(
                "INSERT OR REPLACE INTO idempotency (scope, key, fingerprint, state, lease_until, "
                "expires_at) VALUES (?, ?, ?, 'in_progress', ?, ?)",
                (scope, key, fingerprint, now + lease_seconds, now + self.ttl_seconds),
            )
        return Claim("new")

    def complete(self, scope: str, key: str, response: StoredResponse) -> None:
        self._connections.get().execute(
            "UPDATE idempotency SET state = 'done', status = ?, headers = ?, body = ?, "
            "expires_at = ? WHERE scope = ? AND key = ?",
            (
                response.status,
                json.dumps(response.headers),
                response.body,
                time.time() + self.ttl_seconds,
                scope,
                key,
            ),
        )

    def release(self, scope: str, key: str) -> None:
        self._connections.get().execute(
            "DELETE FROM idempotency WHERE scope = ? AND key = ? AND state = 'in_progress'",
            (scope, key),
        )

    def sweep(self, limit: int) -> int:
        """Deletes up to ``limit`` expired records (oldest first, through the expiry
        index) in one short write transaction."""
        with self._connections.transaction(immediate=True) as db:
            deleted = db.execute(
                "DELETE FROM idempotency WHERE (scope, key) IN (SELECT scope, key FROM "
                "idempotency WHERE expires_at < ? ORDER BY expires_at LIMIT ?)",
                (time.time(), limit),
            ).rowcount
        return int(deleted)

    def forget(self, user_id: str) -> int:
        """Deletes every kept answer showing the user's personal data; returns how many."""
        db = self._connections.get()
        rows = db.execute(
            "SELECT scope, key, body FROM idempotency WHERE state = 'done' AND instr(body, ?) > 0",
            (user_id.encode(),),
        ).fetchall()
        doomed = [(r["scope"], r["key"]) for r in rows if shows_personal_data(r["body"], user_id)]
        with self._connections.transaction(immediate=True) as cursor:
            cursor.executemany("DELETE FROM idempotency WHERE scope = ? AND key = ?", doomed)
        return len(doomed)

    def close(self) -> None:
        self._connections.close()


def _claim_of(row: sqlite3.Row) -> Claim:
    if row["state"] != "done":
        return Claim("in_progress", row["fingerprint"])
    headers = tuple((str(k), str(v)) for k, v in json.loads(row["headers"]))
    return Claim(
        "done", row["fingerprint"], StoredResponse(int(row["status"]), headers, bytes(row["body"]))
    )
