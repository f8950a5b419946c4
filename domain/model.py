"""Aggregates of the registration domain.

A *gathering* is what the HTTP API calls an "event" (a meetup, a conference);
in Python, "event" means a domain event, so the domain says gathering.

Consistency boundaries, chosen so that the state loaded to decide a command
stays small however popular a gathering gets:

- ``User``: one per userId.
- ``Gathering``: the details and the *counters* (confirmed seats, waitlist
  length, next waitlist ticket, waitlist head). It is the boundary that makes
  capacity safe: every seat taken or released is an event in its stream, so
  two concurrent registrations conflict on its version. It holds no set of
  people, so its snapshot is a few hundred bytes at any size; snapshots keep
  the events replayed per decision below the snapshot interval.
- ``Registration``: one per (gathering, user) pair, with a deterministic id.
  It answers "is this user already confirmed or waiting?" without loading
  anyone else's registration.
- ``WaitlistPage``: the FIFO waitlist, in pages of a fixed number of
  tickets (the page arithmetic is the page's own: ``WaitlistPage.number_of``).
  Finding the head reads pages from the gathering's head ticket on; a page
  holds a bounded number of entries, so the waitlist never has to fit one
  item. ``domain/waitlist.py`` places tickets, finds the head and promotes.

Stored topics are a contract: never rename a class or an event here without
``register_topic``, and never change a payload without an upcaster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    AlreadyOnWaitlistError,
    AlreadyRegisteredError,
    CapacityBelowRegisteredError,
    GatheringFullError,
    GatheringHasRegistrationsError,
    GatheringNotOpenError,
    InvalidCommandError,
    RegistrationNotFoundError,
)

NAMESPACE = UUID("6f1d2a52-5c4e-4c1e-9a0b-4b7f1f0c2d11")


class GatheringStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    ACTIVE = "active"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


OPEN_STATUSES = frozenset({GatheringStatus.ACTIVE, GatheringStatus.PUBLISHED})


class Counts(NamedTuple):
    """A gathering's counters at one moment (what a promotion's note shows before and after)."""

    registered: int
    waitlisted: int
    capacity: int


class RegistrationStatus(StrEnum):
    PENDING = "pending"
    """Created but not yet admitted: only between a version-1 history's
    ``Created`` and the ``Confirmed`` or ``Waitlisted`` after it."""
    CONFIRMED = "confirmed"
    WAITLIST = "waitlist"
    LEFT = "left"


# Ids are derived by hashing (uuid5): each command derives several, so they are memoised.
@lru_cache(maxsize=65_536)
def user_aggregate_id(user_id: str) -> UUID:
    return uuid5(NAMESPACE, f"user/{user_id}")


@lru_cache(maxsize=65_536)
def gathering_aggregate_id(gathering_id: str) -> UUID:
    return uuid5(NAMESPACE, f"gathering/{gathering_id}")


@lru_cache(maxsize=65_536)
def registration_aggregate_id(gathering_id: str, user_id: str) -> UUID:
    # Neither id may contain "/" (validated at the edge), so this is unambiguous.
    return uuid5(NAMESPACE, f"registration/{gathering_id}/{user_id}")


@lru_cache(maxsize=65_536)
def waitlist_page_aggregate_id(gathering_id: str, page: int) -> UUID:
    return uuid5(NAMESPACE, f"waitlist/{gathering_id}/{page}")


def _user_not_recorded(state: dict[str, object]) -> None:
    """Upcasts a version 1 registration or waitlist event, which did not name its user."""
    state["user_id"] = None


class User(Aggregate):
    """Somebody who can register for gatherings.

    ``name`` is personal data: sealed under the user's key (``domain/personal.py``),
    an opaque string to the domain (a history written before names were sealed
    holds it as given). Once the user is erased it is None.
    """

    class Created(Aggregate.Created):
        user_id: str
        name: str

    class Erased(Aggregate.Event):
        """The user's key was destroyed: who asked (``erased_by``) and in which
        request; it holds no personal data."""

        user_id: str
        erased_by: str | None
        request_id: str | None

    @staticmethod
    def create_id(user_id: str) -> UUID:
        return user_aggregate_id(user_id)

    @event(Created)
    def __init__(self, user_id: str, name: str) -> None:
        self.user_id = user_id
        self.name: str | None = name
        self.erased = False

    def erase(self, erased_by: str | None, request_id: str | None) -> bool:
        """Records the erasure once: False (and nothing recorded) when the user
        was erased already."""
        if self.erased:
            return False
        self._erased(user_id=self.user_id, erased_by=erased_by, request_id=request_id)
        return True

    @event(Erased)
    def _erased(self, user_id: str, erased_by: str | None, request_id: str | None) -> None:
        self.erased = True
        self.name = None


@dataclass(frozen=True)
class GatheringDetails:
    """What a gathering says about itself: the details a client sets, and may change.

    This is the one list of them. The events that record them, the aggregate,
    the read rows (``projections/views.py``), each store's row mapping and the
    update route follow it by name; the API schemas and the SQLite DDL name
    each detail, and a guard test checks that they do.

    A new detail comes last, with a default (an optional detail), and is added
    to ``Gathering.Created`` and ``Gathering.Revised`` (last, ``= None``): an
    event stored before it lacks it and reads the default here
    (``of_payload``). A snapshot stored before it is upcast by raising
    ``Gathering.class_version`` (``_details_defaulted``).
    """

    title: str
    date: str
    description: str = ""
    location: str | None = None
    organizer: str | None = None
    status: str = GatheringStatus.ACTIVE
    waitlist_enabled: bool = False

    @classmethod
    def of_payload(cls, payload: Mapping[str, Any]) -> GatheringDetails:
        """The details a stored event (or a snapshot) holds; a detail it lacks has its default."""
        return cls(**{name: payload[name] for name in DETAIL_NAMES if name in payload})

    def values(self) -> dict[str, Any]:
        """The details by name (of a subclass too: only the details)."""
        return {name: getattr(self, name) for name in DETAIL_NAMES}

    def payload(self) -> dict[str, Any]:
        """The details as an event stores them (plain JSON values)."""
        return {name: _plain(value) for name, value in self.values().items()}


#: The details' names, in order: snake_case in the domain and the read rows,
#: camelCase on the wire and in DynamoDB items.
DETAIL_NAMES: tuple[str, ...] = tuple(f.name for f in fields(GatheringDetails))


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, StrEnum) else value


def _details_defaulted(state: dict[str, Any]) -> None:
    """Upcasts a gathering's snapshot stored before a detail existed: it gets the default."""
    defaults = asdict(GatheringDetails(title="", date=""))
    for name in DETAIL_NAMES:
        state.setdefault(name, _plain(defaults[name]))


