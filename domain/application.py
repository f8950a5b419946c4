"""Commands of the registration service, as typed methods of an eventsourcing Application.

Each command loads the few aggregates it needs, decides, and saves every new
domain event in one atomic ``save``. Two commands that decide on the same
aggregate version collide in the store; the loser re-runs on fresh state a
bounded number of times (with jittered back-off) before the client sees
``ConcurrentModificationError``.

Storage maps its own "unique version" failure onto ``WriteConflictError``
(see ``infra/service.py``), so this module imports nothing but the standard
library and eventsourcing's domain and application modules.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate

from domain.errors import (
    AlreadyOnWaitlistError,
    AlreadyRegisteredError,
    CapacityBelowRegisteredError,
    ChangeTooLargeError,
    ConcurrentModificationError,
    DuplicateGatheringError,
    DuplicateUserError,
    GatheringFullError,
    GatheringHasRegistrationsError,
    GatheringNotFoundError,
    GatheringNotOpenError,
    InvalidCommandError,
    InvariantViolationError,
    RegistrationNotFoundError,
    UserNotFoundError,
    WriteConflictError,
)
from domain.invariants import gathering_violations
from domain.model import (
    WAITLIST_PAGE_SIZE,
    Gathering,
    GatheringStatus,
    Registration,
    RegistrationStatus,
    User,
    WaitlistPage,
    gathering_aggregate_id,
    registration_aggregate_id,
    user_aggregate_id,
    waitlist_page_aggregate_id,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
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
    position: int


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
    position: int
    promoted: tuple[str, ...] = ()

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
    position: int


@dataclass(frozen=True)
class LeaveOutcome:
    user_id: str
    gathering_id: str
    previous_status: RegistrationStatus
    promoted: tuple[str, ...]
    position: int


@dataclass
class _Pages:
    """The waitlist pages one command has loaded, so each is loaded once."""

    gathering_id: str
    loaded: dict[int, WaitlistPage] = field(default_factory=dict)


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
    # How many people one command may promote: each promotion is three events
    # that must commit with the change, and some stores bound a transaction
    # (DynamoDB: 100 items). None: no bound.
    max_promotions_per_command: int | None = None

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__(env)
        self._locks = tuple(threading.Lock() for _ in range(64))

    # -- users ---------------------------------------------------------------

    def create_user(self, user_id: str, name: str) -> UserState:
        def decide() -> UserState:
            if self._find(User, user_aggregate_id(user_id)) is not None:
                raise DuplicateUserError(f"User '{user_id}' already exists")
            user = User(user_id=user_id, name=name)
            position = self._commit(user)
            return _user_state(user, position)

        return self._retrying(f"user/{user_id}", decide)

    def get_user(self, user_id: str) -> User:
        user = self._find(User, user_aggregate_id(user_id))
        if user is None:
            raise UserNotFoundError(f"User '{user_id}' not found")
        return user

    # -- gatherings ----------------------------------------------------------

    def create_gathering(self, spec: GatheringSpec) -> GatheringState:
        if spec.capacity < 1:
            raise InvalidCommandError("capacity must be at least 1", field="capacity")

        def decide() -> GatheringState:
            if self._find(Gathering, gathering_aggregate_id(spec.gathering_id)) is not None:
                # A deleted gathering's id stays retired: its history is kept.
                raise DuplicateGatheringError(f"Event '{spec.gathering_id}' already exists")
            gathering = Gathering(
                gathering_id=spec.gathering_id,
                title=spec.title,
                description=spec.description,
                date=spec.date,
                location=spec.location,
                organizer=spec.organizer,
                status=str(spec.status),
                capacity=spec.capacity,
                waitlist_enabled=spec.waitlist_enabled,
            )
            position = self._commit(gathering)
            return _gathering_state(gathering, position)

        return self._retrying(f"gathering/{spec.gathering_id}", decide)

    def get_gathering(self, gathering_id: str) -> Gathering:
        gathering = self._find(Gathering, gathering_aggregate_id(gathering_id))
        if gathering is None or gathering.deleted:
            raise GatheringNotFoundError(f"Event '{gathering_id}' not found")
        return gathering

    def revise_gathering(self, gathering_id: str, changes: GatheringChanges) -> GatheringState:
        """Changes details and capacity; a capacity rise promotes waitlisted people FIFO."""
        if changes.capacity is not None and changes.capacity < 1:
            raise InvalidCommandError("capacity must be at least 1", field="capacity")

        def decide() -> GatheringState:
            gathering = self.get_gathering(gathering_id)
            touched: list[Aggregate] = [gathering]
            promoted: list[str] = []
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
            capacity = changes.capacity
            if capacity is not None and capacity != gathering.capacity:
                if capacity < gathering.confirmed_count:
                    raise CapacityBelowRegisteredError(
                        f"Capacity {capacity} is below the {gathering.confirmed_count} "
                        "confirmed registrations"
                    )
                before = _counts(gathering)
                gathering.change_capacity(capacity)
                free = min(gathering.available_spots, gathering.waitlist_count)
                limit = self.max_promotions_per_command
                if limit is not None and free > limit:
                    raise ChangeTooLargeError(
                        f"Raising capacity to {capacity} would promote {free} waitlisted people "
                        f"in one atomic step; this store allows at most {limit}. Raise capacity "
                        "in smaller steps.",
                        field="capacity",
                    )
                promoted = self._promote(gathering, free, touched)
                if promoted:
                    logger.info(
                        "registration change",
                        extra={
                            "operation": "promote",
                            "eventId": gathering_id,
                            "userIds": promoted,
                            "outcome": "promoted",
                            "cause": "capacity raised",
                            "before": before,
                            "after": _counts(gathering),
                        },
                    )
            position = self._commit(*touched)
            if capacity is not None:
                self._check_invariants(gathering)
            return _gathering_state(gathering, position, tuple(promoted))

        return self._retrying(f"gathering/{gathering_id}", decide)

    def delete_gathering(self, gathering_id: str) -> int:
        def decide() -> int:
            gathering = self.get_gathering(gathering_id)
            if gathering.confirmed_count or gathering.waitlist_count:
                raise GatheringHasRegistrationsError(
                    f"Event '{gathering_id}' has {gathering.confirmed_count} confirmed and "
                    f"{gathering.waitlist_count} waitlisted registrations"
                )
            gathering.delete()
            return self._commit(gathering)

        return self._retrying(f"gathering/{gathering_id}", decide)

    # -- registrations -------------------------------------------------------

    def register(self, user_id: str, gathering_id: str) -> RegistrationOutcome:
        """Confirms a seat, or a place at the tail of the waitlist, or refuses."""

        def decide() -> RegistrationOutcome:
            self.get_user(user_id)
            gathering = self.get_gathering(gathering_id)
            if not gathering.is_open:
                raise GatheringNotOpenError(
                    f"Event '{gathering_id}' is {gathering.status}, not open for registration"
                )
            registration = self._find(
                Registration, registration_aggregate_id(gathering_id, user_id)
            )
            if registration is not None:
                if registration.status == RegistrationStatus.CONFIRMED:
                    raise AlreadyRegisteredError(
                        f"User '{user_id}' is already registered for event '{gathering_id}'"
                    )
                if registration.status == RegistrationStatus.WAITLIST:
                    raise AlreadyOnWaitlistError(
                        f"User '{user_id}' is already on the waitlist of event '{gathering_id}'"
                    )
            else:
                registration = Registration(gathering_id=gathering_id, user_id=user_id)
            touched: list[Aggregate] = [gathering, registration]
            waitlist_position: int | None = None
            # No queue jumping: a free seat goes to a newcomer only while nobody waits.
            if gathering.available_spots > 0 and gathering.waitlist_count == 0:
                gathering.take_seat(user_id=user_id)
                registration.confirm()
            elif gathering.waitlist_enabled:
                ticket = gathering.next_ticket
                page = self._page_for_new_ticket(gathering_id, ticket)
                gathering.join_waitlist(user_id=user_id, ticket=ticket)
                page.append(ticket=ticket, user_id=user_id)
                registration.waitlist(ticket=ticket)
                touched.append(page)
                waitlist_position = gathering.waitlist_count
            else:
                raise GatheringFullError(f"Event '{gathering_id}' is full and has no waitlist")
            position = self._commit(*touched)
            self._check_invariants(gathering)
            logger.info(
                "registration change",
                extra={
                    "operation": "register",
                    "userId": user_id,
                    "eventId": gathering_id,
                    "outcome": str(registration.status),
                    "waitlistPosition": waitlist_position,
                },
            )
            return RegistrationOutcome(
                user_id=user_id,
                gathering_id=gathering_id,
                status=RegistrationStatus(registration.status),
                # The gathering event that took the seat or ticket is the one the
                # read tables show, so the response carries its timestamp.
                registered_at=gathering.modified_on,
                gathering_title=gathering.title,
                gathering_date=gathering.date,
                waitlist_position=waitlist_position,
                position=position,
            )

        return self._retrying(f"gathering/{gathering_id}", decide)

    def leave(self, user_id: str, gathering_id: str) -> LeaveOutcome:
        """Withdraws a registration; a freed seat goes to the head of the waitlist."""

        def decide() -> LeaveOutcome:
            self.get_user(user_id)
            gathering = self.get_gathering(gathering_id)
            registration = self._find(
                Registration, registration_aggregate_id(gathering_id, user_id)
            )
            if registration is None or not registration.is_active:
                raise RegistrationNotFoundError(
                    f"User '{user_id}' is not registered for event '{gathering_id}'"
                )
            previous = RegistrationStatus(registration.status)
            touched: list[Aggregate] = [gathering, registration]
            promoted: list[str] = []
            before = _counts(gathering)
            if previous == RegistrationStatus.CONFIRMED:
                registration.withdraw()
                gathering.release_seat(user_id=user_id)
                free = min(gathering.available_spots, gathering.waitlist_count)
                promoted = self._promote(gathering, free, touched)
            else:
                ticket = registration.ticket
                assert ticket is not None
                page = self._load(
                    WaitlistPage,
                    waitlist_page_aggregate_id(gathering_id, ticket // WAITLIST_PAGE_SIZE),
                )
                registration.withdraw()
                page.remove(ticket=ticket)
                gathering.leave_waitlist(user_id=user_id, ticket=ticket)
                touched.append(page)
            position = self._commit(*touched)
            self._check_invariants(gathering)
            logger.info(
                "registration change",
                extra={
                    "operation": "leave",
                    "userId": user_id,
                    "eventId": gathering_id,
                    "outcome": f"left {previous}",
                },
            )
            if promoted:
                logger.info(
                    "registration change",
                    extra={
                        "operation": "promote",
                        "eventId": gathering_id,
                        "userIds": promoted,
                        "outcome": "promoted",
                        "cause": f"'{user_id}' left",
                        "before": before,
                        "after": _counts(gathering),
                    },
                )
            return LeaveOutcome(
                user_id=user_id,
                gathering_id=gathering_id,
                previous_status=previous,
                promoted=tuple(promoted),
                position=position,
            )

        return self._retrying(f"gathering/{gathering_id}", decide)

    def waitlist_head(self, gathering_id: str, count: int) -> list[str]:
        """The first ``count`` people waiting, in order, read from the event store."""
        gathering = self.get_gathering(gathering_id)
        heads: list[str] = []
        page_no = gathering.head_ticket // WAITLIST_PAGE_SIZE
        last_page = (gathering.next_ticket - 1) // WAITLIST_PAGE_SIZE
        while len(heads) < count and page_no <= last_page and gathering.waitlist_count:
            page = self._load(WaitlistPage, waitlist_page_aggregate_id(gathering_id, page_no))
            heads.extend(page.user_ids[: count - len(heads)])
            page_no += 1
        return heads

    # -- internals -----------------------------------------------------------

    def _promote(self, gathering: Gathering, count: int, touched: list[Aggregate]) -> list[str]:
        """Moves the first ``count`` waiting people into seats, FIFO."""
        pages = _Pages(gathering.gathering_id)
        promoted: list[str] = []
        for _ in range(count):
            page, ticket, user_id = self._head(gathering, pages)
            page.remove(ticket=ticket)
            registration = self._load(
                Registration, registration_aggregate_id(gathering.gathering_id, user_id)
            )
            registration.promote()
            gathering.promote(user_id=user_id, ticket=ticket)
            touched.append(registration)
            promoted.append(user_id)
        touched.extend(pages.loaded.values())
        return promoted

    def _head(self, gathering: Gathering, pages: _Pages) -> tuple[WaitlistPage, int, str]:
        page_no = gathering.head_ticket // WAITLIST_PAGE_SIZE
        last_page = (gathering.next_ticket - 1) // WAITLIST_PAGE_SIZE
        while page_no <= last_page:
            page = pages.loaded.get(page_no)
            if page is None:
                page = self._load(
                    WaitlistPage, waitlist_page_aggregate_id(pages.gathering_id, page_no)
                )
                pages.loaded[page_no] = page
            first = page.first()
            if first is not None:
                return page, first[0], first[1]
            page_no += 1
        raise InvariantViolationError(
            f"Event '{gathering.gathering_id}' counts {gathering.waitlist_count} waiting "
            "but no waitlist page holds anyone"
        )

    def _page_for_new_ticket(self, gathering_id: str, ticket: int) -> WaitlistPage:
        page_no = ticket // WAITLIST_PAGE_SIZE
        if ticket % WAITLIST_PAGE_SIZE == 0:
            return WaitlistPage(gathering_id=gathering_id, page=page_no)
        return self._load(WaitlistPage, waitlist_page_aggregate_id(gathering_id, page_no))

    def _find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        if not isinstance(aggregate, cls):
            msg = f"Aggregate {aggregate_id} is a {type(aggregate).__name__}, not a {cls.__name__}"
            raise InvariantViolationError(msg)
        return aggregate

    def _load(self, cls: type[A], aggregate_id: UUID) -> A:
        aggregate = self._find(cls, aggregate_id)
        if aggregate is None:
            msg = f"{cls.__name__} {aggregate_id} is missing from the event store"
            raise InvariantViolationError(msg)
        return aggregate

    def _commit(self, *aggregates: Aggregate) -> int:
        """Saves all pending events atomically; returns the last notification id."""
        recordings = self.save(*aggregates)
        return max((r.notification.id for r in recordings), default=0)

    def _retrying(self, key: str, decide: Callable[[], T]) -> T:
        """Runs ``decide`` until it saves without a conflict (bounded, jittered back-off).

        Commands on the same key take turns within this process, so conflicts
        only arise between processes; across processes the store's unique
        (stream, version) constraint decides who wins.
        """
        lock = self._locks[hash(key) % len(self._locks)]
        for attempt in range(self.max_conflict_retries + 1):
            try:
                with lock:
                    return decide()
            except WriteConflictError:
                if attempt == self.max_conflict_retries:
                    break
                ceiling = min(0.25, self.conflict_backoff_seconds * 2**attempt)
                time.sleep(random.uniform(0, ceiling))  # noqa: S311 - jitter, not crypto
        raise ConcurrentModificationError(
            "The resource kept changing under this request; please retry"
        )

    def _check_invariants(self, gathering: Gathering) -> None:
        violations = gathering_violations(gathering)
        if not violations:
            return
        if self.invariant_violations_raise:
            raise InvariantViolationError("; ".join(violations))
        logger.error(
            "invariant violated",
            extra={"eventId": gathering.gathering_id, "violations": violations},
        )


def _changed(current: T, proposed: T | None) -> T | None:
    return None if proposed is None or proposed == current else proposed


def _counts(gathering: Gathering) -> dict[str, int]:
    return {
        "registeredCount": gathering.confirmed_count,
        "waitlistCount": gathering.waitlist_count,
        "capacity": gathering.capacity,
    }


def _user_state(user: User, position: int) -> UserState:
    return UserState(
        user_id=user.user_id,
        name=user.name,
        created_at=user.created_on,
        updated_at=user.modified_on,
        position=position,
    )


def _gathering_state(
    gathering: Gathering, position: int, promoted: Sequence[str] = ()
) -> GatheringState:
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
        registered_count=gathering.confirmed_count,
        waitlist_count=gathering.waitlist_count,
        created_at=gathering.created_on,
        updated_at=gathering.modified_on,
        position=position,
        promoted=tuple(promoted),
    )
