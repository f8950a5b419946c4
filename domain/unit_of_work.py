"""The unit of work: the aggregates one or more commands load and change, saved together.

A command decides on a ``UnitOfWork``: it finds and loads aggregates through
it (each once: an identity map, so the commands of a batch see each other's
changes), adds new ones, and notes what it did (``note``). The runner
(``domain/runner.py``) saves what changed in one atomic save and, once it
committed, logs the notes. The unit of work reads through the small
``AggregateStore`` protocol, so it knows nothing of how commands are run.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.errors import InvariantViolationError
from domain.model import Gathering
from domain.notes import Note

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


A = TypeVar("A", bound=Aggregate)


class AggregateStore(Protocol):
    """What a unit of work reads aggregates through (``domain.runner.CommandRunner``)."""

    @property
    def cache_may_be_stale(self) -> bool: ...

    @property
    def save_weights(self) -> SaveWeights: ...

    def refresh_cache(self) -> bool: ...

    def is_cached(self, aggregate_id: UUID) -> bool: ...

    def streams_existing(self, aggregate_ids: Sequence[UUID]) -> set[UUID] | None: ...

    def stored(
        self,
        aggregate_id: UUID,
        *,
        trust_cache: bool = False,
        assume_absent: bool = False,
        known_to_exist: bool = False,
    ) -> Aggregate | None: ...


class UnitOfWork:
    """The aggregates that one or more commands load and change, saved together.

    An identity map: an aggregate is loaded once, and every command of a batch
    sees the changes that the commands before it made. ``weight`` estimates
    the rows a save of it writes, for stores that bound a transaction.
    """

    def __init__(
        self, service: AggregateStore, *, for_command: bool = False, fresh: bool = False
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
