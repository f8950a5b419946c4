"""A hypothesis state machine that drives the registration service against a plain model.

The machine calls ``RegistrationService`` commands directly (no HTTP) on a
fresh SQLite event store and read tables per run, built by
``infra.wiring.build_container``. The reference model is plain Python: per
event a capacity, a list of confirmed userIds, a FIFO list of waiting
userIds, the waitlist flag and the status. After every rule the outcome
(success, or the exact domain error class) must be the model's; the
invariants compare the aggregates, the event store's waitlist and the read
tables (after ``projector.catch_up()``) with the model.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from eventsourcing.application import AggregateNotFoundError
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)

from domain.application import GatheringChanges, GatheringSpec
from domain.errors import (
    AlreadyOnWaitlistError,
    AlreadyRegisteredError,
    CapacityBelowRegisteredError,
    DuplicateGatheringError,
    DuplicateUserError,
    GatheringFullError,
    GatheringHasRegistrationsError,
    GatheringNotFoundError,
    GatheringNotOpenError,
    InvalidCommandError,
    RegistrationDomainError,
    RegistrationNotFoundError,
    UserNotFoundError,
)
from domain.model import GatheringStatus, Registration, registration_aggregate_id
from infra.settings import Settings
from infra.wiring import Container, build_container
from tests import support
from tests.support import fresh_store_settings

T = TypeVar("T")

# The runs' stores live in RAM when it is available: the machine exercises
# SQLite's semantics, not the disk's fsync latency.
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None

# The store under test (conftest's --store), set for each test by the fixture below.
RUN: dict[str, str | None] = {"store": "sqlite", "endpoint": None}


@pytest.fixture(autouse=True)
def _store_under_test(store_name: str, endpoint: str | None) -> None:
    RUN["store"], RUN["endpoint"] = store_name, endpoint


USER_IDS = ("u0", "u1", "u2", "u3", "u4", "u5")
EVENT_IDS = ("e0", "e1", "e2", "e3", "e4", "e5", "e6")
STATUSES = tuple(str(s) for s in GatheringStatus)
OPEN = {"active", "published"}

NAMES = ("Ann", "Bo Li", "Zoë", "李雷")
# Mostly open, sometimes draft/cancelled/completed.
statuses = st.sampled_from(("active", "active", "published", "draft", "cancelled", "completed"))


@dataclass
class EventModel:
    capacity: int
    waitlist_enabled: bool
    status: str
    confirmed: list[str] = field(default_factory=list)
    waitlist: list[str] = field(default_factory=list)
    deleted: bool = False

    def promote(self) -> list[str]:
        promoted: list[str] = []
        while self.waitlist and len(self.confirmed) < self.capacity:
            promoted.append(self.waitlist.pop(0))
            self.confirmed.append(promoted[-1])
        return promoted


Outcome = type[RegistrationDomainError] | None


def attempt(command: Callable[[], T]) -> tuple[Outcome, T | None]:
    """Runs a command; returns the domain error class it raised (or None) and its result."""
    try:
        return None, command()
    except RegistrationDomainError as error:
        return type(error), None


class RegistrationMachine(RuleBasedStateMachine):
    people = Bundle("people")
    gatherings = Bundle("gatherings")

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="registration-machine-", dir=SCRATCH))
        self.container: Container = build_container(
            Settings(
                **fresh_store_settings(RUN["store"], RUN["endpoint"]),  # type: ignore[arg-type]
                data_dir=self.directory,
                environment="test",
                projection_poll_interval=0.05,
            )
        )
        self.service = self.container.service
        self.users: set[str] = set()
        self.events: dict[str, EventModel] = {}
        self.steps = 0
        # Events whose Registration aggregates the next invariant check reloads.
        self.touched: set[str] = set()

    def teardown(self) -> None:
        event(f"steps: {self.steps // 10 * 10}+")
        self.container.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- the model's view ----------------------------------------------------

    def live(self, event_id: str) -> EventModel | None:
        self.touched.add(event_id)
        model = self.events.get(event_id)
        return None if model is None or model.deleted else model

    def expect(self, actual: Outcome, expected: Outcome) -> None:
        assert actual is expected, f"expected {expected}, got {actual}"
        self.steps += 1
        event("outcome: " + ("ok" if expected is None else expected.__name__))

    # -- rules ----------------------------------------------------------------

    @initialize(target=people, count=st.integers(2, len(USER_IDS)))
    def start_with_people(self, count: int) -> MultipleResults[str]:
        """Most runs should spend their steps registering, not finding nothing."""
        for user_id in USER_IDS[:count]:
            self.create_user(user_id, "Starter")
        return multiple(*USER_IDS[:count])

    @initialize(
        target=gatherings,
        shapes=st.lists(st.tuples(st.integers(1, 3), st.booleans()), min_size=1, max_size=3),
    )
    def start_with_events(self, shapes: list[tuple[int, bool]]) -> MultipleResults[str]:
        for event_id, (capacity, waitlist) in zip(EVENT_IDS, shapes, strict=False):
            self.create_event(event_id, capacity, waitlist or event_id == EVENT_IDS[0], "active")
        return multiple(*EVENT_IDS[: len(shapes)])

    @rule(target=people, user_id=st.sampled_from(USER_IDS), name=st.sampled_from(NAMES))
    def create_user(self, user_id: str, name: str) -> MultipleResults[str]:
        outcome, state = attempt(lambda: self.service.create_user(user_id, name))
        if user_id in self.users:
            self.expect(outcome, DuplicateUserError)
            return multiple()
        self.expect(outcome, None)
        assert state is not None
        assert (state.user_id, state.name) == (user_id, name)
        self.users.add(user_id)
        return multiple(user_id)

    @rule(
        target=gatherings,
        event_id=st.sampled_from(EVENT_IDS),
        capacity=st.integers(0, 4),
        waitlist_enabled=st.booleans(),
        status=statuses,
    )
    def create_event(
        self, event_id: str, capacity: int, waitlist_enabled: bool, status: str
    ) -> MultipleResults[str]:
        spec = GatheringSpec(
            gathering_id=event_id,
            title=f"Gathering {event_id}",
            date="2024-12-15",
            capacity=capacity,
            status=GatheringStatus(status),
            waitlist_enabled=waitlist_enabled,
        )
        outcome, state = attempt(lambda: self.service.create_gathering(spec))
        if capacity < 1:
            self.expect(outcome, InvalidCommandError)
            return multiple()
        if event_id in self.events:
            # Ids of deleted gatherings stay retired.
            self.expect(outcome, DuplicateGatheringError)
            return multiple()
        self.expect(outcome, None)
        assert state is not None
        assert (state.registered_count, state.waitlist_count) == (0, 0)
        self.events[event_id] = EventModel(capacity, waitlist_enabled, status)
        return multiple(event_id)

    def _register(self, user_id: str, event_id: str) -> None:
        outcome, result = attempt(lambda: self.service.register(user_id, event_id))
        model = self.live(event_id)
        if user_id not in self.users:
            self.expect(outcome, UserNotFoundError)
        elif model is None:
            self.expect(outcome, GatheringNotFoundError)
        elif model.status not in OPEN:
            self.expect(outcome, GatheringNotOpenError)
        elif user_id in model.confirmed:
            self.expect(outcome, AlreadyRegisteredError)
        elif user_id in model.waitlist:
            self.expect(outcome, AlreadyOnWaitlistError)
        elif len(model.confirmed) < model.capacity and not model.waitlist:
            self.expect(outcome, None)
            assert result is not None
            assert str(result.status) == "confirmed"
            assert result.waitlist_position is None
            model.confirmed.append(user_id)
            event("registered: confirmed")
        elif model.waitlist_enabled:
            self.expect(outcome, None)
            assert result is not None
            model.waitlist.append(user_id)
            assert str(result.status) == "waitlist"
            assert result.waitlist_position == len(model.waitlist)
            event("registered: waitlist")
        else:
            self.expect(outcome, GatheringFullError)

    def _leave(self, user_id: str, event_id: str) -> None:
        outcome, result = attempt(lambda: self.service.leave(user_id, event_id))
        model = self.live(event_id)
        if user_id not in self.users:
            self.expect(outcome, UserNotFoundError)
        elif model is None:
            self.expect(outcome, GatheringNotFoundError)
        elif user_id in model.confirmed:
            self.expect(outcome, None)
            assert result is not None
            model.confirmed.remove(user_id)
            promoted = model.promote()
            assert str(result.previous_status) == "confirmed"
            assert list(result.promoted) == promoted
            event("left a seat" + (", promoting the head" if promoted else ""))
        elif user_id in model.waitlist:
            self.expect(outcome, None)
            assert result is not None
            model.waitlist.remove(user_id)
            assert str(result.previous_status) == "waitlist"
            assert result.promoted == ()
            event("left the waitlist")
        else:
            self.expect(outcome, RegistrationNotFoundError)

    @rule(user_id=people, event_id=gatherings)
    def register(self, user_id: str, event_id: str) -> None:
        self._register(user_id, event_id)

    @rule(user_id=people, event_id=gatherings)
    def register_again(self, user_id: str, event_id: str) -> None:
        """The same as ``register``: more rules, more registrations per run."""
        self._register(user_id, event_id)

    @rule(user_id=people, event_id=gatherings)
    def register_once_more(self, user_id: str, event_id: str) -> None:
        """The same as ``register``: more rules, more registrations per run."""
        self._register(user_id, event_id)

    @rule(event_id=gatherings, order=st.permutations(USER_IDS))
    def a_crowd_registers(self, event_id: str, order: list[str]) -> None:
        """Every user registers for one event, in the given order: waitlists fill up."""
        for user_id in order:
            if user_id in self.users:
                self._register(user_id, event_id)

    @rule(user_id=people, event_id=gatherings)
    def leave(self, user_id: str, event_id: str) -> None:
        self._leave(user_id, event_id)

    @rule(
        user_id=people,
        event_id=gatherings,
        missing=st.sampled_from(["user", "event", "both"]),
        command=st.sampled_from(["register", "leave"]),
    )
    def name_somebody_or_something_missing(
        self, user_id: str, event_id: str, missing: str, command: str
    ) -> None:
        """Commands naming a userId or eventId that was never created."""
        if missing in {"user", "both"}:
            user_id = "nobody"
        if missing in {"event", "both"}:
            event_id = "no-such-event"
        (self._register if command == "register" else self._leave)(user_id, event_id)

    @rule(event_id=gatherings, capacity=st.integers(0, 6))
    def change_capacity(self, event_id: str, capacity: int) -> None:
        changes = GatheringChanges(capacity=capacity)
        outcome, state = attempt(lambda: self.service.revise_gathering(event_id, changes))
        model = self.live(event_id)
        if capacity < 1:
            self.expect(outcome, InvalidCommandError)
        elif model is None:
            self.expect(outcome, GatheringNotFoundError)
        elif capacity < len(model.confirmed):
            self.expect(outcome, CapacityBelowRegisteredError)
        else:
            self.expect(outcome, None)
            assert state is not None
            model.capacity = capacity
            promoted = model.promote()
            assert list(state.promoted) == promoted
            if promoted:
                event("capacity raise promoted people")
            assert state.capacity == capacity
            assert state.registered_count == len(model.confirmed)
            assert state.waitlist_count == len(model.waitlist)

    @rule(event_id=gatherings, status=statuses)
    def change_status(self, event_id: str, status: str) -> None:
        changes = GatheringChanges(status=GatheringStatus(status))
        outcome, state = attempt(lambda: self.service.revise_gathering(event_id, changes))
        model = self.live(event_id)
        if model is None:
            self.expect(outcome, GatheringNotFoundError)
            return
        self.expect(outcome, None)
        assert state is not None
        assert str(state.status) == status
        model.status = status

    @rule(event_id=gatherings, enabled=st.booleans())
    def change_waitlist(self, event_id: str, enabled: bool) -> None:
        changes = GatheringChanges(waitlist_enabled=enabled)
        outcome, _ = attempt(lambda: self.service.revise_gathering(event_id, changes))
        model = self.live(event_id)
        if model is None:
            self.expect(outcome, GatheringNotFoundError)
            return
        self.expect(outcome, None)
        model.waitlist_enabled = enabled

    @rule(event_id=gatherings)
    def delete_event(self, event_id: str) -> None:
        outcome, _ = attempt(lambda: self.service.delete_gathering(event_id))
        model = self.live(event_id)
        if model is None:
            self.expect(outcome, GatheringNotFoundError)
        elif model.confirmed or model.waitlist:
            self.expect(outcome, GatheringHasRegistrationsError)
        else:
            self.expect(outcome, None)
            model.deleted = True
            event("deleted an event")

    @rule(event_id=gatherings)
    def empty_an_event(self, event_id: str) -> None:
        """Seated people leave one by one, each seat going to the head of the waitlist."""
        model = self.live(event_id)
        if model is None:
            return
        while model.confirmed or model.waitlist:
            self._leave((model.confirmed or model.waitlist)[0], event_id)

    # -- invariants -------------------------------------------------------------

    @invariant()
    def aggregates_match_the_model(self) -> None:
        for event_id, model in self.events.items():
            if model.deleted:
                with pytest.raises(GatheringNotFoundError):
                    self.service.get_gathering(event_id)
                continue
            gathering = self.service.get_gathering(event_id)
            assert gathering.capacity == model.capacity
            assert gathering.registered_count == len(model.confirmed)
            assert gathering.waitlist_count == len(model.waitlist)
            assert str(gathering.status) == model.status
            assert gathering.waitlist_enabled == model.waitlist_enabled
            assert 0 <= gathering.registered_count <= gathering.capacity
            assert gathering.available_spots == gathering.capacity - gathering.registered_count
            if gathering.available_spots > 0:
                assert gathering.waitlist_count == 0
            assert not set(model.confirmed) & set(model.waitlist)
            assert self.service.waitlist_head(event_id, len(model.waitlist) + 1) == model.waitlist
            if event_id in self.touched:
                for user_id in self.users:
                    assert self.registration_status(user_id, event_id) == self.model_status(
                        user_id, event_id
                    )
        self.touched.clear()

    @invariant()
    def read_tables_match_the_model(self) -> None:
        # No catch-up: the read tables are written in each command's transaction.
        read_model = self.container.read_model
        for event_id, model in self.events.items():
            row = read_model.get_event(event_id)
            if model.deleted:
                assert row is None
                continue
            assert row is not None
            assert row.capacity == model.capacity
            assert row.registered_count == len(model.confirmed)
            assert row.waitlist_count == len(model.waitlist)
            assert row.available_spots == model.capacity - len(model.confirmed)
            assert list(row.waitlist) == model.waitlist
            assert row.status == model.status
            assert row.waitlist_enabled == model.waitlist_enabled
            page = read_model.list_event_registrations(event_id, 500, None)
            assert page.next_token is None
            assert page.total == len(model.confirmed) + len(model.waitlist)
            seated = len(model.confirmed)
            assert {r.user_id for r in page.items[:seated]} == set(model.confirmed)
            assert all(r.status == "confirmed" for r in page.items[:seated])
            assert [r.user_id for r in page.items[seated:]] == model.waitlist
            assert [r.waitlist_position for r in page.items[seated:]] == list(
                range(1, len(model.waitlist) + 1)
            )
        for user_id in USER_IDS:
            if user_id not in self.users:
                assert read_model.get_user(user_id) is None
                continue
            assert read_model.get_user(user_id) is not None
            page = read_model.list_user_registrations(user_id, 500, None)
            listed = {r.event_id: r.status for r in page.items}
            expected = {
                event_id: status
                for event_id in self.events
                if (status := self.model_status(user_id, event_id)) is not None
            }
            assert listed == expected
            assert page.total == len(expected)
            for r in page.items:
                if r.status == "waitlist":
                    assert (
                        r.waitlist_position == self.events[r.event_id].waitlist.index(user_id) + 1
                    )

    # -- helpers --------------------------------------------------------------

    def model_status(self, user_id: str, event_id: str) -> str | None:
        model = self.events.get(event_id)
        if model is None or model.deleted:
            return None
        if user_id in model.confirmed:
            return "confirmed"
        if user_id in model.waitlist:
            return "waitlist"
        return None

    def registration_status(self, user_id: str, event_id: str) -> str | None:
        """The user's status as the Registration aggregate holds it (None when none or left)."""
        try:
            registration: object = self.service.repository.get(
                registration_aggregate_id(event_id, user_id)
            )
        except AggregateNotFoundError:
            return None
        assert isinstance(registration, Registration)
        status = str(registration.status)
        return None if status == "left" else status


