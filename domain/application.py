"""Commands of the registration service, as typed methods of an eventsourcing Application.

Each command is load -> decide -> save: it loads the few aggregates it needs
into a ``UnitOfWork``, asks them to decide (the rules live in the aggregates),
and every new domain event is saved in one atomic ``save``. Two commands that
decide on the same aggregate version collide in the store; the loser re-runs
on fresh state a bounded number of times (with jittered back-off) before the
client sees ``ConcurrentModificationError``.

Group commit: with a batcher started (``start_batching``: a ``LoopBatcher``
on the event loop, or a ``CommandBatcher`` in a writer thread, or one per
writer lane, ``domain/lanes.py``), the commands that arrive together are
decided one after another, in arrival order, on one shared unit of work,
and saved in ONE transaction (one fsync for many requests). Each keeps its
own outcome: a command refused by a rule fails alone. If the shared save
conflicts (a concurrent process won a race), every command of the batch re-runs
on its own; if the store cannot take it (unreachable, its lock stayed taken),
every command of the batch gets that one error. The waitlist's FIFO order is
the order of decisions, which is the order of arrival.

Storage maps its own "unique version" failure onto ``WriteConflictError``
(see ``infra/service.py``), so this module imports nothing but the standard
library and eventsourcing's domain and application modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import queue
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from types import ModuleType
from typing import Any, ClassVar, Generic, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, Cache, LRUCache
from eventsourcing.domain import Aggregate

from domain import model
from domain.errors import (
    ConcurrentModificationError,
    DuplicateGatheringError,
    DuplicateUserError,
    GatheringNotFoundError,
    InvariantViolationError,
    RegistrationDomainError,
    StoreBusyError,
    UserNotFoundError,
    WriteConflictError,
)
from domain.invariants import gathering_violations
from domain.lanes import WriterLanes
from domain.model import (
    Counts,
    Gathering,
    GatheringStatus,
    Registration,
    RegistrationStatus,
    User,
    WaitlistPage,
    gathering_aggregate_id,
    registration_aggregate_id,
    user_aggregate_id,
)
from domain.notes import Change, Note, Promotion, Violations
from domain.waitlist import Waitlist

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Room a batch leaves under a store's bound for one more ordinary command (a
# leave that promotes one person: six events and their rows).
COMMAND_WEIGHT = 30


@dataclass(frozen=True)
class SaveWeights:
    """How ``UnitOfWork.weight`` bounds the rows one save writes, for a store
    that bounds a transaction (``RegistrationService.max_save_weight``). The
    default assumes each event writes itself, a log entry and a read-table
    row, and each gathering two rows more."""

    per_event: int = 3
    per_aggregate: int = 0
    per_gathering: int = 2
    command: int = COMMAND_WEIGHT
    """Room a batch leaves under the bound for one more ordinary command."""


# When more notifications than this arrived from other processes since the
# cache was last clean, the whole cache is dropped instead of read through.
CACHE_INVALIDATION_WINDOW = 1_000
A = TypeVar("A", bound=Aggregate)


@dataclass(frozen=True)
class GatheringSpec:
    """What a new gathering is created with."""

    gathering_id: str
    title: str
    date: str
    capacity: int
    description: str = ""
    location: str | None = None
    organizer: str | None = None
    status: GatheringStatus = GatheringStatus.ACTIVE
    waitlist_enabled: bool = False


@dataclass(frozen=True)
class GatheringChanges:
    """A partial update of a gathering; None leaves a field as it is."""

    title: str | None = None
    description: str | None = None
    date: str | None = None
    location: str | None = None
    organizer: str | None = None
    status: GatheringStatus | None = None
    capacity: int | None = None
    waitlist_enabled: bool | None = None


@dataclass(frozen=True)
class UserState:
    user_id: str
    name: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class GatheringState:
    """A gathering as a command left it (the waitlist itself lives in the read tables)."""

    gathering_id: str
    title: str
    description: str
    date: str
    location: str | None
    organizer: str | None
    status: GatheringStatus
    capacity: int
    waitlist_enabled: bool
    registered_count: int
    waitlist_count: int
    created_at: datetime
    updated_at: datetime
    promoted: tuple[str, ...] = ()
    promotions_due: int = 0

    @property
    def available_spots(self) -> int:
        return self.capacity - self.registered_count


@dataclass(frozen=True)
class RegistrationOutcome:
    user_id: str
    gathering_id: str
    status: RegistrationStatus
    registered_at: datetime
    gathering_title: str
    gathering_date: str
    waitlist_position: int | None


@dataclass(frozen=True)
class LeaveOutcome:
    user_id: str
    gathering_id: str
    previous_status: RegistrationStatus
    promoted: tuple[str, ...]


class _DecideAgainError(Exception):
    """Internal: a refusal decided on cached state that may be stale. It stands
    if none of the streams read has moved on since (``RegistrationService.
    streams_advanced``); otherwise the command is decided again on fresh state,
    which gives its real outcome."""

    def __init__(self, refusal: RegistrationDomainError) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal


class UnitOfWork:
    """The aggregates that one or more commands load and change, saved together.

    An identity map: an aggregate is loaded once, and every command of a batch
    sees the changes that the commands before it made. ``weight`` estimates
    the rows a save of it writes, for stores that bound a transaction.
    """

    def __init__(
        self, service: RegistrationService, *, for_command: bool = False, fresh: bool = False
    ) -> None:
        self.service = service
        # A command's unit of work first brings the cache up to the log's head
        # (evicting what other processes changed), then reads it as it is.
        # Where the log cannot tell (``cache_may_be_stale``), it reads the cache
        # as it is unless ``fresh``: see RegistrationService.cache_may_be_stale.
        self.trust_cache = (
            for_command and not fresh and (service.cache_may_be_stale or service.refresh_cache())
        )
        self.unverified = self.trust_cache and service.cache_may_be_stale
        self._aggregates: dict[UUID, Aggregate | None] = {}
        self.notes: list[tuple[Note, contextvars.Context]] = []
        """What the decisions did (``note``), each with the context it was decided in."""
        self.origins: dict[int, contextvars.Context] = {}
        """The context (request) each pending event was decided in, by ``id``."""
        self._claimed: dict[UUID, int] = {}
        self._touched: set[UUID] = set()
        # What ``look_ahead`` learnt of aggregates the cache lacks.
        self._absent: set[UUID] = set()
        self._present: set[UUID] = set()

    def look_ahead(self, aggregate_ids: Sequence[UUID]) -> None:
        """Asks the store once which of ``aggregate_ids`` the cache lacks exist at
        all, so that ``find`` answers the others (never saved) without a look-up
        each. Only on a cache brought up to the log's head: another process may
        still create one after this look, and then the append of ours conflicts
        (the stream is no longer empty) and the command is decided again."""
        if not self.trust_cache or self.unverified:
            return
        unknown = [
            aggregate_id
            for aggregate_id in dict.fromkeys(aggregate_ids)
            if aggregate_id not in self._aggregates and not self.service.is_cached(aggregate_id)
        ]
        if unknown:
            existing = self.service.streams_existing(unknown)
            if existing is not None:
                self._present.update(existing)
                self._absent.update(set(unknown) - existing)

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        self._touched.add(aggregate_id)
        if aggregate_id in self._aggregates:
            aggregate = self._aggregates[aggregate_id]
        elif aggregate_id in self._absent:
            aggregate = self._aggregates[aggregate_id] = None
        else:
            aggregate = self.service.stored(
                aggregate_id,
                trust_cache=self.trust_cache,
                assume_absent=self.unverified,
                known_to_exist=aggregate_id in self._present,
            )
            self._aggregates[aggregate_id] = aggregate
        if aggregate is not None and not isinstance(aggregate, cls):
            msg = f"Aggregate {aggregate_id} is a {type(aggregate).__name__}, not a {cls.__name__}"
            raise InvariantViolationError(msg)
        return aggregate

    def load(self, cls: type[A], aggregate_id: UUID) -> A:
        aggregate = self.find(cls, aggregate_id)
        if aggregate is None:
            msg = f"{cls.__name__} {aggregate_id} is missing from the event store"
            raise InvariantViolationError(msg)
        return aggregate

    def add(self, aggregate: A) -> A:
        self._touched.add(aggregate.id)
        self._aggregates[aggregate.id] = aggregate
        return aggregate

    def claim(self, context: contextvars.Context) -> None:
        """Notes ``context`` as the origin of every event recorded since the last
        claim (one command's events, when commands are decided in a batch)."""
        for aggregate_id in self._touched:
            aggregate = self._aggregates.get(aggregate_id)
            if aggregate is None:
                continue
            pending = aggregate.pending_events
            claimed = self._claimed.get(aggregate_id, 0)
            for fact in pending[claimed:]:
                self.origins[id(fact)] = context
            self._claimed[aggregate_id] = len(pending)
        self._touched.clear()

    def note(self, note: Note) -> None:
        """Keeps what a decision did, for the runner to log once the save committed,
        in the context of the request that decided it (its request id)."""
        self.notes.append((note, contextvars.copy_context()))

    def changed(self) -> list[Aggregate]:
        return [a for a in self._aggregates.values() if a is not None and a.pending_events]

    def mark(self) -> int:
        """How many events are pending in all: a command that failed after this
        changed something iff the count moved (events are only ever added)."""
        return sum(len(a.pending_events) for a in self._aggregates.values() if a is not None)

    def changed_since(self, mark: int) -> bool:
        return self.mark() != mark

    def weight(self) -> int:
        """An upper bound of the rows a save writes, counted as the store says
        (``RegistrationService.save_weights``), plus one for a counter."""
        weights = self.service.save_weights
        rows = 1
        for aggregate in self.changed():
            rows += weights.per_event * len(aggregate.pending_events) + weights.per_aggregate
            if isinstance(aggregate, Gathering):
                rows += weights.per_gathering
        return rows

    def loaded_ids(self) -> list[UUID]:
        return list(self._aggregates)

    def read_positions(self) -> dict[UUID, int]:
        """Each aggregate read and left unchanged (or found absent, 0), at the
        version it was read: what a decision on this unit of work relied on
        beyond what its save checks."""
        return {
            aggregate_id: 0 if aggregate is None else aggregate.version
            for aggregate_id, aggregate in self._aggregates.items()
            if aggregate is None or not aggregate.pending_events
        }

    def committed(self) -> None:
        """The save succeeded: what the decisions noted is logged."""
        for note, context in self.notes:
            context.run(_log, note)


Decide = Callable[[UnitOfWork], T]


@dataclass(frozen=True)
class Command(Generic[T]):
    """One command, ready to run: its decision (on a unit of work, saved by the
    caller, batchable) or, for a command that saves in several steps, ``solo``
    (run alone, between batches). ``key`` names what it decides about."""

    key: str
    decide: Decide[T] | None = None
    solo: Callable[[], T] | None = None
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


@dataclass
class _Job:
    """A command waiting for the batcher, with the context (request id) it came from."""

    key: str
    decide: Callable[[UnitOfWork], Any] | None
    future: Future[Any] = field(default_factory=Future)
    solo: Callable[[], Any] | None = None
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    reads: tuple[UUID, ...] = ()
    room: int | None = None


class CommandBatcher:
    """Decides the commands that arrive together as one batch, in one writer thread.

    Anchored on Equinox's ``Batcher``: while one batch is being saved, new
    commands queue; the next batch takes all of them (up to ``max_batch``).
    """

    def __init__(
        self, service: RegistrationService, *, max_batch: int = 128, name: str = "command-batcher"
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
        service: RegistrationService,
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


class RegistrationService(Application[UUID]):
    """The registration service's command side."""

    name = "Registrations"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {
        Gathering: 50,
        Registration: 50,
        WaitlistPage: 50,
    }
    max_conflict_retries: int = 12
    conflict_backoff_seconds: float = 0.004
    invariant_violations_raise: bool = True
    # Stores that bound a transaction (DynamoDB: 100 items) set these: the rows
    # one save may write, and so how many people one save may promote. A
    # capacity raise owing more promotions saves them in several steps.
    max_save_weight: int | None = None
    max_promotions_per_save: int | None = None
    save_weights: SaveWeights = SaveWeights()
    #: People one step of a capacity raise promotes, on every store: a raise
    #: owing more saves them in further steps, and other commands run between
    #: steps (a step's work holds the event loop, or a writer lane, for a few
    #: milliseconds, not for the whole raise).
    promotions_per_step: int = 50
    #: True where the log cannot tell which cached aggregates other processes
    #: changed (a log indexed after the appends, as on DynamoDB). Commands then
    #: still decide on the cache without asking the store: every save is
    #: conditional on the versions it read, so a stale aggregate makes the save
    #: conflict and the command is decided again on fresh state. A refusal saves
    #: nothing, so before it is reported the streams it read are checked
    #: (``streams_advanced``): it stands if none moved on, else it is decided
    #: again on fresh state.
    cache_may_be_stale: bool = False

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__(env)
        self._locks = tuple(threading.Lock() for _ in range(64))
        self._batcher: CommandBatcher | LoopBatcher | WriterLanes | None = None
        # Every cached aggregate reflects the log up to this notification id.
        self._cache_clean_at: int | None = None
        self._cache_lock = threading.Lock()
        # Keys with a command between its steps -> the commands on that key
        # that wait for its last step (with the futures their callers hold).
        self._stepping: dict[str, list[tuple[Command[Any], Future[Any]]]] = {}
        self._stepping_lock = threading.Lock()

    # -- running commands ----------------------------------------------------

    def start_batching(
        self,
        max_batch: int = 128,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        linger: float = 0.0,
        lanes: int = 1,
    ) -> None:
        """Commands from now on are decided in batches and group-committed: on
        ``loop`` when given (call this from that loop; ``linger``: see
        ``LoopBatcher``), else in a writer thread, or in ``lanes`` writer
        threads that save at the same time (``domain/lanes.py``)."""
        if self._batcher is not None:
            return
        if loop is not None:
            self._batcher = LoopBatcher(self, loop, max_batch=max_batch, linger=linger)
        elif lanes == 1:
            self._batcher = CommandBatcher(self, max_batch=max_batch)
        else:
            self._batcher = WriterLanes(
                lambda n: CommandBatcher(self, max_batch=max_batch, name=f"command-batcher-{n}"),
                lanes,
            )

    def stop_batching(self) -> None:
        if self._batcher is not None:
            self._batcher.stop()
            self._batcher = None

    def close(self) -> None:
        self.stop_batching()
        super().close()

    def submit(self, command: Command[T]) -> Future[T]:
        """Hands ``command`` to the batcher; the future holds its outcome (or its error).

        Without a batcher (not started), the command runs at once, here. A
        command in steps (``Command.then``) has each step submitted when the
        one before committed; commands on its key wait for its last step.
        """
        if self._batcher is None:
            return _settled(partial(self._run_here, command))
        with self._stepping_lock:
            waiting = self._stepping.get(command.key)
            if waiting is not None:
                held: Future[T] = Future()
                waiting.append((command, held))
                return held
            if command.then is not None:
                self._stepping[command.key] = []
        if command.then is None:
            return self._batcher.submit(_job(command))
        outcome: Future[T] = Future()
        self._submit_step(command, outcome)
        return outcome

    def _submit_step(self, step: Command[T], outcome: Future[T]) -> None:
        def committed(done: Future[T]) -> None:
            try:
                result = done.result()
                following = step.then(result) if step.then is not None else None
            except BaseException as error:
                self._end_steps(step.key)
                outcome.set_exception(error)
                return
            if following is None:
                self._end_steps(step.key)
                outcome.set_result(result)
            else:
                self._submit_step(following, outcome)

        assert self._batcher is not None
        self._batcher.submit(_job(step)).add_done_callback(committed)

    def _end_steps(self, key: str) -> None:
        """The commands that waited for the last step of a command on ``key``, in order."""
        with self._stepping_lock:
            waiting = self._stepping.pop(key, [])
        for command, held in waiting:
            self.submit(command).add_done_callback(partial(_copy_outcome, to=held))

    def _run_here(self, command: Command[T]) -> T:
        """Runs ``command`` (every step of it) in this thread."""
        step: Command[T] | None = command
        outcome: T
        while step is not None:
            if step.solo is not None:
                outcome = step.solo()
            else:
                assert step.decide is not None
                outcome = self._retrying(step.key, step.decide)
            step = step.then(outcome) if step.then is not None else None
        return outcome

    def run(self, command: Command[T]) -> T:
        """Runs ``command`` and waits for its outcome."""
        future = self.submit(command)
        if self._batcher is not None:
            self._batcher.settle(future)
        return future.result()

    # -- the commands, also as plain methods that wait for their outcome -------

    def create_user(self, user_id: str, name: str) -> UserState:
        return self.run(self.create_user_command(user_id, name))

    def create_gathering(self, spec: GatheringSpec) -> GatheringState:
        return self.run(self.create_gathering_command(spec))

    def revise_gathering(self, gathering_id: str, changes: GatheringChanges) -> GatheringState:
        return self.run(self.revise_gathering_command(gathering_id, changes))

    def delete_gathering(self, gathering_id: str) -> None:
        self.run(self.delete_gathering_command(gathering_id))

    def register(self, user_id: str, gathering_id: str) -> RegistrationOutcome:
        return self.run(self.register_command(user_id, gathering_id))

    def leave(self, user_id: str, gathering_id: str) -> LeaveOutcome:
        return self.run(self.leave_command(user_id, gathering_id))

    def decide_batch(self, jobs: list[_Job]) -> list[_Job]:
        """Decides ``jobs`` in order on one unit of work and saves it once.

        Returns the jobs left for the next batch (when a store's transaction
        bound is reached). Outcomes are handed out only after the save: a
        refusal decided on state that never committed is never reported.
        """
        uow = UnitOfWork(self, for_command=True)
        # Up to the first command that runs alone: the batch ends there.
        solo = next((n for n, job in enumerate(jobs) if job.solo is not None), len(jobs))
        uow.look_ahead([aggregate_id for job in jobs[:solo] for aggregate_id in job.reads])
        decided: list[tuple[_Job, Any, BaseException | None]] = []
        for n, job in enumerate(jobs):
            if job.solo is not None:
                if decided:
                    self._commit_batch(uow, decided)
                    return jobs[n:]
                self._resolve(job, partial(job.context.run, job.solo))
                return jobs[n + 1 :]
            assert job.decide is not None
            bound = self.max_save_weight
            room = self.save_weights.command if job.room is None else job.room
            if bound is not None and decided and uow.weight() > bound - room:
                self._commit_batch(uow, decided)
                return jobs[n:]
            mark = uow.mark()
            try:
                outcome = job.context.run(job.decide, uow)
            except RegistrationDomainError as error:
                if uow.changed_since(mark) or isinstance(error, InvariantViolationError):
                    # A rule broke after something was recorded: nothing of this
                    # batch can be trusted; every command runs on its own (up to
                    # one that runs alone anyway: it and those after it are left
                    # for the next batch).
                    self._evict(uow)
                    self._run_each_alone([j for j, _, _ in decided] + jobs[n:solo])
                    return jobs[solo:]
                # Decided on cached state that may be stale: checked after the
                # save (and decided again on fresh state if a stream moved on).
                decided.append((job, None, _DecideAgainError(error) if uow.unverified else error))
            except Exception:
                self._evict(uow)
                self._run_each_alone([j for j, _, _ in decided] + jobs[n:solo])
                return jobs[solo:]
            else:
                uow.claim(job.context)
                decided.append((job, outcome, None))
        self._commit_batch(uow, decided)
        return []

    def _commit_batch(
        self, uow: UnitOfWork, decided: list[tuple[_Job, Any, BaseException | None]]
    ) -> None:
        unverified = any(isinstance(error, _DecideAgainError) for _, _, error in decided)
        read = uow.read_positions() if unverified else {}
        try:
            self._save(uow)
        except StoreBusyError:
            self._evict(uow)
            raise  # on the event loop: the batcher decides it again where it may wait
        except WriteConflictError:
            # Another process saved one of these aggregates first.
            self._evict(uow)
            self._run_each_alone([job for job, _, _ in decided])
            return
        except Exception as failure:
            # The store cannot take the save (its lock stayed taken, it is
            # unreachable): one answer for the batch, not one wait per command.
            self._evict(uow)
            for job, _, _ in decided:
                job.future.set_exception(failure)
            return
        # What the batch changed, its save checked; the rest it only read.
        refusals_stand = unverified and self._still_current(read)
        for job, outcome, error in decided:
            if isinstance(error, _DecideAgainError) and refusals_stand:
                job.future.set_exception(error.refusal)
            elif isinstance(error, _DecideAgainError):
                decide = job.decide
                assert decide is not None
                self._resolve(
                    job, partial(job.context.run, self._retrying, job.key, decide, fresh=True)
                )
            elif error is None:
                job.future.set_result(outcome)
            else:
                job.future.set_exception(error)

    def _run_each_alone(self, jobs: list[_Job]) -> None:
        """After a batch failed (its save conflicted, or a rule broke part-way):
        each command again, alone, on state read afresh from the store."""
        for job in jobs:
            if job.solo is not None:  # a command that saves in steps runs as it always does
                self._resolve(job, partial(job.context.run, job.solo))
            else:
                decide = cast("Decide[Any]", job.decide)
                self._resolve(
                    job, partial(job.context.run, self._retrying, job.key, decide, fresh=True)
                )

    @staticmethod
    def _resolve(job: _Job, run: Callable[[], Any]) -> None:
        try:
            job.future.set_result(run())
        except StoreBusyError:
            raise  # nothing saved: the batcher runs it again where it may wait
        except BaseException as error:
            job.future.set_exception(error)

    def _save(self, uow: UnitOfWork) -> None:
        changed = uow.changed()
        if changed:
            # The event loop never waits for the store's write lock: a save there
            # raises StoreBusyError instead (LoopBatcher).
            on_loop = isinstance(self._batcher, LoopBatcher) and self._batcher.on_loop()
            no_wait = {"wait_for_lock": False} if on_loop else {}
            saved = self.save(*changed, origins=uow.origins, **no_wait)
            ids = [r.notification.id for r in saved if r.notification.id]
            cache = self.repository.cache
            if cache is not None:
                for aggregate in changed:  # the cache holds what was saved
                    cache.put(aggregate.id, aggregate)
            with self._cache_lock:
                # Nobody else wrote between our last look and this save: the
                # cache (holding what we just saved) is clean up to its end.
                clean_at = self._cache_clean_at
                if ids and clean_at is not None and min(ids) == clean_at + 1:
                    self._cache_clean_at = max(ids)
        uow.committed()

    def refresh_cache(self) -> bool:
        """Evicts the cached aggregates that other processes changed since we last looked.

        Reads the log's head, and when it moved past what this process knows,
        the originators of the notifications in between. Returns whether the
        cache now reflects the whole log (then reads skip fast-forwarding).
        """
        cache = self.repository.cache
        if cache is None:
            return False
        with self._cache_lock:
            head = self.recorder.max_notification_id() or 0
            clean_at = self._cache_clean_at
            if clean_at is None or head - clean_at > CACHE_INVALIDATION_WINDOW:
                _drop_all(cache)
            elif head > clean_at:
                for notification in self.recorder.select_notifications(
                    start=clean_at + 1, limit=head - clean_at, stop=head
                ):
                    with contextlib.suppress(KeyError):
                        cache.get(UUID(str(notification.originator_id)), evict=True)
            self._cache_clean_at = head
            return True

    def _evict(self, uow: UnitOfWork) -> None:
        """Forgets cached aggregates a failed batch may have changed in memory."""
        cache = self.repository.cache
        if cache is None:
            return
        for aggregate_id in uow.loaded_ids():
            with contextlib.suppress(KeyError):
                cache.get(aggregate_id, evict=True)

    def _retrying(self, key: str, decide: Decide[T], *, fresh: bool = False) -> T:
        """Runs ``decide`` on a fresh unit of work and saves it, until it saves without a
        conflict (bounded, jittered back-off).

        Commands on the same key take turns within this process, so conflicts
        only arise between processes; across processes the store's unique
        (stream, version) constraint decides who wins.
        """
        lock = self._locks[hash(key) % len(self._locks)]
        for attempt in range(self.max_conflict_retries + 1):
            # After a conflict, the cache is what was stale: read afresh.
            uow = UnitOfWork(self, for_command=True, fresh=fresh or attempt > 0)
            try:
                with lock:
                    try:
                        outcome = decide(uow)
                    except RegistrationDomainError:
                        if not uow.unverified or uow.changed():
                            raise
                        if self._still_current(uow.read_positions()):
                            raise
                        # Refused on cached state another process changed:
                        # decide again on fresh state before answering.
                        uow = UnitOfWork(self, for_command=True, fresh=True)
                        outcome = decide(uow)
                    self._save(uow)
                    return outcome
            except (WriteConflictError, InvariantViolationError) as error:
                # Aggregates loaded one after another while another process
                # saved may not be one consistent cut (a page ahead of its
                # gathering): a broken invariant is first taken for that, and
                # decided again on fresh state; the save would have conflicted.
                self._evict(uow)
                if attempt == self.max_conflict_retries:
                    if isinstance(error, InvariantViolationError):
                        raise
                    break
                ceiling = min(0.25, self.conflict_backoff_seconds * 2**attempt)
                time.sleep(random.uniform(0, ceiling))  # noqa: S311 - jitter, not crypto
            except BaseException:
                self._evict(uow)
                raise
        raise ConcurrentModificationError(
            "The resource kept changing under this request; please retry"
        )

    def stored(
        self,
        aggregate_id: UUID,
        *,
        trust_cache: bool = False,
        assume_absent: bool = False,
        known_to_exist: bool = False,
    ) -> Aggregate | None:
        """The aggregate as stored (through the cache), or None when it was never saved.

        ``trust_cache``: the cache was just refreshed (``refresh_cache``), so a
        cached aggregate is current without asking the store for newer events.
        ``assume_absent``: with ``trust_cache``, an aggregate the cache lacks is
        taken as never saved, without asking the store. Sound only where every
        decision on an absence is checked later: creating it is an append
        conditional on its stream being empty (a conflict if it exists), and a
        refusal stands only if the streams it read have not moved on
        (``UnitOfWork.unverified``, ``_still_current``).
        ``known_to_exist``: the store was just asked (``UnitOfWork.look_ahead``).
        """
        cache = self.repository.cache
        if trust_cache and cache is not None:
            with contextlib.suppress(KeyError):
                return cast("Aggregate", cache.get(aggregate_id))
            if assume_absent:
                return None
        if not known_to_exist and self.stream_exists(aggregate_id) is False:
            return None  # one cheap look instead of a snapshot and a stream read
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id, projector_func=_replay)
        except AggregateNotFoundError:
            return None
        return aggregate

    def stream_exists(self, aggregate_id: UUID) -> bool | None:
        """Whether the store holds events of ``aggregate_id`` (None: cannot tell cheaply)."""
        return None

    def streams_existing(self, aggregate_ids: Sequence[UUID]) -> set[UUID] | None:
        """Which of ``aggregate_ids`` the store holds events of, in one look
        (None: cannot tell cheaply)."""
        return None

    def is_cached(self, aggregate_id: UUID) -> bool:
        cache = self.repository.cache
        return cache is not None and aggregate_id in cache.cache

    def streams_advanced(self, versions: Mapping[UUID, int]) -> set[UUID]:
        """Which of the streams hold an event after the given version (one
        consistent look at all of them). Without a way to ask, every one."""
        return set(versions)

    def _still_current(self, read: Mapping[UUID, int]) -> bool:
        """Whether no stream read has moved on since: a refusal decided on what
        was read then stands (it is the answer the store's state gives now)."""
        try:
            return not self.streams_advanced(read)
        except Exception:  # cannot tell: decided again on fresh state instead
            logger.warning("could not check the streams a refusal read", exc_info=True)
            return False

    # -- users ---------------------------------------------------------------

    def create_user_command(self, user_id: str, name: str) -> Command[UserState]:
        def decide(uow: UnitOfWork) -> UserState:
            if uow.find(User, user_aggregate_id(user_id)) is not None:
                raise DuplicateUserError(f"User '{user_id}' already exists")
            user = uow.add(User(user_id=user_id, name=name))
            return _user_state(user)

        return Command(f"user/{user_id}", decide, reads=(user_aggregate_id(user_id),))

    def get_user(self, user_id: str) -> User:
        user = UnitOfWork(self).find(User, user_aggregate_id(user_id))
        if user is None:
            raise UserNotFoundError(f"User '{user_id}' not found")
        return user

    # -- gatherings ----------------------------------------------------------

    def create_gathering_command(self, spec: GatheringSpec) -> Command[GatheringState]:
        Gathering.valid_capacity(spec.capacity)

        def decide(uow: UnitOfWork) -> GatheringState:
            if uow.find(Gathering, gathering_aggregate_id(spec.gathering_id)) is not None:
                # A deleted gathering's id stays retired: its history is kept.
                raise DuplicateGatheringError(f"Event '{spec.gathering_id}' already exists")
            gathering = uow.add(Gathering(**asdict(spec) | {"status": str(spec.status)}))
            return _gathering_state(gathering)

        return Command(f"gathering/{spec.gathering_id}", decide)

    def get_gathering(self, gathering_id: str) -> Gathering:
        return _open_gathering(UnitOfWork(self), gathering_id)

    def revise_gathering_command(
        self, gathering_id: str, changes: GatheringChanges
    ) -> Command[GatheringState]:
        """Changes details and capacity; a capacity rise promotes waitlisted people FIFO.

        A raise owing more than ``promotions_per_step`` promotions saves them in
        further steps before it answers (readers may see the steps; see the
        README's consistency model); the outcome lists everyone promoted.
        """
        if changes.capacity is not None:
            Gathering.valid_capacity(changes.capacity)
        step = self._promotion_step()

        def decide(uow: UnitOfWork) -> GatheringState:
            gathering = _open_gathering(uow, gathering_id)
            before = gathering.counts()
            if changes.capacity is not None:
                gathering.resize(changes.capacity)  # checks before anything is recorded
            revision = {
                "title": _changed(gathering.title, changes.title),
                "description": _changed(gathering.description, changes.description),
                "date": _changed(gathering.date, changes.date),
                "location": _changed(gathering.location, changes.location),
                "organizer": _changed(gathering.organizer, changes.organizer),
                "status": _changed(
                    str(gathering.status), None if changes.status is None else str(changes.status)
                ),
            }
            waitlist_enabled = _changed(gathering.waitlist_enabled, changes.waitlist_enabled)
            if waitlist_enabled is not None or any(v is not None for v in revision.values()):
                gathering.revise(**revision, waitlist_enabled=waitlist_enabled)
            promoted = Waitlist(uow, gathering).promote_due("capacity raised", step, before)
            return _gathering_state(gathering, promoted)

        return self._step_command(gathering_id, decide)

    def _promotion_step(self) -> int:
        """How many people one step of a capacity raise promotes."""
        bound = self.max_promotions_per_save
        return self.promotions_per_step if bound is None else min(bound, self.promotions_per_step)

    def _promotions_owed(
        self, gathering_id: str, state: GatheringState
    ) -> Command[GatheringState] | None:
        """The next step of a capacity raise that still owes seats: it promotes
        the next people; its outcome lists everyone promoted so far."""
        if not state.promotions_due:
            return None
        step = self._promotion_step()

        def decide(uow: UnitOfWork) -> GatheringState:
            gathering = _open_gathering(uow, gathering_id)
            promoted = Waitlist(uow, gathering).promote_due("capacity raised", step)
            return _gathering_state(gathering, state.promoted + promoted)

        return self._step_command(gathering_id, decide)

    def _step_command(
        self, gathering_id: str, decide: Decide[GatheringState]
    ) -> Command[GatheringState]:
        """``decide``, then, while seats are owed, a step promoting the next people."""
        return Command(
            f"gathering/{gathering_id}",
            decide,
            then=partial(self._promotions_owed, gathering_id),
            room=self.save_weights.command * self._promotion_step(),
        )

    def delete_gathering_command(self, gathering_id: str) -> Command[None]:
        def decide(uow: UnitOfWork) -> None:
            _open_gathering(uow, gathering_id).retire()

        return Command(f"gathering/{gathering_id}", decide)

    # -- registrations -------------------------------------------------------

    def register_command(self, user_id: str, gathering_id: str) -> Command[RegistrationOutcome]:
        """Confirms a seat, or a place at the tail of the waitlist, or refuses."""

        def decide(uow: UnitOfWork) -> RegistrationOutcome:
            _existing_user(uow, user_id)
            gathering = _open_gathering(uow, gathering_id)
            gathering.ensure_open()
            waitlist = Waitlist(uow, gathering)
            # Seats owed to waiting people (a promotion step cut short) go first.
            waitlist.promote_due("seats owed", self.max_promotions_per_save)
            registration = waitlist.admit(user_id)
            self._check_invariants(uow, gathering)
            outcome = _registration_outcome(gathering, registration)
            status, position = str(outcome.status), outcome.waitlist_position
            uow.note(Change("register", gathering_id, user_id, status, position))
            return outcome

        reads = (
            user_aggregate_id(user_id),
            gathering_aggregate_id(gathering_id),
            registration_aggregate_id(gathering_id, user_id),
        )
        return Command(f"gathering/{gathering_id}", decide, reads=reads)

    def leave_command(self, user_id: str, gathering_id: str) -> Command[LeaveOutcome]:
        """Withdraws a registration; a freed seat goes to the head of the waitlist."""

        def decide(uow: UnitOfWork) -> LeaveOutcome:
            _existing_user(uow, user_id)
            gathering = _open_gathering(uow, gathering_id)
            before = gathering.counts()
            waitlist = Waitlist(uow, gathering)
            previous = waitlist.withdraw(user_id)
            uow.note(Change("leave", gathering_id, user_id, f"left {previous}"))
            cause = f"'{user_id}' left"
            promoted = waitlist.promote_due(cause, self.max_promotions_per_save, before)
            self._check_invariants(uow, gathering)
            return LeaveOutcome(user_id, gathering_id, previous, promoted)

        return Command(f"gathering/{gathering_id}", decide)

    def waitlist_head(self, gathering_id: str, count: int) -> list[str]:
        """The first ``count`` people waiting, in order, read from the event store."""
        uow = UnitOfWork(self)
        return Waitlist(uow, _open_gathering(uow, gathering_id)).head(count)

    # -- internals -----------------------------------------------------------

    def _check_invariants(self, uow: UnitOfWork, gathering: Gathering) -> None:
        """Refuses a decision that broke an invariant (an assertion), or, in
        production (``invariant_violations_raise`` False), notes it for the log."""
        violations = gathering_violations(gathering)
        if not violations:
            return
        if self.invariant_violations_raise:
            raise InvariantViolationError("; ".join(violations))
        uow.note(Violations(gathering.gathering_id, tuple(violations)))


def _job(command: Command[Any]) -> _Job:
    return _Job(
        command.key, command.decide, solo=command.solo, reads=command.reads, room=command.room
    )


def _settled(run: Callable[[], T]) -> Future[T]:
    future: Future[T] = Future()
    try:
        future.set_result(run())
    except BaseException as error:
        future.set_exception(error)
    return future


def _copy_outcome(done: Future[T], *, to: Future[T]) -> None:
    error = done.exception()
    if error is None:
        to.set_result(done.result())
    else:
        to.set_exception(error)


def _log(note: Note) -> None:
    """One "registration change" line of what a committed decision did."""
    if isinstance(note, Violations):
        logger.error(
            "invariant violated",
            extra={"eventId": note.gathering_id, "violations": list(note.violations)},
        )
        return
    if isinstance(note, Promotion):
        logger.info(
            "registration change",
            extra={
                "operation": "promote",
                "eventId": note.gathering_id,
                "userIds": list(note.user_ids),
                "outcome": "promoted",
                "cause": note.cause,
                "before": _counted(note.before),
                "after": _counted(note.after),
            },
        )
        return
    fields: dict[str, object] = {
        "operation": note.operation,
        "userId": note.user_id,
        "eventId": note.gathering_id,
        "outcome": note.outcome,
    }
    if note.operation == "register":
        fields["waitlistPosition"] = note.waitlist_position
    logger.info("registration change", extra=fields)


def _counted(counts: Counts) -> dict[str, int]:
    return {
        "registeredCount": counts.registered,
        "waitlistCount": counts.waitlisted,
        "capacity": counts.capacity,
    }


def _replay(aggregate: Aggregate | None, events: Iterable[Aggregate.Event]) -> Aggregate | None:
    """eventsourcing's ``project_aggregate`` without its ``isinstance`` check of
    each event against a runtime protocol, which was most of a replay's time."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def _drop_all(cache: Cache[Any, Any]) -> None:
    cache.cache.clear()
    if isinstance(cache, LRUCache):
        with cache.lock:
            cache.clear()
            cache.full = False


def _open_gathering(uow: UnitOfWork, gathering_id: str) -> Gathering:
    gathering = uow.find(Gathering, gathering_aggregate_id(gathering_id))
    if gathering is None or gathering.deleted:
        raise GatheringNotFoundError(f"Event '{gathering_id}' not found")
    return gathering


def _existing_user(uow: UnitOfWork, user_id: str) -> User:
    user = uow.find(User, user_aggregate_id(user_id))
    if user is None:
        raise UserNotFoundError(f"User '{user_id}' not found")
    return user


def _changed(current: T, proposed: T | None) -> T | None:
    return None if proposed is None or proposed == current else proposed


def _registration_outcome(gathering: Gathering, registration: Registration) -> RegistrationOutcome:
    """What a registration just admitted holds: a seat, or the ticket at the tail."""
    return RegistrationOutcome(
        user_id=registration.user_id,
        gathering_id=gathering.gathering_id,
        status=RegistrationStatus(registration.status),
        # The gathering event that took the seat or ticket is the one the
        # read tables show, so the response carries its timestamp.
        registered_at=gathering.modified_on,
        gathering_title=gathering.title,
        gathering_date=gathering.date,
        waitlist_position=None if registration.ticket is None else gathering.waitlist_count,
    )


def _user_state(user: User) -> UserState:
    return UserState(
        user_id=user.user_id,
        name=user.name,
        created_at=user.created_on,
        updated_at=user.modified_on,
    )


def _gathering_state(gathering: Gathering, promoted: Sequence[str] = ()) -> GatheringState:
    return GatheringState(
        gathering_id=gathering.gathering_id,
        title=gathering.title,
        description=gathering.description,
        date=gathering.date,
        location=gathering.location,
        organizer=gathering.organizer,
        status=GatheringStatus(gathering.status),
        capacity=gathering.capacity,
        waitlist_enabled=gathering.waitlist_enabled,
        registered_count=gathering.registered_count,
        waitlist_count=gathering.waitlist_count,
        created_at=gathering.created_on,
        updated_at=gathering.modified_on,
        promoted=tuple(promoted),
        promotions_due=gathering.promotions_due,
    )


class _MovedToTheModel(ModuleType):
    """This module, for code written when the waitlist lived here (a test that
    shrinks the waitlist's pages, say): names of the domain model that this
    module does not define are read, set and deleted on ``domain.model``."""

    def _forwards(self, name: str) -> bool:
        return name not in self.__dict__ and name in _MODEL_NAMES

    def __getattr__(self, name: str) -> object:
        if name in _MODEL_NAMES:
            return getattr(model, name)
        msg = f"module {self.__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)

    def __setattr__(self, name: str, value: object) -> None:
        if self._forwards(name):
            setattr(model, name, value)
        else:
            super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if self._forwards(name):
            delattr(model, name)
        else:
            super().__delattr__(name)


_MODEL_NAMES = frozenset(vars(model))
sys.modules[__name__].__class__ = _MovedToTheModel
