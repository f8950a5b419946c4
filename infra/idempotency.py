"""Idempotent writes: what a store keeps per ``Idempotency-Key`` (the protocol).

A request's key is scoped to its caller (the API key's name, or anonymous).
``claim`` records the request's fingerprint as *in progress* for a lease; the
edge then runs the request and either ``complete``s the record with the
response to replay, or ``release``s it (an outcome not worth replaying: a
validation error, 401/403, a 5xx), so that a corrected or later retry runs.
Records are kept at least ``ttl`` (24 hours by default), in the store, so they
persist across restarts and are shared by every server process. A record past
its time to live counts as absent; deleting it is not the requests' work:
DynamoDB's TTL deletes them, and on SQLite an ``ExpirySweeper`` thread deletes
them in bounded batches, outside any request.

Implementations: ``infra/sqlite/idempotency.py``, ``infra/dynamodb/idempotency.py``.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Literal, Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class Claim:
    """What ``claim`` found: ``new`` (the caller runs the request), or the record
    another request made with this key (``done`` with its response, or
    ``in_progress``), with that request's fingerprint."""

    outcome: Literal["new", "in_progress", "done"]
    fingerprint: str = ""
    response: StoredResponse | None = None


class IdempotencyStore(Protocol):
    def claim(self, scope: str, key: str, fingerprint: str, *, lease_seconds: float) -> Claim:
        """Records the key as in progress unless a live record holds it (an in-progress
        record whose lease ran out is taken over: its request died unfinished)."""
        ...

    def complete(self, scope: str, key: str, response: StoredResponse) -> None:
        """Keeps ``response`` for replays, for at least the store's time to live."""
        ...

    def release(self, scope: str, key: str) -> None:
        """Forgets the key (its request's outcome is not replayed)."""
        ...

    def sweep(self, limit: int) -> int:
        """Deletes up to ``limit`` records past their time to live, in one short
        transaction; returns how many (0 where the store deletes them itself)."""
        ...

    def forget(self, user_id: str) -> int:
        """Deletes every kept answer that shows the user's personal data (at the
        user's erasure); returns how many it deleted."""
        ...

    def close(self) -> None: ...


def shows_personal_data(body: bytes | None, user_id: str) -> bool:
    """Whether a kept answer shows the user's personal data: a JSON object of
    theirs (``userId``) that holds a ``name`` (a user, as ``POST /users`` answers)."""
    if not body:
        return False
    try:
        shown = json.loads(body)
    except ValueError:
        return False
    return isinstance(shown, dict) and shown.get("userId") == user_id and "name" in shown


def carries_personal_data(body: bytes) -> bool:
    """Whether a request carries personal data: a JSON object with a ``name`` (a
    user, as ``POST /users`` takes it). Its fingerprint is a hash of the name, so
    an answer kept under it would let anyone holding the key (or a copy of the
    store) test guessed names after the user's erasure; only answers that show
    the name are kept for it, and the erasure deletes those."""
    if not body or b'"name"' not in body:
        return False
    try:
        sent = json.loads(body)
    except ValueError:
        return False
    return isinstance(sent, dict) and "name" in sent


# One batch: a short write (about a millisecond per hundred rows on SQLite),
# so a write waiting for the lock meanwhile waits at most that long.
SWEEP_BATCH = 500
SWEEP_INTERVAL_SECONDS = 60.0
# Between two batches of one round: the write lock is free for others.
SWEEP_PAUSE_SECONDS = 0.01


class ExpirySweeper:
    """Deletes expired idempotency records in a thread of its own: every
    ``interval`` seconds, in batches of at most ``batch`` until none is left."""

    def __init__(
        self,
        store: IdempotencyStore,
        *,
        interval: float = SWEEP_INTERVAL_SECONDS,
        batch: int = SWEEP_BATCH,
    ) -> None:
        self.store = store
        self.interval = interval
        self.batch = batch
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> int:
        """One round: batches until one comes back short; returns how many it deleted."""
        deleted = 0
        while not self._stopping.is_set():
            swept = self.store.sweep(self.batch)
            deleted += swept
            if swept < self.batch:
                break
            self._stopping.wait(SWEEP_PAUSE_SECONDS)
        return deleted

    def _run(self) -> None:
        # The first round one interval after start: a starting service's first
        # batches find the write lock free (the event loop never waits for it).
        while not self._stopping.wait(self.interval):
            try:
                deleted = self.sweep()
            except Exception:  # a busy or unreachable store: the next round retries
                logger.warning("sweeping expired idempotency keys failed", exc_info=True)
            else:
                if deleted:
                    logger.info("expired idempotency keys deleted", extra={"deleted": deleted})

    def start(self) -> None:
        self._stopping.clear()
        thread = threading.Thread(target=self._run, name="idempotency-sweeper", daemon=True)
        self._thread = thread
        thread.start()

    def stop(self) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
