"""Catch-up: folds the log into read tables, for rebuilds, audits and start-up.

The live read tables are written inline, in the transaction of each append
(``projections/fold.py``); this runner applies the same ``fold`` to the
notification log instead. It reads a batch after the read tables' tracking
position and applies it, with the new position, exactly once. Batches end at
commit boundaries that the store recorded with the events (never guessed
from topics), so a store that applies a batch in several transactions cuts
only between whole commands.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification

from projections.fold import TOPICS, fold
from projections.ports import Change, Commit, ReadModel

logger = logging.getLogger(__name__)


@runtime_checkable
class CommitLog(Protocol):
    """What a recorder says about where its appends (commits) end."""

    def commit_ends(self, lo: int, hi: int) -> Sequence[int]:
        """The last notification id of every commit that ends within ``lo..hi``, ascending."""

    def commit_end_after(self, log_position: int) -> int | None:
        """The end of the commit holding ``log_position`` (None if the store never recorded it)."""


@runtime_checkable
class IndexedLog(Protocol):
    """A log whose notification ids are assigned after the append commits (on
    DynamoDB, by the stream indexer), so a reader that needs every event
    written so far must first wait for them to be indexed."""

    def wait_until_indexed(self, timeout: float = 60.0, *, every_process: bool = False) -> None:
        """Returns once every event written before the call is in the log: by
        this process, or (``every_process``) by any."""


def wait_until_logged(recorder: ApplicationRecorder, *, every_process: bool = False) -> None:
    """Returns once ``recorder``'s log holds every event written so far (at
    once for logs written with the events themselves); ``every_process``: also
    what other processes wrote (a drift check, an audit, a rebuild's switch)."""
    if isinstance(recorder, IndexedLog):
        recorder.wait_until_indexed(every_process=every_process)


@dataclass(frozen=True)
class Progress:
    log_position: int
    head: int
    # The log held nothing past ``log_position`` once every event written before
    # the step was in it (a step that stops at a head read earlier may not be).
    settled: bool = False


class CatchUpProjector:
    """Brings a read model up to the head of an application's notification log."""

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[Any],
        read_model: ReadModel,
        *,
        batch_size: int = 500,
    ) -> None:
        self.recorder = recorder
        self.mapper = mapper
        self.read_model = read_model
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def step(self, until: int | None = None) -> Progress:
        """Applies at most one batch (not past ``until``, a commit's end); returns
        the position reached and the log's head (which then holds every event
        written before the call)."""
        log_position = self.read_model.log_position()
        if log_position is None:  # live: appends fold into the tables inline
            head = self.recorder.max_notification_id() or 0
            return Progress(head, head, settled=True)
        head = self.recorder.max_notification_id() or 0
        if until is not None and head > until:
            if until <= log_position:
                return Progress(log_position, head)
            return self._apply_up_to(log_position, until, head)
        if head <= log_position:
            # Caught up with the log as it stands: on a log indexed after the
            # appends, wait for what is written but not yet indexed (once per
            # catch-up, not per batch) before saying so.
            wait_until_logged(self.recorder)
            head = self.recorder.max_notification_id() or 0
            if head <= log_position:
                return Progress(log_position, head, settled=True)
        return self._apply_up_to(log_position, head, head)

    def _apply_up_to(self, log_position: int, stop: int, head: int) -> Progress:
        """Applies one batch after ``log_position``, not past ``stop`` (a commit's end)."""
        notifications = list(
            self.recorder.select_notifications(
                start=log_position + 1, limit=self.batch_size, stop=stop, topics=TOPICS
            )
        )
        if len(notifications) < self.batch_size:
            # Every id up to ``stop`` is committed, and ``stop`` ends a commit.
            new_log_position = stop
        else:
            # A full batch may end inside a commit: take the rest of that commit too.
            last = notifications[-1].id
            end = self._commit_end_after(last)
            if end > last:
                notifications.extend(
                    self.recorder.select_notifications(
                        start=last + 1, limit=end - last, stop=end, topics=TOPICS
                    )
                )
            new_log_position = end
        commits = self._commits(notifications, log_position + 1, new_log_position)
        applied = self.read_model.apply(log_position, commits, new_log_position)
        if applied:
            return Progress(new_log_position, head)
        reached = self.read_model.log_position()
        return Progress(head if reached is None else reached, head)

    def catch_up(
        self, until: int | None = None, on_progress: Callable[[Progress], None] | None = None
    ) -> int:
        """Applies batches until the read model holds ``until`` (default: the log's head)."""
        with self._lock:
            while True:
                progress = self.step(until)
                if on_progress is not None:
                    on_progress(progress)
                target = progress.head if until is None else min(until, progress.head)
                if until is None and not progress.settled:
                    # At the head as read before this step: events written
                    # before the call may still be on their way into the log.
                    continue
                if progress.log_position >= target:
                    if progress.log_position >= progress.head:
                        self.read_model.go_live(progress.log_position)
                    return progress.log_position

    def rest(self, log_position: int) -> tuple[list[Commit], int]:
        """Every commit after ``log_position`` up to the log's head, read now, and that
        head: what a rebuild folds while it holds off appends."""
        wait_until_logged(self.recorder, every_process=True)
        head = self.recorder.max_notification_id() or 0
        if head <= log_position:
            return [], log_position
        notifications = list(
            self.recorder.select_notifications(
                start=log_position + 1, limit=head - log_position, stop=head, topics=TOPICS
            )
        )
        return self._commits(notifications, log_position + 1, head), head

    def _commit_end_after(self, log_position: int) -> int:
        if isinstance(self.recorder, CommitLog):
            end = self.recorder.commit_end_after(log_position)
            if end is not None:
                return end
        return log_position  # a log without commit records: each event on its own

    def _commits(self, notifications: list[Notification], lo: int, hi: int) -> list[Commit]:
        ends: Sequence[int] = ()
        if isinstance(self.recorder, CommitLog):
            ends = self.recorder.commit_ends(lo, hi)
        boundaries = iter([*ends, hi])
        boundary = next(boundaries)
        commits: list[Commit] = []
        current: list[Change] = []
        for notification in notifications:
            while notification.id > boundary:
                if current:
                    commits.append(current)
                    current = []
                boundary = next(boundaries, hi)
            current.append(self._change(notification))
            if not ends:
                # A log without commit records: each event is its own commit.
                commits.append(current)
                current = []
        if current:
            commits.append(current)
        return commits

    def _change(self, notification: Notification) -> Change:
        fact: Aggregate.Event = self.mapper.to_domain_event(notification)  # type: ignore[assignment]
        return Change(log_position=notification.id, write=lambda writer: fold(fact, writer))
