"""Zero-downtime rebuilds of the read tables from the log.

A rebuild folds the whole log into a second set of tables while the API keeps
serving, and appends keep folding inline into, the live set. Each batch
commits with the rebuild's position in the store, so a rebuild stopped at any
point (SIGKILL included) resumes where it stopped. Once it is close to the
head, the store's ``switch`` folds the rest while it holds off appends and
puts the new set in place of the live one in the same transaction: readers
see either the old tables or the new ones, both at the head.

One rebuild per projection at a time: the process that runs it holds a lease
(its owner id and a heartbeat written with each batch). A second rebuild is
refused with ``RebuildInProgressError`` while the lease is held; a lease whose
holder died (its process is gone, or it has not written for ``lease_seconds``)
is taken over, and the rebuild resumes from its position.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from eventsourcing.persistence import ApplicationRecorder, Mapper

from domain.errors import RebuildInProgressError
from projections.catch_up import CatchUpProjector, Progress
from projections.ports import Commit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RebuildState:
    """A rebuild that started and has not switched yet."""

    log_position: int
    state: Literal["rebuilding", "failed"]
    error: str | None
    owner: str
    heartbeat: float

    def held(self, lease_seconds: float, now: float | None = None) -> bool:
        """Whether a live process is running it: the lease is fresh and, when the
        owner runs on this host, its process still exists."""
        if self.state != "rebuilding":
            return False
        if (time.time() if now is None else now) - self.heartbeat > lease_seconds:
            return False
        host, _, rest = self.owner.partition(":")
        pid = rest.partition(":")[0]
        if host == socket.gethostname() and pid.isdigit():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
        return True


class RebuildTarget(Protocol):
    """A store's second set of read tables, and the rebuild's state beside them."""

    def state(self) -> RebuildState | None:
        """The rebuild under way or interrupted (None when the live tables stand alone)."""

    def claim(self, owner: str, lease_seconds: float) -> int:
        """Starts a rebuild (empty tables at position 0) or takes over one whose lease
        lapsed; returns the position it resumes from. Raises RebuildInProgressError
        while another holder's lease is fresh."""

    def apply(
        self, owner: str, expected: int, commits: Sequence[Commit], new_log_position: int
    ) -> bool:
        """As ``ReadModel.apply``, on the new tables, for the lease's holder ``owner``
        (renewing it). Raises RebuildInProgressError when another took it over."""

    def switch(self, owner: str, rest: Callable[[int], tuple[list[Commit], int]]) -> int:
        """Holding off appends, folds ``rest(log_position)`` (the commits up to the head)
        into the new tables and puts them in place of the live ones, in one
        transaction; returns the head they hold."""

    def fail(self, owner: str, error: str) -> None:
        """Records that the rebuild stopped on an error (it resumes when asked again)."""

    def release(self, owner: str) -> None:
        """Gives the lease up, so that the next claim resumes at once."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class _Held:
    """The new tables as the catch-up projector writes them: for one lease holder."""

    target: RebuildTarget
    owner: str

    def log_position(self) -> int | None:
        """The last notification folded into the new tables."""
        state = self.target.state()
        return None if state is None else state.log_position

    def apply(self, expected: int, commits: Sequence[Commit], new_log_position: int) -> bool:
        return self.target.apply(self.owner, expected, commits, new_log_position)

    def go_live(self, log_position: int) -> None:
        """Nothing: a rebuild goes live through ``switch``."""


def new_owner() -> str:
    """``host:pid:token``: who holds a rebuild's lease (the token tells apart two
    rebuilders of one process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Rebuilder:
    """Runs a projection's rebuild: in this thread (the CLI) or in a background
    thread (``POST /admin/projections/{name}/rebuild``)."""

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[Any],
        target: RebuildTarget,
        *,
        lease_seconds: float = 30.0,
        batch_size: int = 500,
    ) -> None:
        self.target = target
        self.recorder = recorder
        self.lease_seconds = lease_seconds
        self.owner = new_owner()
        self.projector = CatchUpProjector(
            recorder,
            mapper,
            _Held(target, self.owner),  # type: ignore[arg-type]
            batch_size=batch_size,
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def state(self) -> RebuildState | None:
        return self.target.state()

    def begin(self) -> int:
        """Claims the rebuild (raises RebuildInProgressError when one runs);
        returns the position it starts from."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise RebuildInProgressError(self._busy())
            try:
                return self.target.claim(self.owner, self.lease_seconds)
            except RebuildInProgressError:
                raise RebuildInProgressError(self._busy()) from None

    def _busy(self) -> str:
        state = self.target.state()
        head = self.recorder.max_notification_id() or 0
        done = 0 if state is None or not head else min(state.log_position / head, 1.0)
        return f"Projection 'read-tables' is being rebuilt ({done:.0%} done)"

    def run(self, on_progress: Callable[[Progress], None] | None = None) -> int:
        """Folds the log into the new tables, then switches; returns the head reached.
        Call ``begin`` first. On an error the rebuild is recorded as failed."""
        try:
            while True:
                if self._stopping.is_set():
                    self.target.release(self.owner)
                    msg = "The rebuild was stopped (it resumes when started again)"
                    raise RebuildInProgressError(msg)
                progress = self.projector.step()
                if on_progress is not None:
                    on_progress(progress)
                if progress.head - progress.log_position <= self.projector.batch_size:
                    head = self.target.switch(self.owner, self.projector.rest)
                    if on_progress is not None:
                        on_progress(Progress(head, head, settled=True))
                    logger.info("read tables rebuilt", extra={"position": head})
                    return head
        except RebuildInProgressError:
            raise  # stopped, or another process took over: not a failure
        except Exception as error:
            logger.exception("rebuild failed")
            self.target.fail(self.owner, f"{type(error).__name__}: {error}")
            raise

    def start(self) -> None:
        """Claims the rebuild now (so its state shows at once) and runs it in a thread."""
        self.begin()
        self.run_in_background()

    def run_in_background(self) -> None:
        """``run`` in a thread of its own (after ``begin``)."""
        self._stopping.clear()
        thread = threading.Thread(target=self._run_quietly, name="rebuild", daemon=True)
        self._thread = thread
        thread.start()

    def _run_quietly(self) -> None:
        try:
            self.run()
        except Exception:
            logger.debug("rebuild thread ended early", exc_info=True)

    def resume_if_interrupted(self) -> bool:
        """Resumes in a thread a rebuild whose process died (at start-up)."""
        state = self.target.state()
        if state is None or state.state != "rebuilding" or state.held(self.lease_seconds):
            return False
        try:
            self.start()
        except RebuildInProgressError:
            return False  # another process resumed it first
        logger.info("resuming an interrupted rebuild", extra={"position": state.log_position})
        return True

    def stop(self) -> None:
        """Stops a rebuild running in this process between two batches (it keeps
        its position and resumes when started again)."""
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join()
