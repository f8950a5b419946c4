"""Pure domain tests: the service on eventsourcing's in-memory (POPO) store, no HTTP.

Covers the paged FIFO waitlist across ``WAITLIST_PAGE_SIZE`` pages, the
invariant checker (raising in development and test, logging in production),
and the retry of write conflicts up to ``max_conflict_retries``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock
from uuid import UUID

import pytest
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import ApplicationRecorder, EventStore
from hypothesis import given
from hypothesis import strategies as st

import domain.model
from domain.application import GatheringChanges, GatheringSpec, RegistrationService
from domain.errors import (
    AlreadyRegisteredError,
    CapacityBelowRegisteredError,
    ConcurrentModificationError,
    GatheringFullError,
    InvariantViolationError,
    RegistrationNotFoundError,
    WriteConflictError,
)
from domain.invariants import gathering_violations
from domain.model import (
    WAITLIST_PAGE_SIZE,
    Gathering,
    GatheringDetails,
    GatheringStatus,
    Registration,
    RegistrationStatus,
    WaitlistPage,
    registration_aggregate_id,
    waitlist_page_aggregate_id,
)
from infra.service import StoredRegistrationService
from infra.settings import Settings
from infra.wiring import build_container

POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
# As the wiring runs it: recently used aggregates stay in memory, fast-forwarded on load.
POPO_CACHED = {**POPO, "AGGREGATE_CACHE_MAXSIZE": "100"}
ENVS = pytest.mark.parametrize("env", [POPO, POPO_CACHED], ids=["no-cache", "aggregate-cache"])


class RivalProcess(StoredRegistrationService):
    """A second server process on the same store: it shares the recorder (and the
    snapshots), not the in-process locks, so its commands really race the original's."""

    def __init__(self, original: StoredRegistrationService, env: dict[str, str] = POPO) -> None:
        self._original = original
        super().__init__(env=env)

    def construct_recorder(self) -> ApplicationRecorder:
        return self._original.recorder

    def construct_snapshot_store(self) -> EventStore[UUID]:
        assert self._original.snapshots is not None
        return self._original.snapshots


Rival = Callable[[RegistrationService], object]


class InterferingService(StoredRegistrationService):
    """Lets a rival process run a command just before each of this service's saves.

    The rival commits between this command's decision and its save, so the
    save finds the aggregate versions it decided on already taken, as when
    two server processes race.
    """

    def __init__(self, env: dict[str, str] = POPO) -> None:
        super().__init__(env=env)
        self.rival = RivalProcess(self, env)
        self.rivals: list[Rival] = []
        self.always: Rival | None = None
        self.saves = 0

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        self.saves += 1
        rival = self.always or (self.rivals.pop(0) if self.rivals else None)
        if rival is not None:
            rival(self.rival)
        return super().save(*objs, **kwargs)


def new_service() -> StoredRegistrationService:
    return StoredRegistrationService(env=POPO)


def new_gathering(
    service: RegistrationService,
    gathering_id: str = "g",
    *,
    capacity: int = 1,
    waitlist: bool = True,
) -> None:
    service.create_gathering(
        GatheringSpec(
            gathering_id=gathering_id,
            title="Gathering",
            date="2024-12-15",
            capacity=capacity,
            waitlist_enabled=waitlist,
        )
    )


def new_users(service: RegistrationService, count: int, prefix: str = "p") -> list[str]:
    users = [f"{prefix}{n:04d}" for n in range(count)]
    for user_id in users:
        service.create_user(user_id, user_id.upper())
    return users


def status(service: RegistrationService, user_id: str, gathering_id: str = "g") -> str:
    registration: object = service.repository.get(registration_aggregate_id(gathering_id, user_id))
    assert isinstance(registration, Registration)
    return str(registration.status)


def waiting(service: RegistrationService, gathering_id: str = "g") -> list[str]:
    gathering = service.get_gathering(gathering_id)
    head = service.waitlist_head(gathering_id, gathering.waitlist_count + 5)
    assert len(head) == gathering.waitlist_count
    return head


