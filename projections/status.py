"""Where each projection stands against the log (what ``/admin/projections`` shows).

One projection today: ``read-tables`` (Users, Events, Registrations and the
events each user ever registered for). Appends fold into it inline, so it is
``live`` at the log's head. While a rebuild fills its replacement it is
``rebuilding``, with the share of the log the new tables hold (the live ones
keep serving, at their own position); a rebuild stopped by an error is
``failed``, with the error, until the next rebuild resumes it. A rebuild whose
process died (its lease lapsed, or its process is gone from this host) is
``interrupted``, with how to resume it: nothing runs it until it is asked for
again or a server starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from eventsourcing.persistence import ApplicationRecorder, StoredEvent

from projections.ports import ReadModel
from projections.rebuild import RebuildState

READ_TABLES = "read-tables"


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    log_position: int
    head: int
    lag: int
    lag_seconds: float
    state: Literal["live", "rebuilding", "interrupted", "failed"]
    progress: float | None = None
    error: str | None = None
    resume: str | None = None


RESUME = (
    "POST /admin/projections/read-tables/rebuild (or `regsvc rebuild`, or start a server) "
    "resumes it from its position"
)


def read_tables_status(
    recorder: ApplicationRecorder,
    read_model: ReadModel,
    decode: Callable[[StoredEvent], Any],
    rebuild: RebuildState | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    *,
    lease_seconds: float = 30.0,
) -> ProjectionStatus:
    """The read tables' position (None from a store folding inline at the head),
    the log's head, the lag in events and the age of the oldest event not folded."""
    head = recorder.max_notification_id() or 0
    tracked = read_model.log_position()
    log_position = head if tracked is None else min(tracked, head)
    lag = head - log_position
    lag_seconds = 0.0
    if lag:
        (oldest,) = recorder.select_notifications(start=log_position + 1, limit=1)
        occurred = decode(oldest).timestamp
        lag_seconds = max((now() - occurred).total_seconds(), 0.0)
    at = partial(ProjectionStatus, READ_TABLES, log_position, head, lag, lag_seconds)
    if rebuild is not None:
        done = min(rebuild.log_position / head, 1.0) if head else 1.0
        if rebuild.state == "failed":
            return at("failed", error=rebuild.error)
        if not rebuild.held(lease_seconds):
            return at("interrupted", progress=done, resume=RESUME)
        return at("rebuilding", progress=done)
    if lag:
        return at("rebuilding", progress=log_position / head if head else 1.0)
    return ProjectionStatus(READ_TABLES, log_position, head, 0, 0.0, "live")
