"""Commands, and the batchers that decide the commands that arrive together as one batch.

A ``Command`` is ready to run: its decision (on a unit of work), the key
naming what it decides about, and, for a command in steps, its next step.
A batcher takes the commands submitted to it (as jobs) and hands each
batch, in arrival order, to a ``BatchDecider`` (``domain.runner.CommandRunner
.decide_batch``), which decides them on one unit of work and saves it once
(group commit). ``CommandBatcher`` does so in a writer thread (or one per
writer lane, ``domain/lanes.py``); ``LoopBatcher`` on the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

from domain.errors import ConcurrentModificationError, StoreBusyError
from domain.unit_of_work import UnitOfWork

logger = logging.getLogger(__name__)

T = TypeVar("T")

Decide = Callable[[UnitOfWork], T]


@dataclass(frozen=True)
class Command(Generic[T]):
    """One command, ready to run: its decision (on a unit of work, saved by the
    caller, batchable), and for a command that saves in several steps, ``then``
    (its next step). ``key`` names what it decides about."""

    key: str
    decide: Decide[T]
    reads: tuple[UUID, ...] = ()
    """Aggregates the decision will look for: a batch asks the store once which
    of the uncached ones exist, instead of once for each (``UnitOfWork.look_ahead``)."""
    then: Callable[[T], Command[T] | None] | None = None
    """The next step, given this step's outcome (None: the command is done).
    Each step is saved on its own, and other commands run between steps (not
    those on the same key: they wait for the last step); the caller gets the
    last step's outcome."""
    room: int | None = None
    """Rows (``UnitOfWork.weight``) a batch leaves for this command under a
    store's bound; None: those of an ordinary command (``SaveWeights.command``)."""
    name: str = "command"
    """What the command is (``register``, ``leave``...): the observer's label, never an id."""


@dataclass
class _Job:
    """A command waiting for the batcher, with the context (request id) it came from."""

    key: str
    decide: Callable[[UnitOfWork], Any]
    future: Future[Any] = field(default_factory=Future)
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    reads: tuple[UUID, ...] = ()
    room: int | None = None


class BatchDecider(Protocol):
    """What a batcher hands its batches to (``domain.runner.CommandRunner``)."""

    def decide_batch(self, jobs: list[_Job]) -> list[_Job]:
        """Decides ``jobs`` in order and saves them; returns those left for the next batch."""
        ...


class CommandBatcher:
    """Decides the commands that arrive together as one batch, in one writer thread.

    Anchored on Equinox's ``Batcher``: while one batch is being saved, new
    commands queue; the next batch takes all of them (up to ``max_batch``).
    """

    def __init__(
        self, service: BatchDecider, *, max_batch: int = 128, name: str = "command-batcher"
    ) -> None:
        self.service = service
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._carry: list[_Job] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: _Job) -> Future[Any]:
        if self._stopped:  # (a command's next step, say) nobody would decide it
            _refuse_shutting_down(job)
        else:
            self._queue.put(job)
        return job.future

    def settle(self, future: Future[Any]) -> None:
        """Nothing to do: the writer thread decides ``future`` whoever waits."""

    def stop(self) -> None:
        self._stopped = True
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            batch = self._carry
            self._carry = []
            if not batch:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
            stopping = False
            while len(batch) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
            try:
                self._carry = self.service.decide_batch(batch)
            except BaseException as error:
                _fail_undecided(batch, error)
            if stopping:
                for job in self._carry:
                    _refuse_shutting_down(job)
                return