class Gathering(Aggregate):
    """A meetup or conference with a capacity and an optional FIFO waitlist.

    Its details (``GatheringDetails``) are its attributes of the same names.
    """

    if TYPE_CHECKING:  # the details the rules read (all are set by ``set_details``)
        title: str
        date: str
        status: GatheringStatus
        waitlist_enabled: bool

    class Created(Aggregate.Created):
        gathering_id: str
        title: str
        description: str
        date: str
        location: str | None
        organizer: str | None
        status: str
        capacity: int
        waitlist_enabled: bool

        def apply(self, aggregate: Gathering) -> None:
            aggregate.set_details(GatheringDetails.of_payload(vars(self)))

    class Revised(Aggregate.Event):
        """Records the details that changed; None: that detail stayed as it was."""

        title: str | None
        description: str | None
        date: str | None
        location: str | None
        organizer: str | None
        status: str | None
        waitlist_enabled: bool | None

        def apply(self, aggregate: Gathering) -> None:
            changed = {name: value for name, value in vars(self).items() if name in DETAIL_NAMES}
            aggregate.set_details(replace(aggregate.details, **_given(changed)))

    class CapacityChanged(Aggregate.Event):
        capacity: int

    class SeatTaken(Aggregate.Event):
        user_id: str

    class SeatReleased(Aggregate.Event):
        user_id: str

    class WaitlistJoined(Aggregate.Event):
        user_id: str
        ticket: int

    class WaitlistLeft(Aggregate.Event):
        user_id: str
        ticket: int

    class Promoted(Aggregate.Event):
        user_id: str
        ticket: int

    class Deleted(Aggregate.Event):
        pass

    # Version 2 of the state (in snapshots) calls the confirmed seats
    # ``registered_count``, as the HTTP API does; version 1 said ``confirmed_count``.
    # (A new detail raises it again, upcasting with ``_details_defaulted``.)
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, object]) -> None:
        state["registered_count"] = state.pop("confirmed_count")

    @staticmethod
    def create_id(gathering_id: str) -> UUID:
        return gathering_aggregate_id(gathering_id)

    @staticmethod
    def valid_capacity(capacity: int) -> int:
        """``capacity``, once it is one a gathering may have (at least one seat):
        the one place that rule is checked."""
        if capacity < 1:
            raise InvalidCommandError("capacity must be at least 1", field="capacity")
        return capacity

    def __init__(self, gathering_id: str, capacity: int) -> None:
        """Called as ``Created`` is applied; its ``apply`` then takes the details."""
        self.gathering_id = gathering_id
        self.capacity = capacity
        self.registered_count = 0
        self.waitlist_count = 0
        self.next_ticket = 0
        self.head_ticket = 0
        self.deleted = False

    @classmethod
    def create(cls, gathering_id: str, capacity: int, details: GatheringDetails) -> Gathering:
        """A new gathering; its capacity is at least 1."""
        return cls._create(
            cls.Created,
            gathering_id=gathering_id,
            capacity=cls.valid_capacity(capacity),
            **details.payload(),
        )

    @property
    def details(self) -> GatheringDetails:
        return GatheringDetails(**{name: getattr(self, name) for name in DETAIL_NAMES})

    def set_details(self, details: GatheringDetails) -> None:
        """Holds ``details`` as attributes (as an event applies them)."""
        vars(self).update(details.values())
        self.status = GatheringStatus(details.status)

    @property
    def available_spots(self) -> int:
        return self.capacity - self.registered_count

    def counts(self) -> Counts:
        return Counts(self.registered_count, self.waitlist_count, self.capacity)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def promotions_due(self) -> int:
        """How many waiting people the free seats are owed to (FIFO, head first)."""
        return max(0, min(self.available_spots, self.waitlist_count))

    # -- decisions: each checks its rules before it records anything ----------

    def ensure_open(self) -> None:
        """Refuses registrations unless the gathering is active or published."""
        if not self.is_open:
            msg = f"Event '{self.gathering_id}' is {self.status}, not open for registration"
            raise GatheringNotOpenError(msg)

    def admit(self, user_id: str) -> int | None:
        """Gives ``user_id`` a seat (returns None) or the waitlist's next ticket (returned).

        No queue jumping: a free seat goes to a newcomer only while nobody
        waits. Refuses a gathering that is not open, or full without a waitlist.
        """
        self.ensure_open()
        if self.available_spots > 0 and self.waitlist_count == 0:
            self.take_seat(user_id=user_id)
            return None
        if not self.waitlist_enabled:
            raise GatheringFullError(f"Event '{self.gathering_id}' is full and has no waitlist")
        ticket = self.next_ticket
        self.join_waitlist(user_id=user_id, ticket=ticket)
        return ticket

    def release(self, user_id: str, ticket: int | None) -> None:
        """Frees ``user_id``'s seat (``ticket`` None) or their waitlist place."""
        if ticket is None:
            self.release_seat(user_id=user_id)
        else:
            self.leave_waitlist(user_id=user_id, ticket=ticket)

    def resize(self, capacity: int) -> None:
        """Sets a new capacity; never below the confirmed seats. Promotions follow separately."""
        if self.valid_capacity(capacity) < self.registered_count:
            raise CapacityBelowRegisteredError(
                f"Capacity {capacity} is below the {self.registered_count} confirmed registrations"
            )
        if capacity != self.capacity:
            self.change_capacity(capacity)

    def retire(self) -> None:
        """Deletes the gathering; only one nobody holds a seat or waits for."""
        if self.registered_count or self.waitlist_count:
            raise GatheringHasRegistrationsError(
                f"Event '{self.gathering_id}' has {self.registered_count} confirmed and "
                f"{self.waitlist_count} waitlisted registrations"
            )
        self.delete()

    def amend(self, proposed: Mapping[str, Any]) -> None:
        """Records the proposed details that differ from the gathering's own,
        in one event, or nothing when none does. None proposes nothing."""
        current = self.details
        wanted = replace(current, **_given(proposed))
        changed = {
            name: value
            for name, value in wanted.payload().items()
            if value != getattr(current, name)
        }
        if changed:
            self.revise(**changed)

    # -- what happened ------------------------------------------------------

    def revise(self, **changed: Any) -> None:
        """Records ``Revised`` with the given details; the others as None (unchanged)."""
        unknown = changed.keys() - set(DETAIL_NAMES)
        if unknown:
            raise TypeError(f"Not details of a gathering: {sorted(unknown)}")
        self.trigger_event(self.Revised, **{name: changed.get(name) for name in DETAIL_NAMES})

    @event(CapacityChanged)
    def change_capacity(self, capacity: int) -> None:
        self.capacity = capacity

    @event(SeatTaken)
    def take_seat(self, user_id: str) -> None:
        self.registered_count += 1

    @event(SeatReleased)
    def release_seat(self, user_id: str) -> None:
        self.registered_count -= 1

    @event(WaitlistJoined)
    def join_waitlist(self, user_id: str, ticket: int) -> None:
        self.waitlist_count += 1
        self.next_ticket = ticket + 1

    @event(WaitlistLeft)
    def leave_waitlist(self, user_id: str, ticket: int) -> None:
        self.waitlist_count -= 1

    @event(Promoted)
    def promote(self, user_id: str, ticket: int) -> None:
        """Moves the head of the waitlist (holding ``ticket``) into a seat."""
        self.waitlist_count -= 1
        self.registered_count += 1
        self.head_ticket = ticket + 1

    @event(Deleted)
    def delete(self) -> None:
        self.deleted = True


