"""What one store gives the service (``StoreKit``), whichever store it is.

Each store package exports one kit, built from the settings by its
``build_kit`` (``infra/sqlite/kit.py``, ``infra/dynamodb/kit.py``):
the eventsourcing environment of its event store, its read tables, the
rebuild's second set of them, its idempotency store, its log indexer (or
none), its request meter (or none) and how big one save may grow under its
own limits. ``infra/wiring.py`` picks one kit, once, and asks it for
everything; nothing else says which store runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from eventsourcing.persistence import ApplicationRecorder

from domain.application import RegistrationService
from domain.unit_of_work import SaveWeights
from infra.idempotency import IdempotencyStore
from infra.legacy_names import Rewrite
from infra.personal_data import KeyStore
from projections.ports import ReadModel
from projections.rebuild import RebuildTarget


class CapacityMeter(Protocol):
    """Capacity units a store's calls consumed, per table (DynamoDB's ``Capacity``)."""

    @property
    def read(self) -> Mapping[str, float]: ...

    @property
    def write(self) -> Mapping[str, float]: ...

    def totals(self) -> dict[str, float]:
        """``{"readUnits": ..., "writeUnits": ...}``"""


class StoreCallListener(Protocol):
    """Told of every call to the store (DynamoDB's): for metrics."""

    def consumed(self, table: str, read_units: float, write_units: float) -> None:
        """A call consumed these capacity units of ``table``."""

    def answered(self, operation: str, table: str, retries: int, throttled: bool) -> None:
        """A call answered after ``retries`` retries; ``throttled``: its answer was a throttle
        (``table``: ``several`` for a call on several tables)."""


@dataclass(frozen=True)
class CapacityMetering:
    """How the HTTP app meters the store's consumed capacity without knowing the store."""

    start_request: Callable[[], CapacityMeter]
    """A fresh meter for the current request (and the threads it hands work to)."""
    process: CapacityMeter
    """Everything this process consumed since it started."""
    listen: Callable[[StoreCallListener], None] | None = None
    """Adds a listener told of every call (added once however often it is given)."""


@dataclass(frozen=True)
class SaveLimits:
    """How big one save may grow, derived from the store's own transaction
    limits; the defaults bound nothing (a store whose transaction has no
    item limit)."""

    max_save_weight: int | None = None
    """The weight (``weights``) a save stays under; None: no bound."""
    max_promotions_per_save: int | None = None
    """People one save promotes from a waitlist at most; None: no bound."""
    weights: SaveWeights = field(default_factory=SaveWeights)

    def apply_to(self, service: RegistrationService) -> None:
        service.max_save_weight = self.max_save_weight
        service.max_promotions_per_save = self.max_promotions_per_save
        service.save_weights = self.weights


class Indexer(Protocol):
    """A thread in this process that builds the notification log from the
    store's change stream (DynamoDB's ``ShardPoller``)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def lag(self) -> object:
        """How far behind it is (the fields of ``api.schemas.FeedLag``)."""


class RecordIndexer(Protocol):
    """Places change-stream records in the notification log (DynamoDB's
    ``StreamIndexer``, run by the indexer Lambda)."""

    @property
    def head(self) -> int:
        """The highest notification id assigned, as this indexer last saw it."""

    def index_records(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Indexes the records' commits; returns how many events were newly indexed."""


Reindex = Callable[[Callable[[int], None]], tuple[int, int]]
"""Indexes what the log lacks, reporting the events scanned so far; returns
(events scanned, events newly indexed)."""


@runtime_checkable
class StoreKit(Protocol):
    """One store, as the service uses it. Building a kit opens nothing; the
    ``open_*`` methods open the store's tables (creating what is missing)."""

    @property
    def save_limits(self) -> SaveLimits:
        """How big one save may grow under this store's transaction limits."""

    @property
    def metering(self) -> CapacityMetering | None:
        """The store's consumed-capacity meters; None where there is nothing to
        meter (and a meter per request is not free)."""

    @property
    def local(self) -> bool:
        """True where a write waits on no network (SQLite): commands may then
        be decided on the event loop."""

    def event_store_env(self) -> dict[str, str]:
        """The eventsourcing environment of this store's event store."""

    def missing(self) -> str | None:
        """What says there is no store here yet (opening it would create it), or
        None: for tools that only read, where a mistyped name must not pass as
        an empty store."""

    def prepare(self, service: RegistrationService) -> None:
        """Fits the service built on ``event_store_env`` to the store, before its
        first command (the save limits are applied by the wiring)."""

    def open_read_model(self) -> ReadModel:
        """The read tables the API reads and every append folds into."""

    def open_idempotency_store(self, read_model: ReadModel) -> IdempotencyStore:
        """Where responses to keyed requests are kept for replays, beside
        ``read_model`` (closed with it)."""

    def open_rebuild_target(
        self, read_model: ReadModel, recorder: ApplicationRecorder
    ) -> RebuildTarget:
        """The rebuild's second set of read tables beside ``read_model``."""

    def open_key_store(self, read_model: ReadModel) -> KeyStore:
        """The key table of the users' data keys (``infra/personal_data.py``),
        beside ``read_model`` (closed with it)."""

    def scrub(self, *, compact: bool = False) -> None:
        """After an erasure: removes the copies the store itself keeps of what was
        deleted or overwritten (SQLite: its WAL; ``compact``: also the free pages
        of the file, with ``VACUUM``); nothing where there are none."""

    def history_rewriter(self, recorder: ApplicationRecorder) -> Rewrite | None:
        """What replaces stored events' states, for ``regsvc seal-names``
        (``infra/legacy_names.py``); None where the store does not support it."""

    def indexer(self, recorder: ApplicationRecorder) -> Indexer | None:
        """This process's indexer of the change stream; None where the log is
        written with the events."""

    def stream_indexer(self, recorder: ApplicationRecorder) -> RecordIndexer | None:
        """An indexer of change-stream records handed in from outside (the
        indexer Lambda); None where the log is written with the events."""

    def reindexer(self, recorder: ApplicationRecorder) -> Reindex | None:
        """What indexes every commit the log lacks (the stream lost them); None
        where the log is written with the events."""