class LoopBatcher:
    """Decides commands in batches on the event loop that serves the requests.

    Meant for an embedded store (SQLite), where deciding and saving a batch
    is CPU work plus one local fsync. ``CommandBatcher``'s writer thread
    would give up the GIL at every sqlite call of a batch and wait to win it
    back from the busy loop, so a batch's save took many hand-offs between
    the two threads. Here the commands submitted during one turn of the loop
    are decided as one batch, and group-committed, in a callback of a later
    turn. The loop runs nothing else meanwhile, exactly as the GIL would let
    it run nothing else, and the fsync blocks it once per batch. It never
    waits for the store's write lock: a save on the loop that finds it taken
    raises ``StoreBusyError``, and the batch is decided again in a thread
    (``_decide_aside``) while the loop serves reads.

    Under concurrent load a batch *lingers*: while one of the last
    ``LONE_BATCHES`` batches held more than one command, the next is decided
    ``linger`` seconds after its first command arrived (at once when it is
    full), so the commands of clients sending meanwhile join it. A commit's
    cost is mostly the pages it writes and its fsync, shared by the whole
    batch. A lone client's commands, one at a time, stop lingering after
    ``LONE_BATCHES`` of them and are then decided on the next turn.

    Commands submitted from other threads (an admin tool, a test) are handed
    to the loop; ``settle`` decides at once a command that the loop itself
    waits for, which would otherwise wait for ever.
    """

    #: Batches of one command in a row after which a batch stops lingering.
    LONE_BATCHES = 8

    def __init__(
        self,
        service: BatchDecider,
        loop: asyncio.AbstractEventLoop,
        *,
        max_batch: int = 128,
        linger: float = 0.0,
    ) -> None:
        self.service = service
        self.loop = loop
        self.max_batch = max_batch
        self.linger = linger
        self._pending: list[_Job] = []
        self._due: asyncio.Handle | None = None  # the scheduled decision, if any
        self._lone_batches = self.LONE_BATCHES  # batches of one in a row
        self._stopped = False
        # A batch decided in a thread because the store's write lock was taken.
        self._aside: threading.Thread | None = None
        self._aside_carry: list[_Job] = []
        # Built on the loop's own thread (the application's lifespan).
        self._loop_thread = threading.get_ident()

    def on_loop(self) -> bool:
        """Whether this runs on the loop's thread (where no save waits for a lock)."""
        return threading.get_ident() == self._loop_thread

    def submit(self, job: _Job) -> Future[Any]:
        if self.on_loop():
            self._accept(job)
            return job.future
        try:
            self.loop.call_soon_threadsafe(self._accept, job)
        except RuntimeError:  # the loop is closed
            _refuse_shutting_down(job)
        return job.future

    def settle(self, future: Future[Any]) -> None:
        """On the loop, decides what is pending now, so ``future`` is resolved."""
        while self.on_loop() and not future.done() and (self._pending or self._aside):
            if self._aside is not None:
                self._back()  # the caller waits on the loop anyway
            else:
                self._decide_next()

    def stop(self) -> None:
        """Accepts nothing more, and decides what is pending."""
        self._stopped = True
        if self.on_loop():
            self._drain()
            return
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody will decide them
            for job in self._pending:
                _refuse_shutting_down(job)
            self._pending.clear()

    def _drain(self) -> None:
        self._back()
        while self._pending:
            self._decide_next()
            self._back()

    def _accept(self, job: _Job) -> None:
        if self._stopped:
            _refuse_shutting_down(job)
            return
        self._pending.append(job)
        if len(self._pending) >= self.max_batch:
            self._schedule(now=True)
        elif self._due is None:
            concurrent = self._lone_batches < self.LONE_BATCHES
            self._schedule(now=not (self.linger and concurrent))

    def _schedule(self, *, now: bool) -> None:
        if self._due is not None:
            if now and isinstance(self._due, asyncio.TimerHandle):
                self._due.cancel()  # full: no reason to wait any longer
            else:
                return
        self._due = (
            self.loop.call_soon(self._flush)
            if now
            else self.loop.call_later(self.linger, self._flush)
        )

    def _flush(self) -> None:
        """One batch per callback: its outcomes go out before the next."""
        self._due = None
        if self._aside is not None:
            return  # scheduled again when the batch aside is done
        if self._pending:
            self._decide_next()
        if self._pending:
            self._schedule(now=True)

    def _decide_next(self) -> None:
        batch = self._pending[: self.max_batch]
        del self._pending[: self.max_batch]
        self._lone_batches = self._lone_batches + 1 if len(batch) == 1 else 0
        try:
            carry = self.service.decide_batch(batch)
        except StoreBusyError:
            self._decide_aside([job for job in batch if not job.future.done()])
            return
        except BaseException as error:
            _fail_undecided(batch, error)
            return
        self._pending[:0] = carry

    def _decide_aside(self, batch: list[_Job]) -> None:
        """The store's write lock is taken (another process is writing), and
        nothing of ``batch`` was saved: a thread decides it again, where its
        save may wait for the lock (one lock timeout for the whole batch).
        Meanwhile the loop decides nothing more and goes on serving reads."""

        def run() -> None:
            try:
                self._aside_carry = self.service.decide_batch(batch)
            except BaseException as error:
                _fail_undecided(batch, error)
            try:
                self.loop.call_soon_threadsafe(self._back)
            except RuntimeError:  # the loop is closed: nobody will decide the rest
                for job in self._aside_carry:
                    _refuse_shutting_down(job)

        self._aside = threading.Thread(target=run, name="command-batcher-aside", daemon=True)
        self._aside.start()

    def _back(self) -> None:
        """On the loop, after the batch aside is done: deciding goes on."""
        if self._aside is None:
            return
        self._aside.join()
        self._aside = None
        self._pending[:0] = self._aside_carry
        self._aside_carry = []
        if self._pending and not self._stopped:
            self._schedule(now=True)


def _fail_undecided(batch: list[_Job], error: BaseException) -> None:
    """A batch failed unexpectedly: its callers still waiting get the error
    (never leave a caller waiting)."""
    logger.exception("command batch failed")
    for job in batch:
        if not job.future.done():
            job.future.set_exception(error)


def _refuse_shutting_down(job: _Job) -> None:
    job.future.set_exception(
        ConcurrentModificationError("The service is shutting down; please retry")
    )