def _given(details: Mapping[str, Any]) -> dict[str, Any]:
    """The details named with a value (None names none)."""
    return {name: value for name, value in details.items() if value is not None}


class Registration(Aggregate):
    """One user's place (or past place) at one gathering."""

    class Created(Aggregate.Created):
        """The first registration of a user at a gathering. Since version 2 it
        carries what the gathering decided (``admitted``: a seat when
        ``ticket`` is None, else that waitlist ticket), one event where
        version 1 wrote ``Created`` then ``Confirmed`` or ``Waitlisted``."""

        gathering_id: str
        user_id: str
        admitted: bool
        ticket: int | None

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            # Version 1 recorded the admission as a second event.
            state["admitted"] = False
            state["ticket"] = None

    # Since version 2 every event of a registration names its user, so that each
    # entry of an audit trail says whom it is about; version 1 did not.

    class Confirmed(Aggregate.Event):
        user_id: str | None

        class_version = 2
        upcast_v1_v2 = staticmethod(_user_not_recorded)

    class Waitlisted(Aggregate.Event):
        ticket: int
        user_id: str | None

        class_version = 2
        upcast_v1_v2 = staticmethod(_user_not_recorded)

    class Promoted(Aggregate.Event):
        user_id: str | None

        class_version = 2
        upcast_v1_v2 = staticmethod(_user_not_recorded)

    class Withdrawn(Aggregate.Event):
        user_id: str | None

        class_version = 2
        upcast_v1_v2 = staticmethod(_user_not_recorded)

    @staticmethod
    def create_id(gathering_id: str, user_id: str) -> UUID:
        return registration_aggregate_id(gathering_id, user_id)

    @event(Created)
    def __init__(
        self, gathering_id: str, user_id: str, admitted: bool = False, ticket: int | None = None
    ) -> None:
        self.gathering_id = gathering_id
        self.user_id = user_id
        self.status = RegistrationStatus.PENDING
        self.ticket: int | None = None
        if admitted:
            self._hold(ticket)

    @classmethod
    def admit(cls, gathering_id: str, user_id: str, ticket: int | None) -> Registration:
        """A first registration, holding what the gathering decided: a seat
        (``ticket`` None) or a waitlist ticket. One event."""
        return cls(gathering_id=gathering_id, user_id=user_id, admitted=True, ticket=ticket)

    @property
    def is_active(self) -> bool:
        return self.status in (RegistrationStatus.CONFIRMED, RegistrationStatus.WAITLIST)

    def ensure_not_active(self) -> None:
        """Refuses a second registration while this one holds a seat or a waitlist place."""
        if self.status == RegistrationStatus.CONFIRMED:
            raise AlreadyRegisteredError(
                f"User '{self.user_id}' is already registered for event '{self.gathering_id}'"
            )
        if self.status == RegistrationStatus.WAITLIST:
            raise AlreadyOnWaitlistError(
                f"User '{self.user_id}' is already on the waitlist of event '{self.gathering_id}'"
            )

    def ensure_active(self) -> None:
        """Refuses to withdraw a registration that holds nothing."""
        if not self.is_active:
            raise RegistrationNotFoundError(
                f"User '{self.user_id}' is not registered for event '{self.gathering_id}'"
            )

    def admitted(self, ticket: int | None) -> None:
        """Records what the gathering decided: a seat (None) or a waitlist ticket."""
        if ticket is None:
            self.confirm()
        else:
            self.waitlist(ticket=ticket)

    def confirm(self) -> None:
        self._confirmed(user_id=self.user_id)

    @event(Confirmed)
    def _confirmed(self, user_id: str | None) -> None:
        self._hold(None)

    def waitlist(self, ticket: int) -> None:
        self._waitlisted(ticket=ticket, user_id=self.user_id)

    @event(Waitlisted)
    def _waitlisted(self, ticket: int, user_id: str | None) -> None:
        self._hold(ticket)

    def _hold(self, ticket: int | None) -> None:
        self.status = (
            RegistrationStatus.CONFIRMED if ticket is None else RegistrationStatus.WAITLIST
        )
        self.ticket = ticket

    def promote(self) -> None:
        self._promoted(user_id=self.user_id)

    @event(Promoted)
    def _promoted(self, user_id: str | None) -> None:
        self.status = RegistrationStatus.CONFIRMED
        self.ticket = None

    def withdraw(self) -> None:
        self._withdrawn(user_id=self.user_id)

    @event(Withdrawn)
    def _withdrawn(self, user_id: str | None) -> None:
        self.status = RegistrationStatus.LEFT
        self.ticket = None