def _machine_settings() -> settings:
    """Derived from the loaded profile: twice its examples (runs are cheap, and many
    are trivially short), each up to 50 steps (80 in the exhaustive profile)."""
    profile = settings()
    steps = 50 if profile.max_examples <= 100 else 80
    examples = 2 * profile.max_examples
    if support.SELECTED_STORE == "dynamodb":
        # Each run creates its own tables on DynamoDB Local: fewer, longer runs.
        examples = max(4, profile.max_examples // 4)
    return settings(profile, max_examples=examples, stateful_step_count=steps)


RegistrationMachine.TestCase.settings = _machine_settings()
TestRegistrationMachine = pytest.mark.slow(RegistrationMachine.TestCase)


def test_a_rebuild_never_shows_part_of_one_command() -> None:
    """On the read side, a capacity rise and all its promotions become
    visible in the read tables together, also while a rebuild folds the log
    in small batches (a batch, or a DynamoDB chunk, is only ever cut where a
    commit recorded with the events ends).

    Reads are taken between the rebuild's steps, where a concurrent GET
    /events/{id} can land.
    """
    directory = Path(tempfile.mkdtemp(prefix="registration-atomic-", dir=SCRATCH))
    container = build_container(
        Settings(
            **fresh_store_settings(RUN["store"], RUN["endpoint"]),  # type: ignore[arg-type]
            data_dir=directory,
            environment="test",
        )
    )
    try:
        service, projector = container.service, container.projector
        # One commit: as many promotions as one save of this store holds.
        waiting = service.max_promotions_per_save or 30
        projector.batch_size = 4
        service.create_gathering(
            GatheringSpec(
                gathering_id="g", title="Big", date="2024-12-15", capacity=1, waitlist_enabled=True
            )
        )
        for n in range(waiting + 1):
            service.create_user(f"u{n}", "Someone")
            service.register(f"u{n}", "g")
        state = service.revise_gathering("g", GatheringChanges(capacity=waiting + 1))
        assert len(state.promoted) == waiting
        container.read_model.reset()
        seen: list[tuple[int, int, int]] = []
        while True:
            progress = projector.step()
            row = container.read_model.get_event("g")
            if row is not None:
                seen.append((row.capacity, row.registered_count, row.waitlist_count))
            if progress.log_position >= progress.head:
                break
        assert seen[-1] == (waiting + 1, waiting + 1, 0)
        assert all(count == 0 or capacity == registered for capacity, registered, count in seen), (
            f"(capacity, registeredCount, waitlistCount) after each rebuild step: {seen}"
        )
    finally:
        container.close()
        shutil.rmtree(directory, ignore_errors=True)
