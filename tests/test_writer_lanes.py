"""Writer lanes (``domain/lanes.py``): commands on different gatherings are decided
and saved in different writer threads at the same time, each gathering's
commands in one lane in arrival order; and a batch that fails part-way re-runs
its commands alone without breaking a command in steps behind it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from domain.application import GatheringChanges, GatheringSpec, GatheringState, RegistrationOutcome
from domain.batching import Command
from domain.errors import InvalidCommandError
from domain.lanes import lane_of
from domain.model import RegistrationStatus
from domain.unit_of_work import UnitOfWork
from infra.settings import Settings
from infra.wiring import Container, build_container
from tests.holds import WriterHold
from tests.support import unique

LANES = 4
# How long a test waits for an outcome before calling it stuck (a deadlock guard,
# not a timing assertion: the outcomes come in milliseconds).
STUCK = 60


@pytest.fixture
def laned(settings: Settings) -> Iterator[Container]:
    """A started container with several writer lanes, on the store under test."""
    built = build_container(settings.model_copy(update={"writer_lanes": LANES}))
    built.start()
    try:
        yield built
    finally:
        built.close()


def gatherings_in_different_lanes() -> tuple[str, str]:
    first = unique("gathering")
    while True:
        second = unique("gathering")
        if lane_of(f"gathering/{first}", LANES) != lane_of(f"gathering/{second}", LANES):
            return first, second


def open_gathering(container: Container, gathering_id: str, capacity: int) -> None:
    container.service.create_gathering(
        GatheringSpec(
            gathering_id=gathering_id,
            title="Meetup",
            date="2030-01-01",
            capacity=capacity,
            waitlist_enabled=True,
        )
    )


def hold_lane_of(container: Container, gathering_id: str) -> WriterHold:
    """Occupies the writer lane of ``gathering_id`` until the ``with`` block ends."""
    return WriterHold(container.service, f"gathering/{gathering_id}")


def test_the_default_is_eight_lanes_on_dynamodb_and_one_on_sqlite() -> None:
    assert Settings(store="dynamodb").lanes == 8
    assert Settings(store="sqlite").lanes == 1
    assert Settings(store="dynamodb", writer_lanes=3).lanes == 3


def test_commands_on_many_gatherings_spread_over_every_lane() -> None:
    keys = [f"gathering/{n}" for n in range(200)]
    assert {lane_of(key, 8) for key in keys} == set(range(8))


def test_a_gathering_waiting_on_its_save_does_not_hold_up_another_gatherings_commands(
    laned: Container,
) -> None:
    busy, free = gatherings_in_different_lanes()
    service = laned.service
    service.create_user("ann", "Ann")
    open_gathering(laned, free, capacity=5)
    with hold_lane_of(laned, busy) as hold:
        registered = service.submit(service.register_command("ann", free))
        # With one writer thread this waits for ever behind the held command.
        outcome = registered.result(timeout=STUCK)
        assert outcome.status is RegistrationStatus.CONFIRMED
        assert not hold.done.done()
    hold.done.result(timeout=STUCK)


def test_one_gatherings_commands_are_decided_in_arrival_order_in_its_lane(
    laned: Container,
) -> None:
    gathering = unique("gathering")
    service = laned.service
    users = [unique("user") for _ in range(12)]
    for user_id in users:
        service.create_user(user_id, user_id)
    open_gathering(laned, gathering, capacity=2)
    with hold_lane_of(laned, gathering) as hold:
        futures = [service.submit(service.register_command(u, gathering)) for u in users]
    hold.done.result(timeout=STUCK)
    outcomes: list[RegistrationOutcome] = [f.result(timeout=STUCK) for f in futures]
    assert [o.status for o in outcomes[:2]] == [RegistrationStatus.CONFIRMED] * 2
    assert [o.waitlist_position for o in outcomes[2:]] == list(range(1, 11))
    assert service.waitlist_head(gathering, 10) == users[2:]


def _records_then_refuses(user_id: str, gathering_id: str, container: Container) -> Command[Any]:
    """A command that records a registration and then breaks a rule: nothing of
    its batch can be trusted, so every command of the batch runs alone."""
    register = container.service.register_command(user_id, gathering_id)

    def decide(uow: UnitOfWork) -> Any:
        register.decide(uow)
        raise InvalidCommandError("refused after recording")

    return Command(register.key, decide)


def test_a_command_in_steps_behind_a_batch_that_failed_part_way_runs_every_step(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = container.service
    # One promotion per save: raising the capacity by two takes two steps (Command.then).
    monkeypatch.setattr(service, "max_promotions_per_save", 1)
    gathering = unique("gathering")
    first, second, third, late, spoiler = (unique("user") for _ in range(5))
    for user_id in (first, second, third, late, spoiler):
        service.create_user(user_id, user_id)
    open_gathering(container, gathering, capacity=1)
    for user_id in (first, second, third):
        service.register(user_id, gathering)

    with hold_lane_of(container, gathering):
        # One batch: the spoiler, then the raise's first step; the late registration
        # waits for the raise's last step (it is on the same gathering).
        refused = service.submit(_records_then_refuses(spoiler, gathering, container))
        raised = service.submit(
            service.revise_gathering_command(gathering, GatheringChanges(capacity=3))
        )
        registered = service.submit(service.register_command(late, gathering))

    with pytest.raises(InvalidCommandError):
        refused.result(timeout=STUCK)
    state: GatheringState = raised.result(timeout=STUCK)
    assert (state.capacity, state.promoted) == (3, (second, third))
    outcome: RegistrationOutcome = registered.result(timeout=STUCK)
    assert (outcome.status, outcome.waitlist_position) == (RegistrationStatus.WAITLIST, 1)
    assert service.waitlist_head(gathering, 10) == [late]