#: Tickets per waitlist page. Only ``WaitlistPage`` does the page arithmetic.
WAITLIST_PAGE_SIZE = 100


class WaitlistPage(Aggregate):
    """Up to ``WAITLIST_PAGE_SIZE`` consecutive waitlist tickets of one gathering:
    ticket ``t`` lives on page ``t // WAITLIST_PAGE_SIZE``."""

    class Created(Aggregate.Created):
        gathering_id: str
        page: int

    class Appended(Aggregate.Event):
        ticket: int
        user_id: str

    class Removed(Aggregate.Event):
        """Since version 2 it names the ticket's holder; version 1 did not."""

        ticket: int
        user_id: str | None

        class_version = 2
        upcast_v1_v2 = staticmethod(_user_not_recorded)

    @staticmethod
    def create_id(gathering_id: str, page: int) -> UUID:
        return waitlist_page_aggregate_id(gathering_id, page)

    @staticmethod
    def number_of(ticket: int) -> int:
        """The page that holds ``ticket``."""
        return ticket // WAITLIST_PAGE_SIZE

    @staticmethod
    def opened_by(ticket: int) -> bool:
        """Whether ``ticket`` is the first of its page (the page is new with it)."""
        return ticket % WAITLIST_PAGE_SIZE == 0

    @classmethod
    def numbers_between(cls, head_ticket: int, next_ticket: int) -> range:
        """The pages that may hold tickets from ``head_ticket`` up to ``next_ticket``."""
        return range(cls.number_of(head_ticket), cls.number_of(next_ticket - 1) + 1)

    @event(Created)
    def __init__(self, gathering_id: str, page: int) -> None:
        self.gathering_id = gathering_id
        self.page = page
        # Parallel lists, in ticket order (JSON has no int keys for a dict).
        self.tickets: list[int] = []
        self.user_ids: list[str] = []

    @event(Appended)
    def append(self, ticket: int, user_id: str) -> None:
        self.tickets.append(ticket)
        self.user_ids.append(user_id)

    def remove(self, ticket: int) -> None:
        self._removed(ticket=ticket, user_id=self.user_ids[self.tickets.index(ticket)])

    @event(Removed)
    def _removed(self, ticket: int, user_id: str | None) -> None:
        index = self.tickets.index(ticket)
        del self.tickets[index]
        del self.user_ids[index]

    def first(self) -> tuple[int, str] | None:
        if not self.tickets:
            return None
        return self.tickets[0], self.user_ids[0]
