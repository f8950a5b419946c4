"""The commands of the registration service, as typed methods of an eventsourcing Application.

Each command is load -> decide -> save: its decision (a nested ``decide``)
loads the few aggregates it needs from a unit of work, asks them to decide
(the rules live in the aggregates, ``domain/model.py``, and the waitlist,
``domain/waitlist.py``), notes what it did, and returns its outcome. The
runner (``domain/runner.py``) decides commands in batches, saves each batch
at once, retries conflicts and logs the notes once the save committed; the
unit of work is ``domain/unit_of_work.py``, the batchers ``domain/batching.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, ClassVar, TypeVar

from domain.batching import Command, Decide
from domain.errors import (
    DuplicateGatheringError,
    DuplicateUserError,
    GatheringNotFoundError,
    InvariantViolationError,
    PersonalDataNotSealedError,
    UserNotFoundError,
)
from domain.invariants import gathering_violations
from domain.model import (
    DETAIL_NAMES,
    Counts,
    Gathering,
    GatheringDetails,
    Registration,
    RegistrationStatus,
    User,
    WaitlistPage,
    gathering_aggregate_id,
    registration_aggregate_id,
    user_aggregate_id,
)
from domain.notes import Change, Note, Promotion, Violations
from domain.personal import PersonalData, Unsealed
from domain.runner import CommandRunner
from domain.unit_of_work import UnitOfWork
from domain.waitlist import Waitlist

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class _SpecHead:
    gathering_id: str
    title: str
    date: str
    capacity: int


@dataclass(frozen=True)
class GatheringSpec(GatheringDetails, _SpecHead):
    """What a new gathering is created with: its id, capacity and details.

    Fields in the order ``gathering_id, title, date, capacity``, then the
    optional details (a base's field keeps its place when redeclared)."""


@dataclass(frozen=True, init=False)
class GatheringChanges:
    """A partial update of a gathering: a capacity and details, by name
    (``GatheringDetails``); what is not named, or None, stays as it is."""

    capacity: int | None
    details: Mapping[str, Any]

    def __init__(self, capacity: int | None = None, **details: Any) -> None:
        unknown = details.keys() - set(DETAIL_NAMES)
        if unknown:
            raise TypeError(f"Not details of a gathering: {sorted(unknown)}")
        object.__setattr__(self, "capacity", capacity)
        object.__setattr__(self, "details", details)


@dataclass(frozen=True)
class UserState:
    user_id: str
    name: str | None
    created_at: datetime
    updated_at: datetime
    erased: bool = False


@dataclass(frozen=True)
class ErasureOutcome:
    """An erasure: ``recorded`` False when the user had been erased already
    (the key is destroyed again, which changes nothing)."""

    user_id: str
    erased_at: datetime
    recorded: bool


@dataclass(frozen=True, kw_only=True)
class GatheringState(GatheringDetails):
    """A gathering as a command left it (the waitlist itself lives in the read tables)."""

    gathering_id: str
    capacity: int
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


class RegistrationService(CommandRunner):
    """The registration service's commands."""

    name = "Registrations"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {
        Gathering: 50,
        Registration: 50,
        WaitlistPage: 50,
    }
    invariant_violations_raise: bool = True
    #: Seals personal data under each user's key; the store's (``infra/wiring.py``).
    personal_data: PersonalData = Unsealed()
    #: People one step of a capacity raise promotes, on every store: a raise
    #: owing more saves them in further steps, and other commands run between
    #: steps (a step's work holds the event loop, or a writer lane, for a few
    #: milliseconds, not for the whole raise).
    promotions_per_step: int = 50

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

    # -- users ---------------------------------------------------------------

    def create_user_command(self, user_id: str, name: str) -> Command[UserState]:
        """Creates a user; the name is stored sealed under the user's key."""

        def decide(uow: UnitOfWork) -> UserState:
            if uow.find(User, user_aggregate_id(user_id)) is not None:
                raise DuplicateUserError(f"User '{user_id}' already exists")
            sealed = self.personal_data.seal(user_id, "name", name)
            user = uow.add(User(user_id=user_id, name=sealed))
            return UserState(user_id, name, user.created_on, user.modified_on)

        return Command(
            f"user/{user_id}", decide, reads=(user_aggregate_id(user_id),), name="create_user"
        )

    def erase_user(
        self, user_id: str, erased_by: str | None = None, request_id: str | None = None
    ) -> ErasureOutcome:
        return self.run(self.erase_user_command(user_id, erased_by, request_id))

    def erase_user_command(
        self, user_id: str, erased_by: str | None, request_id: str | None
    ) -> Command[ErasureOutcome]:
        """Destroys the user's key, then records ``User.Erased`` (once: erasing
        again destroys nothing more and records nothing). The key goes first, so
        that a user shown as erased never has a key left; a retry after a failed
        save finds it gone and records the erasure."""

        def decide(uow: UnitOfWork) -> ErasureOutcome:
            user = _existing_user(uow, user_id)
            if user.name is not None and not self.personal_data.is_sealed(user.name):
                msg = (
                    f"User '{user_id}' was created before names were sealed: "
                    "run `regsvc seal-names` first"
                )
                raise PersonalDataNotSealedError(msg)
            self.personal_data.destroy(user_id)
            recorded = user.erase(erased_by, request_id)
            return ErasureOutcome(user_id, user.modified_on, recorded)

        return Command(
            f"user/{user_id}", decide, reads=(user_aggregate_id(user_id),), name="erase_user"
        )

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
            gathering = uow.add(Gathering.create(spec.gathering_id, spec.capacity, spec))
            return _gathering_state(gathering)

        return Command(f"gathering/{spec.gathering_id}", decide, name="create_event")

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
            gathering.amend(changes.details)  # records only the details that differ
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
            name="revise_event",
        )

    def delete_gathering_command(self, gathering_id: str) -> Command[None]:
        def decide(uow: UnitOfWork) -> None:
            _open_gathering(uow, gathering_id).retire()

        return Command(f"gathering/{gathering_id}", decide, name="delete_event")

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
        return Command(f"gathering/{gathering_id}", decide, reads=reads, name="register")

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

        return Command(f"gathering/{gathering_id}", decide, name="leave")

    def waitlist_head(self, gathering_id: str, count: int) -> list[str]:
        """The first ``count`` people waiting, in order, read from the event store."""
        uow = UnitOfWork(self)
        return Waitlist(uow, _open_gathering(uow, gathering_id)).head(count)

    # -- internals -----------------------------------------------------------

    def log_note(self, note: Note) -> None:
        _log(note)

    def _check_invariants(self, uow: UnitOfWork, gathering: Gathering) -> None:
        """Refuses a decision that broke an invariant (an assertion), or, in
        production (``invariant_violations_raise`` False), notes it for the log."""
        violations = gathering_violations(gathering)
        if not violations:
            return
        if self.invariant_violations_raise:
            raise InvariantViolationError("; ".join(violations))
        uow.note(Violations(gathering.gathering_id, tuple(violations)))


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


def _gathering_state(gathering: Gathering, promoted: Sequence[str] = ()) -> GatheringState:
    return GatheringState(
        **gathering.details.values(),
        gathering_id=gathering.gathering_id,
        capacity=gathering.capacity,
        registered_count=gathering.registered_count,
        waitlist_count=gathering.waitlist_count,
        created_at=gathering.created_on,
        updated_at=gathering.modified_on,
        promoted=tuple(promoted),
        promotions_due=gathering.promotions_due,
    )
