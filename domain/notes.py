"""What a decision did, said in a short note that the runner logs once the
decision committed (a refused or rolled-back decision leaves no line)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.model import Counts


@dataclass(frozen=True)
class Change:
    """A person's registration changed (``operation``: register or leave)."""

    operation: str
    gathering_id: str
    user_id: str
    outcome: str
    waitlist_position: int | None = None


@dataclass(frozen=True)
class Promotion:
    """People moved from the waitlist into seats by one decision, in FIFO order."""

    gathering_id: str
    user_ids: tuple[str, ...]
    cause: str
    before: Counts
    after: Counts


@dataclass(frozen=True)
class Violations:
    """Invariants a committed decision broke (kept, not refused, in production)."""

    gathering_id: str
    violations: tuple[str, ...]


Note = Change | Promotion | Violations
