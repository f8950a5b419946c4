"""The command runner: how a command is decided, saved, retried and answered.

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
fails (a concurrent process won a race), every command of the batch re-runs
on its own. The waitlist's FIFO order is the order of decisions, which is
the order of arrival. A command in steps (``Command.then``) has each step
submitted once the one before committed; commands on its key wait for its
last step. What the decisions noted is logged once their save committed.

Storage maps its own "unique version" failure onto ``WriteConflictError``
(see ``infra/service.py``), so this module imports nothing but the standard
library and eventsourcing's domain and application modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from functools import partial
from typing import Any, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, Cache, LRUCache
from eventsourcing.domain import Aggregate

from domain.batching import (
    Command,
    CommandBatcher,
    Decide,
    LoopBatcher,
    _Job,
)
from domain.errors import (
    ConcurrentModificationError,
    InvariantViolationError,
    RegistrationDomainError,
    StoreBusyError,
    WriteConflictError,
)
from domain.lanes import WriterLanes
from domain.notes import Note
from domain.observer import CommandObserver, QuietObserver
from domain.unit_of_work import SaveWeights, UnitOfWork

logger = logging.getLogger(__name__)

T = TypeVar("T")

# When more notifications than this arrived from other processes since the
# cache was last clean, the whole cache is dropped instead of read through.
CACHE_INVALIDATION_WINDOW = 1_000


class _DecideAgainError(Exception):
    """Internal: a refusal decided on cached state that may be stale. It stands
    if none of the streams read has moved on since (``RegistrationService.
    streams_advanced``); otherwise the command is decided again on fresh state,
    which gives its real outcome."""

    def __init__(self, refusal: RegistrationDomainError) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal


class CommandRunner(Application[UUID]):
    """Runs commands (``submit``, ``run``): in batches once ``start_batching``
    was called, else at once in the calling thread; saves them (``_save``),
    retries conflicts (``_retrying``) and keeps the aggregate cache current."""

    max_conflict_retries: int = 12
    conflict_backoff_seconds: float = 0.004
    # Stores that bound a transaction (DynamoDB: 100 items) set these: the rows
    # one save may write, and so how many people one save may promote. A
    # capacity raise owing more promotions saves them in several steps.
    max_save_weight: int | None = None
    max_promotions_per_save: int | None = None
    save_weights: SaveWeights = SaveWeights()
    #: Told of every command's outcome and every committed batch (metrics: see
    #: ``domain/observer.py``); the default observes nothing.
    observer: CommandObserver = QuietObserver()
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
        one before committed; commands on its key wait for its last step. The
        observer is told of the outcome once, when the command (its last step) ends.
        """
        outcome = self._submit(command)
        outcome.add_done_callback(partial(self._observe, command.name))
        return outcome

    def _observe(self, name: str, done: Future[Any]) -> None:
        if done.cancelled():
            return
        error = done.exception()
        try:
            self.observer.command_settled(name, None if error else done.result(), error)
        except Exception:  # an observer never fails a command
            logger.exception("the command observer failed")

    def _submit(self, command: Command[T]) -> Future[T]:
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
            self._submit(command).add_done_callback(partial(_copy_outcome, to=held))

    def _run_here(self, command: Command[T]) -> T:
        """Runs ``command`` (every step of it) in this thread."""
        step: Command[T] | None = command
        outcome: T
        while step is not None:
            outcome = self._retrying(step.key, step.decide)
            step = step.then(outcome) if step.then is not None else None
        return outcome

    def run(self, command: Command[T]) -> T:
        """Runs ``command`` and waits for its outcome."""
        future = self.submit(command)
        if self._batcher is not None:
            self._batcher.settle(future)
        return future.result()

    def decide_batch(self, jobs: list[_Job]) -> list[_Job]:
        """Decides ``jobs`` in order on one unit of work and saves it once.

        Returns the jobs left for the next batch (when a store's transaction
        bound is reached). Outcomes are handed out only after the save: a
        refusal decided on state that never committed is never reported.
        """
        uow = UnitOfWork(self, for_command=True)
        uow.look_ahead([aggregate_id for job in jobs for aggregate_id in job.reads])
        decided: list[tuple[_Job, Any, BaseException | None]] = []
        for n, job in enumerate(jobs):
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
                    # batch can be trusted; every command runs on its own.
                    self._evict(uow)
                    self._run_each_alone([j for j, _, _ in decided] + jobs[n:])
                    return []
                # Decided on cached state that may be stale: checked after the
                # save (and decided again on fresh state if a stream moved on).
                decided.append((job, None, _DecideAgainError(error) if uow.unverified else error))
            except Exception:
                self._evict(uow)
                self._run_each_alone([j for j, _, _ in decided] + jobs[n:])
                return []
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
        started = time.perf_counter()
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
        try:
            self.observer.batch_committed(len(decided), time.perf_counter() - started)
        except Exception:  # an observer never fails a batch
            logger.exception("the command observer failed")
        # What the batch changed, its save checked; the rest it only read.
        refusals_stand = unverified and self._still_current(read)
        for job, outcome, error in decided:
            if isinstance(error, _DecideAgainError) and refusals_stand:
                job.future.set_exception(error.refusal)
            elif isinstance(error, _DecideAgainError):
                self._resolve(
                    job, partial(job.context.run, self._retrying, job.key, job.decide, fresh=True)
                )
            elif error is None:
                job.future.set_result(outcome)
            else:
                job.future.set_exception(error)

    def _run_each_alone(self, jobs: list[_Job]) -> None:
        """After a batch failed (its save conflicted, or a rule broke part-way):
        each command again, alone, on state read afresh from the store."""
        for job in jobs:
            self._resolve(
                job, partial(job.context.run, self._retrying, job.key, job.decide, fresh=True)
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
        for note, context in uow.notes:
            context.run(self.log_note, note)

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

    def log_note(self, note: Note) -> None:
        """Logs what a committed decision noted (the commands say how)."""


def _job(command: Command[Any]) -> _Job:
    return _Job(command.key, command.decide, reads=command.reads, room=command.room)


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
