"""The fold: which domain event changes which row of the read tables.

This is the one place that says it. It drives both ways the read tables are
written:

- inline, inside the transaction that appends a command's domain events
  (``InlineChanges``, handed to the store's recorder with the events), so a
  read after a write's response sees it, in any process;
- catch-up, from the log, for rebuilds and audits (``projections/catch_up.py``).

Handlers are named after the domain event they fold; ``fact`` is the domain
event, and "event" means what it means at the HTTP edge: a gathering.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from domain.model import DETAIL_NAMES, Gathering, GatheringDetails, Registration, User
from projections.ports import ReadTableWriter
from projections.views import EventRow


def _user_created(fact: User.Created, w: ReadTableWriter) -> None:
    w.put_user(fact.user_id, fact.name, fact.timestamp)


def _user_erased(fact: User.Erased, w: ReadTableWriter) -> None:
    w.erase_user(fact.user_id, fact.timestamp)


def _gathering_created(fact: Gathering.Created, w: ReadTableWriter) -> None:
    w.put_event(
        fact.originator_id,
        EventRow(
            event_id=fact.gathering_id,
            capacity=fact.capacity,
            registered_count=0,
            waitlist_count=0,
            created_at=fact.timestamp,
            updated_at=fact.timestamp,
            **GatheringDetails.of_payload(vars(fact)).payload(),
        ),
    )


def _gathering_revised(fact: Gathering.Revised, w: ReadTableWriter) -> None:
    details = {name: getattr(fact, name, None) for name in DETAIL_NAMES}
    changed = {name: value for name, value in details.items() if value is not None}
    w.update_event(w.event_id_for(fact.originator_id), changed, fact.timestamp)


def _capacity_changed(fact: Gathering.CapacityChanged, w: ReadTableWriter) -> None:
    w.update_event(w.event_id_for(fact.originator_id), {"capacity": fact.capacity}, fact.timestamp)


def _seat_taken(fact: Gathering.SeatTaken, w: ReadTableWriter) -> None:
    event_id = w.event_id_for(fact.originator_id)
    # Confirmed people are listed in the order they got their seat: the
    # gathering's own version orders its seats.
    w.put_registration(fact.user_id, event_id, "confirmed", fact.originator_version, fact.timestamp)
    w.adjust_counts(event_id, +1, 0, fact.timestamp)


def _seat_released(fact: Gathering.SeatReleased, w: ReadTableWriter) -> None:
    event_id = w.event_id_for(fact.originator_id)
    w.delete_registration(fact.user_id, event_id)
    w.adjust_counts(event_id, -1, 0, fact.timestamp)


def _waitlist_joined(fact: Gathering.WaitlistJoined, w: ReadTableWriter) -> None:
    event_id = w.event_id_for(fact.originator_id)
    # Waiting people are listed in ticket order, which is FIFO.
    w.put_registration(fact.user_id, event_id, "waitlist", fact.ticket, fact.timestamp)
    w.adjust_counts(event_id, 0, +1, fact.timestamp)
    w.waitlist_changed(event_id, fact.user_id, fact.ticket, joined=True)


def _waitlist_left(fact: Gathering.WaitlistLeft, w: ReadTableWriter) -> None:
    event_id = w.event_id_for(fact.originator_id)
    w.delete_registration(fact.user_id, event_id)
    w.adjust_counts(event_id, 0, -1, fact.timestamp)
    w.waitlist_changed(event_id, fact.user_id, fact.ticket, joined=False)


def _promoted(fact: Gathering.Promoted, w: ReadTableWriter) -> None:
    event_id = w.event_id_for(fact.originator_id)
    w.promote_registration(fact.user_id, event_id, fact.originator_version)
    w.adjust_counts(event_id, +1, -1, fact.timestamp)
    w.waitlist_changed(event_id, fact.user_id, fact.ticket, joined=False)


def _deleted(fact: Gathering.Deleted, w: ReadTableWriter) -> None:
    w.delete_event(w.event_id_for(fact.originator_id))


def _registration_created(fact: Registration.Created, w: ReadTableWriter) -> None:
    # A user's first registration for a gathering: their history starts there.
    w.note_registration(fact.user_id, fact.gathering_id)


Handler = Callable[[Any, ReadTableWriter], None]

HANDLERS: dict[type[Aggregate.Event], Handler] = {
    User.Created: _user_created,
    User.Erased: _user_erased,
    Gathering.Created: _gathering_created,
    Gathering.Revised: _gathering_revised,
    Gathering.CapacityChanged: _capacity_changed,
    Gathering.SeatTaken: _seat_taken,
    Gathering.SeatReleased: _seat_released,
    Gathering.WaitlistJoined: _waitlist_joined,
    Gathering.WaitlistLeft: _waitlist_left,
    Gathering.Promoted: _promoted,
    Gathering.Deleted: _deleted,
    Registration.Created: _registration_created,
}

#: The stored topics the read tables depend on (catch-up reads only these).
TOPICS: tuple[str, ...] = tuple(get_topic(cls) for cls in HANDLERS)


def fold(fact: Aggregate.Event, writer: ReadTableWriter) -> None:
    """Applies one domain event to the read tables."""
    handler = HANDLERS.get(type(fact))
    if handler is not None:
        writer.folding(fact.originator_id, fact.originator_version)
        handler(fact, writer)


@dataclass(frozen=True)
class InlineChanges:
    """A save's domain events, folded by the store inside the save's own transaction.

    ``streams`` names the gathering of each gathering stream being saved, so
    the fold need not look it up.
    """

    facts: Sequence[Aggregate.Event]
    streams: Mapping[UUID, str] = field(default_factory=dict)

    def write(self, writer: ReadTableWriter) -> None:
        for fact in self.facts:
            fold(fact, writer)

    @property
    def relevant(self) -> bool:
        return any(type(fact) in HANDLERS for fact in self.facts)
