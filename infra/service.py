"""The registration service bound to storage.

- Every save hands its domain events to the store as ``InlineChanges``, so the
  store folds them into the read tables inside the append's own transaction.
- eventsourcing's errors become domain errors at this boundary.
- A snapshot is an optimisation taken after the command committed: its
  failure is logged and never fails the command.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from eventsourcing.application import ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, OperationalError, Recording

from domain.application import RegistrationService
from domain.errors import StoreUnavailableError, WriteConflictError
from domain.model import Gathering
from projections.fold import InlineChanges

logger = logging.getLogger(__name__)


class StoredRegistrationService(RegistrationService):
    """Maps the store's failures onto the domain's error hierarchy at the boundary."""

    name = "Registrations"

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[Any]]:
        try:
            return super().save(*objs, **kwargs)
        except IntegrityError as error:
            # Another command saved one of these aggregates first.
            raise WriteConflictError(str(error)) from error
        except OperationalError as error:
            raise StoreUnavailableError(f"The event store is unavailable: {error}") from error

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        streams = {
            aggregate_id: aggregate.gathering_id
            for aggregate_id, aggregate in processing_event.aggregates.items()
            if isinstance(aggregate, Gathering)
        }
        facts = [e for e in processing_event.events if isinstance(e, Aggregate.Event)]
        processing_event.saved_kwargs["inline"] = InlineChanges(tuple(facts), streams)
        return super()._record(processing_event)

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        try:
            super()._take_snapshots(processing_event)
        except Exception:
            # The events are committed; a missing snapshot only costs a longer replay.
            logger.warning("snapshot not taken; the command stands", exc_info=True)