def pages_of(service: RegistrationService, gathering_id: str = "g") -> list[WaitlistPage]:
    gathering = service.get_gathering(gathering_id)
    found = []
    for page_no in range(gathering.next_ticket // WAITLIST_PAGE_SIZE + 1):
        try:
            page: object = service.repository.get(waitlist_page_aggregate_id(gathering_id, page_no))
        except AggregateNotFoundError:  # a page not created yet
            continue
        assert isinstance(page, WaitlistPage)
        found.append(page)
    return found


# --------------------------------------------------------------------------
# The paged waitlist
# --------------------------------------------------------------------------


def test_a_waitlist_of_several_pages_keeps_fifo_through_leaves_and_promotions() -> None:
    """More than WAITLIST_PAGE_SIZE people wait: the list spans pages, and people
    leaving from the head, the middle and whole pages never break FIFO promotion."""
    service = new_service()
    new_gathering(service, capacity=2)
    people = new_users(service, 2 + 2 * WAITLIST_PAGE_SIZE + 60)
    seated, queue = people[:2], people[2:]
    for user_id in seated:
        assert service.register(user_id, "g").status == RegistrationStatus.CONFIRMED
    for position, user_id in enumerate(queue, start=1):
        outcome = service.register(user_id, "g")
        assert outcome.status == RegistrationStatus.WAITLIST
        assert outcome.waitlist_position == position
    assert waiting(service) == queue
    assert len(pages_of(service)) == 3
    assert all(len(page.tickets) <= WAITLIST_PAGE_SIZE for page in pages_of(service))

    # Leave from the head, from the middle of the first page, and the whole second page.
    leavers = queue[:7] + queue[40:60] + queue[WAITLIST_PAGE_SIZE : 2 * WAITLIST_PAGE_SIZE]
    for user_id in leavers:
        assert service.leave(user_id, "g").previous_status == RegistrationStatus.WAITLIST
        assert status(service, user_id) == "left"
    model = [u for u in queue if u not in set(leavers)]
    assert waiting(service) == model
    assert service.get_gathering("g").waitlist_count == len(model)

    # Seated people leave: each seat goes to the head, across the emptied page.
    for _ in range(len(model) - 50):
        leaver = next(u for u in people if status(service, u) == "confirmed")
        left = service.leave(leaver, "g")
        assert left.promoted == (model[0],)
        assert status(service, model.pop(0)) == "confirmed"
    assert waiting(service) == model
    assert service.get_gathering("g").registered_count == 2

    # Newcomers (and people who left earlier) join at the tail, on new tickets.
    newcomers = [*new_users(service, 30, prefix="n"), *leavers[:5]]
    for user_id in newcomers:
        outcome = service.register(user_id, "g")
        model.append(user_id)
        assert outcome.waitlist_position == len(model)
    assert waiting(service) == model

    # A capacity rise promotes the whole remaining line in FIFO order.
    state = service.revise_gathering("g", GatheringChanges(capacity=2 + len(model)))
    assert list(state.promoted) == model
    gathering = service.get_gathering("g")
    assert (gathering.registered_count, gathering.waitlist_count) == (2 + len(model), 0)
    assert waiting(service) == []
    assert all(not page.tickets for page in pages_of(service))
    assert gathering_violations(gathering) == []


@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("register"), st.integers(0, 11)),
            st.tuples(st.just("register"), st.integers(0, 11)),
            st.tuples(st.just("leave"), st.integers(0, 11)),
            st.tuples(st.just("capacity"), st.integers(1, 6)),
        ),
        max_size=60,
    ),
    capacity=st.integers(1, 3),
)
def test_small_pages_behave_like_one_fifo_list(ops: list[tuple[str, int]], capacity: int) -> None:
    """With pages of 3 tickets, any history of joins, leaves and capacity changes
    gives the same waitlist, promotions and counts as one plain FIFO list."""
    with mock.patch.object(domain.model, "WAITLIST_PAGE_SIZE", 3):
        service = new_service()
        new_gathering(service, capacity=capacity)
        users = new_users(service, 12)
        confirmed: list[str] = []
        queue: list[str] = []
        for kind, arg in ops:
            if kind == "register":
                user_id = users[arg]
                if user_id in confirmed or user_id in queue:
                    continue
                outcome = service.register(user_id, "g")
                if len(confirmed) < capacity and not queue:
                    confirmed.append(user_id)
                    assert outcome.status == RegistrationStatus.CONFIRMED
                else:
                    queue.append(user_id)
                    assert outcome.waitlist_position == len(queue)
            elif kind == "leave":
                user_id = users[arg]
                if user_id not in confirmed and user_id not in queue:
                    with pytest.raises(RegistrationNotFoundError):
                        service.leave(user_id, "g")
                    continue
                result = service.leave(user_id, "g")
                if user_id in queue:
                    queue.remove(user_id)
                    assert result.promoted == ()
                else:
                    confirmed.remove(user_id)
                    expected = tuple(queue[:1])
                    assert result.promoted == expected
                    confirmed.extend(expected)
                    del queue[: len(expected)]
            elif arg >= len(confirmed):
                capacity = arg
                state = service.revise_gathering("g", GatheringChanges(capacity=capacity))
                free = capacity - len(confirmed)
                assert list(state.promoted) == queue[:free]
                confirmed.extend(queue[:free])
                del queue[:free]
            gathering = service.get_gathering("g")
            assert gathering.registered_count == len(confirmed)
            assert gathering.waitlist_count == len(queue)
            assert gathering_violations(gathering) == []
        assert waiting(service) == queue
        assert all(len(page.tickets) <= 3 for page in pages_of(service))


