"""Idempotent writes: what a store keeps per ``Idempotency-Key`` (the protocol).

A request's key is scoped to its caller (the API key's name, or anonymous).
``claim`` records the request's fingerprint as *in progress* for a lease; the
edge then runs the request and either ``complete``s the record with the
response to replay, or ``release``s it (an outcome not worth replaying: a
validation error, 401/403, a 5xx), so that a corrected or later retry runs.
Records are kept at least ``ttl`` (24 hours by default), in the store, so they
persist across restarts and are shared by every server process.

Implementations: ``infra/sqlite/idempotency.py``, ``infra/dynamodb/idempotency.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


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

    def close(self) -> None: ...
