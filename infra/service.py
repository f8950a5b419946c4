"""The registration service bound to storage.

- Every save hands its domain events to the store as ``InlineChanges``, so the
  store folds them into the read tables inside the append's own transaction.
- eventsourcing's errors become domain errors at this boundary.
- A snapshot is an optimisation taken after the command committed: its
  failure is logged and never fails the command.
- Where the log is indexed after the appends (DynamoDB), it cannot say which
  cached aggregates other processes changed: commands decide on the cache, the
  conditional appends catch a stale aggregate, and a refusal stands only if the
  streams it read have not moved on (one consistent BatchGetItem).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextvars import Context
from functools import cached_property
from typing import Any
from uuid import UUID

from eventsourcing.application import ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    IntegrityError,
    Mapper,
    Notification,
    OperationalError,
    Recording,
)

from domain.application import RegistrationService
from domain.errors import StoreUnavailableError, WriteConflictError
from domain.model import Gathering
from infra.logs import request_metadata
from infra.sealing import SealingMapper
from projections.catch_up import IndexedLog
from projections.fold import InlineChanges

logger = logging.getLogger(__name__)


class StoredRegistrationService(RegistrationService):
    """Maps the store's failures onto the domain's error hierarchy at the boundary."""

    name = "Registrations"
    mapper: SealingMapper

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__(env)
        self.mapper.read_stream = self.recorder.select_events
        enable_repairs = getattr(self.recorder, "enable_repairs", None)
        if enable_repairs is not None:  # DynamoDB: rows a rebuild's switch left behind
            enable_repairs(self.mapper.to_domain_event)

    def construct_mapper(self) -> Mapper[UUID]:
        """Every event is stored with its request id, actor and chain digest."""
        return self.factory.mapper(
            transcoder=self.construct_transcoder(), mapper_class=SealingMapper
        )

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[Any]]:
        try:
            return self._save_aggregates(objs, kwargs)
        except IntegrityError as error:
            # Another command saved one of these aggregates first.
            raise WriteConflictError(str(error)) from error
        except OperationalError as error:
            raise StoreUnavailableError(f"The event store is unavailable: {error}") from error

    def _save_aggregates(
        self, aggregates: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> list[Recording[UUID]]:
        """eventsourcing's ``Application.save``, for aggregates only: the same
        steps, without a runtime protocol check per object (a hot path)."""
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for aggregate in aggregates:
            processing_event.events.extend(aggregate.collect_events())
            processing_event.aggregates[aggregate.id] = aggregate
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        return recordings

    @cached_property
    def cache_may_be_stale(self) -> bool:  # type: ignore[override]
        """On a log indexed after the appends (DynamoDB), its head cannot tell what
        other processes changed: writes not yet indexed would be missed. Commands
        then decide on the cache as it is, and the conditional appends catch
        what is stale (see RegistrationService.cache_may_be_stale).

        Asked by every batch; decided once, because an ``isinstance`` check
        against a runtime protocol inspects the recorder's attributes each time
        (it was a tenth of the command thread's time).
        """
        return isinstance(self.recorder, IndexedLog)

    def stream_exists(self, aggregate_id: UUID) -> bool | None:
        exists = getattr(self.recorder, "stream_exists", None)
        return None if exists is None else bool(exists(aggregate_id))

    def streams_existing(self, aggregate_ids: Sequence[UUID]) -> set[UUID] | None:
        existing = getattr(self.recorder, "streams_existing", None)
        return None if existing is None else set(existing(aggregate_ids))

    def streams_advanced(self, versions: Mapping[UUID, int]) -> set[UUID]:
        advanced = getattr(self.recorder, "streams_advanced", None)
        if advanced is None:
            return super().streams_advanced(versions)
        return {UUID(str(found)) for found in advanced(versions)}

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        streams = {
            aggregate_id: aggregate.gathering_id
            for aggregate_id, aggregate in processing_event.aggregates.items()
            if isinstance(aggregate, Gathering)
        }
        facts = [e for e in processing_event.events if isinstance(e, Aggregate.Event)]
        kwargs = processing_event.saved_kwargs
        kwargs["inline"] = InlineChanges(tuple(facts), streams)
        # The context each event was decided in (a batch mixes requests); events
        # without one were decided in the current context.
        origins: Mapping[int, Context] = kwargs.pop("origins", None) or {}
        events = processing_event.events
        contexts = [origins.get(id(e)) for e in events]
        metadata = [request_metadata(context) for context in contexts]
        stored, digests = self.mapper.seal(events, metadata)
        ids = self.recorder.insert_events(
            stored, tracking=processing_event.tracking, contexts=contexts, **kwargs
        )
        self.mapper.remember(digests)
        if not ids:
            return []
        return [
            Recording(e, Notification(s.originator_id, s.originator_version, s.topic, s.state, n))
            for e, s, n in zip(events, stored, ids, strict=True)
        ]

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        """Snapshots each saved aggregate whose version passed a multiple of its interval.

        Taken from the aggregate in memory, as this save left it (no replay
        from the store). Its failure is logged: the events are committed, and
        a missing snapshot only costs a longer replay later.
        """
        if self.snapshots is None:
            return
        saved: dict[UUID, int] = {}
        for fact in processing_event.events:
            saved[fact.originator_id] = saved.get(fact.originator_id, 0) + 1
        for aggregate_id, aggregate in processing_event.aggregates.items():
            interval = self.snapshotting_intervals.get(type(aggregate))
            version = aggregate.version
            if (
                interval is None
                or version // interval == (version - saved.get(aggregate_id, 0)) // interval
            ):
                continue
            try:
                snapshot_class: Any = getattr(type(aggregate), "Snapshot", self.snapshot_class)
                self.snapshots.put([snapshot_class.take(aggregate)])
            except Exception:
                logger.warning(
                    "snapshot of %s v%s not taken; the command stands",
                    aggregate_id,
                    version,
                    exc_info=True,
                )