@pytest.mark.parametrize("cache", [False, True], ids=["no-cache", "aggregate-cache"])
def test_state_survives_snapshots_of_every_aggregate(cache: bool) -> None:
    """Registrations, gatherings and waitlist pages keep working past their
    snapshot interval (50 versions): state loaded from a snapshot (or from the
    aggregate cache the wiring turns on) decides alike."""
    service = StoredRegistrationService(env=POPO_CACHED if cache else POPO)
    new_gathering(service, capacity=1)
    holder, regular = new_users(service, 2)
    service.register(holder, "g")
    for _ in range(40):  # 80+ versions of the gathering, one Registration and one page
        assert service.register(regular, "g").status == RegistrationStatus.WAITLIST
        service.leave(regular, "g")
    service.revise_gathering("g", GatheringChanges(status=GatheringStatus.CANCELLED))
    service.revise_gathering("g", GatheringChanges(status=GatheringStatus.ACTIVE))
    assert service.register(regular, "g").waitlist_position == 1
    with pytest.raises(AlreadyRegisteredError):
        service.register(holder, "g")
    assert service.leave(holder, "g").promoted == (regular,)
    assert service.snapshots is not None
    gathering = service.get_gathering("g")
    assert gathering.version > 2 * 40
    assert gathering.is_open
    assert (gathering.registered_count, gathering.waitlist_count) == (1, 0)
    snapshot_ids = {
        "gathering": gathering.id,
        "registration": registration_aggregate_id("g", regular),
        "page": waitlist_page_aggregate_id("g", 0),
    }
    for name, aggregate_id in snapshot_ids.items():
        assert list(service.snapshots.get(aggregate_id)), f"no snapshot of the {name}"


# --------------------------------------------------------------------------
# The invariant checker
# --------------------------------------------------------------------------


def sound_gathering() -> Gathering:
    return Gathering.create(
        "g", 2, GatheringDetails(title="T", date="2024-12-15", waitlist_enabled=True)
    )


@pytest.mark.parametrize(
    ("corrupt", "phrase"),
    [
        ({"registered_count": -1}, "is negative"),
        ({"registered_count": 3}, "exceeds capacity"),
        ({"waitlist_count": -1}, "is negative"),
        ({"registered_count": 1, "waitlist_count": 1, "next_ticket": 1}, "spots are free"),
        ({"registered_count": 2, "waitlist_count": 2, "next_ticket": 1}, "exceeds the tickets"),
    ],
)
def test_the_invariant_checker_names_each_broken_invariant(
    corrupt: dict[str, int], phrase: str
) -> None:
    gathering = sound_gathering()
    assert gathering_violations(gathering) == []
    for name, value in corrupt.items():
        setattr(gathering, name, value)
    violations = gathering_violations(gathering)
    assert any(phrase in v for v in violations), violations


@contextmanager
def overbooked(service: RegistrationService) -> Iterator[None]:
    """A gathering whose history (written around the commands) seats 2 in 1 seat."""
    new_gathering(service, capacity=1)
    new_users(service, 1, prefix="late")
    gathering = service.get_gathering("g")
    gathering.take_seat(user_id="ghost-1")
    gathering.take_seat(user_id="ghost-2")
    service.save(gathering)
    yield


def test_a_broken_invariant_raises_in_development_and_test() -> None:
    """After a command, a broken invariant raises InvariantViolationError (an assertion)."""
    service = new_service()
    assert service.invariant_violations_raise is True
    with overbooked(service), pytest.raises(InvariantViolationError, match="exceeds capacity"):
        service.register("late0000", "g")


def test_a_broken_invariant_is_only_logged_in_production(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With invariant_violations_raise = False the command completes and the
    violation is logged at ERROR with the gathering and the violations."""
    service = new_service()
    service.invariant_violations_raise = False
    with overbooked(service), caplog.at_level(logging.ERROR, logger="domain.application"):
        outcome = service.register("late0000", "g")
    assert outcome.status == RegistrationStatus.WAITLIST
    records = [r for r in caplog.records if r.getMessage() == "invariant violated"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].__dict__["eventId"] == "g"
    assert any("exceeds capacity" in v for v in records[0].__dict__["violations"])


def test_sound_commands_log_no_violation(caplog: pytest.LogCaptureFixture) -> None:
    service = new_service()
    service.invariant_violations_raise = False
    new_gathering(service, capacity=1)
    users = new_users(service, 3)
    with caplog.at_level(logging.ERROR, logger="domain.application"):
        for user_id in users:
            service.register(user_id, "g")
        service.leave(users[0], "g")
        service.revise_gathering("g", GatheringChanges(capacity=3))
    assert not [r for r in caplog.records if r.getMessage() == "invariant violated"]


@pytest.mark.parametrize(
    ("environment", "raises"), [("test", True), ("development", True), ("production", False)]
)
def test_only_production_wiring_turns_violations_into_log_lines(
    tmp_path: Path, environment: str, raises: bool
) -> None:
    container = build_container(Settings(data_dir=tmp_path, environment=environment))
    try:
        assert container.service.invariant_violations_raise is raises
    finally:
        container.close()


# --------------------------------------------------------------------------
# Write conflicts and retries
# --------------------------------------------------------------------------


def test_saving_a_stale_aggregate_is_a_write_conflict() -> None:
    """The store's uniqueness failure reaches the domain as WriteConflictError."""
    service = new_service()
    new_gathering(service)
    first = service.get_gathering("g")
    second = service.get_gathering("g")
    first.change_capacity(5)
    second.change_capacity(6)
    service.save(first)
    with pytest.raises(WriteConflictError):
        service.save(second)
    assert service.get_gathering("g").capacity == 5


@ENVS
def test_a_write_conflict_is_retried_on_fresh_state(env: dict[str, str]) -> None:
    """A rival registration lands between a command's decision and its save:
    the command's save conflicts, it decides again on fresh state, and succeeds."""
    service = InterferingService(env)
    service.conflict_backoff_seconds = 0
    new_gathering(service, capacity=2, waitlist=False)
    alice, bob = new_users(service, 2)
    service.rivals.append(lambda rival: rival.register(bob, "g"))
    saves = service.saves
    outcome = service.register(alice, "g")
    assert outcome.status == RegistrationStatus.CONFIRMED
    assert service.saves - saves == 2  # the stale save and the retry's
    assert service.get_gathering("g").registered_count == 2
    assert {status(service, alice), status(service, bob)} == {"confirmed"}


@ENVS
def test_a_retry_decides_again_so_the_last_seat_is_not_sold_twice(env: dict[str, str]) -> None:
    """When the rival took the last seat, the retried command sees a full event."""
    service = InterferingService(env)
    service.conflict_backoff_seconds = 0
    new_gathering(service, capacity=1, waitlist=False)
    alice, bob = new_users(service, 2)
    service.rivals.append(lambda rival: rival.register(bob, "g"))
    with pytest.raises(GatheringFullError):
        service.register(alice, "g")
    assert service.get_gathering("g").registered_count == 1
    assert status(service, bob) == "confirmed"


@ENVS
def test_a_retried_leave_promotes_the_current_head_exactly_once(env: dict[str, str]) -> None:
    """A waiting user leaves while a seated user's leave is being decided: the
    retried leave promotes whoever heads the line now."""
    service = InterferingService(env)
    service.conflict_backoff_seconds = 0
    new_gathering(service, capacity=1)
    seated, first, second = new_users(service, 3)
    for user_id in (seated, first, second):
        service.register(user_id, "g")
    service.rivals.append(lambda rival: rival.leave(first, "g"))
    assert service.leave(seated, "g").promoted == (second,)
    assert status(service, second) == "confirmed"
    assert status(service, first) == "left"
    gathering = service.get_gathering("g")
    assert (gathering.registered_count, gathering.waitlist_count) == (1, 0)


@ENVS
@pytest.mark.parametrize("retries", [0, 1, 3])
def test_conflicts_past_max_retries_raise_concurrent_modification(
    env: dict[str, str], retries: int
) -> None:
    """A command that collides on every attempt gives up after 1 + max_conflict_retries
    attempts with ConcurrentModificationError, having changed nothing."""
    service = InterferingService(env)
    service.max_conflict_retries = retries
    service.conflict_backoff_seconds = 0
    new_gathering(service, capacity=5)
    (alice,) = new_users(service, 1)
    titles = iter(range(1000))

    def rename(rival: RegistrationService) -> None:
        rival.revise_gathering("g", GatheringChanges(title=f"Renamed {next(titles)}"))

    service.always = rename
    before = service.saves
    with pytest.raises(ConcurrentModificationError):
        service.register(alice, "g")
    service.always = None
    # Each attempt decides, lets the rival rename the gathering, and collides.
    assert service.saves - before == retries + 1
    assert service.get_gathering("g").title == f"Renamed {retries}"
    assert service.get_gathering("g").registered_count == 0
    with pytest.raises(AggregateNotFoundError):
        service.repository.get(registration_aggregate_id("g", alice))


@ENVS
def test_concurrent_processes_never_oversell(env: dict[str, str]) -> None:
    """Thirty threads spread over three 'processes' on one store register at once
    for a 5-seat event with a waitlist: exactly 5 are confirmed, 25 wait in a
    duplicate-free FIFO, and the counters agree. Conflicts between the processes
    are retried; none reaches the caller."""
    service = StoredRegistrationService(env=env)
    processes: list[StoredRegistrationService] = [
        service,
        RivalProcess(service, env),
        RivalProcess(service, env),
    ]
    for process in processes:
        process.conflict_backoff_seconds = 0.002
        process.max_conflict_retries = 50
    new_gathering(service, capacity=5)
    users = new_users(service, 30)
    barrier = threading.Barrier(len(users))
    outcomes: dict[str, str] = {}
    errors: list[BaseException] = []

    def run(process: RegistrationService, user_id: str) -> None:
        try:
            barrier.wait()
            outcomes[user_id] = str(process.register(user_id, "g").status)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [
        threading.Thread(target=run, args=(processes[n % len(processes)], user_id))
        for n, user_id in enumerate(users)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(outcomes.values()).count("confirmed") == 5
    gathering = service.get_gathering("g")
    assert (gathering.registered_count, gathering.waitlist_count) == (5, 25)
    line = waiting(service)
    assert len(set(line)) == 25
    assert set(line) == {u for u, s in outcomes.items() if s == "waitlist"}
    for user_id, outcome in outcomes.items():
        assert status(service, user_id) == outcome
    assert gathering_violations(gathering) == []


@ENVS
def test_a_refused_revision_leaves_no_trace(env: dict[str, str]) -> None:
    """A revision refused for its capacity changes none of the other details sent
    with it, also when the gathering comes from the aggregate cache."""
    service = StoredRegistrationService(env=env)
    new_gathering(service, capacity=2)
    for user_id in new_users(service, 2):
        service.register(user_id, "g")
    refused = GatheringChanges(title="Renamed", waitlist_enabled=False, capacity=1)
    with pytest.raises(CapacityBelowRegisteredError):
        service.revise_gathering("g", refused)
    service.revise_gathering("g", GatheringChanges(capacity=3))
    gathering = service.get_gathering("g")
    assert (gathering.title, gathering.waitlist_enabled, gathering.capacity) == (
        "Gathering",
        True,
        3,
    )


def test_a_registration_created_by_an_old_history_is_pending_until_admitted_not_left() -> None:
    """A version-1 history wrote ``Created`` then ``Confirmed`` or ``Waitlisted``:
    between the two the registration holds nothing yet, and it has not left."""
    registration = Registration(gathering_id="g", user_id="u")

    assert registration.status == RegistrationStatus.PENDING
    assert not registration.is_active
    registration.admitted(None)
    assert registration.is_active
