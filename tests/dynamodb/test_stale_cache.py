"""Two processes' caches on DynamoDB: decisions on stale state never stand.

The log is indexed after the appends, so a process cannot learn from it which
cached aggregates another process changed. It decides on its cache as it is:
a save on a stale aggregate conflicts (appends are conditional on versions) and
the command is decided again on fresh state; a refusal, which saves nothing,
stands only if none of the streams it read has moved on (one consistent
BatchGetItem), and is otherwise decided again on fresh state.

An aggregate the cache lacks is taken as never saved, without a read: creating
it again conflicts, and a refusal for its absence is checked the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from domain.application import GatheringSpec
from infra.settings import Settings
from infra.wiring import Container, build_container


@pytest.fixture
def two_processes(settings: Settings) -> Iterator[tuple[Container, Container]]:
    first, second = build_container(settings), build_container(settings)
    first.start()
    second.start()
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_a_seat_freed_by_another_process_is_not_refused_as_full(
    two_processes: tuple[Container, Container],
) -> None:
    here, there = (c.service for c in two_processes)
    here.create_gathering(GatheringSpec(gathering_id="g", title="G", date="2030-01-01", capacity=1))
    for user in ("ann", "bob"):
        here.create_user(user, user)
    here.register("ann", "g")  # this process now caches a full gathering

    there.leave("ann", "g")  # the other frees the seat

    assert str(here.register("bob", "g").status) == "confirmed"


def test_a_registration_on_a_gathering_another_process_changed_counts_both(
    two_processes: tuple[Container, Container],
) -> None:
    (here, here_tables), (there, _) = ((c.service, c.read_model) for c in two_processes)
    here.create_gathering(GatheringSpec(gathering_id="g", title="G", date="2030-01-01", capacity=5))
    for user in ("ann", "bob", "cid"):
        here.create_user(user, user)
    here.register("ann", "g")  # cached here at this version

    there.register("bob", "g")  # the gathering moves on elsewhere
    here.register("cid", "g")  # decided on the stale cache: conflicts, decided again

    row = here_tables.get_event("g")
    assert row is not None
    assert row.registered_count == 3


def test_a_user_registered_by_another_process_is_refused_as_already_registered(
    two_processes: tuple[Container, Container],
) -> None:
    here, there = (c.service for c in two_processes)
    here.create_gathering(GatheringSpec(gathering_id="g", title="G", date="2030-01-01", capacity=5))
    here.create_user("ann", "Ann")
    here.register("ann", "g")
    here.leave("ann", "g")  # cached here as withdrawn

    there.register("ann", "g")

    with pytest.raises(Exception, match="already registered"):
        here.register("ann", "g")


def test_a_user_created_by_another_process_can_register_here(
    two_processes: tuple[Container, Container],
) -> None:
    here, there = (c.service for c in two_processes)
    here.create_gathering(GatheringSpec(gathering_id="g", title="G", date="2030-01-01", capacity=5))

    there.create_user("ann", "Ann")  # not in this process's cache

    assert str(here.register("ann", "g").status) == "confirmed"


def test_a_user_who_left_through_another_process_registers_again_here(
    two_processes: tuple[Container, Container],
) -> None:
    (here, here_tables), (there, _) = ((c.service, c.read_model) for c in two_processes)
    there.create_gathering(
        GatheringSpec(gathering_id="g", title="G", date="2030-01-01", capacity=5)
    )
    there.create_user("ann", "Ann")
    there.register("ann", "g")
    there.leave("ann", "g")  # the registration exists, withdrawn; this process never saw it

    outcome = here.register("ann", "g")

    assert str(outcome.status) == "confirmed"
    registration = here_tables.get_registration("ann", "g")
    assert registration is not None
    assert registration.status == "confirmed"
    row = here_tables.get_event("g")
    assert row is not None
    assert row.registered_count == 1


def _batcher_calls(service: Any) -> tuple[list[str], Callable[[], None]]:
    client = service.factory.datastore.client
    calls: list[str] = []

    def count(model: Any, **_: Any) -> None:
        if threading.current_thread().name.startswith("command-batcher"):  # a writer lane
            calls.append(model.name)

    client.meta.events.register("before-call.dynamodb", count)
    return calls, lambda: client.meta.events.unregister("before-call.dynamodb", count)


def test_a_refusal_on_current_cached_state_stands_after_one_batched_check(
    two_processes: tuple[Container, Container],
) -> None:
    service = two_processes[0].service
    service.create_gathering(
        GatheringSpec(gathering_id="g", title="G", date="2030-01-01", capacity=5)
    )
    service.create_user("ann", "Ann")
    service.register("ann", "g")
    calls, stop = _batcher_calls(service)
    try:
        with pytest.raises(Exception, match="already registered"):
            service.register("ann", "g")
    finally:
        stop()

    assert calls == ["BatchGetItem"]


def test_a_new_registration_on_cached_aggregates_reads_nothing_from_the_store(
    two_processes: tuple[Container, Container],
) -> None:
    container = two_processes[0]
    service = container.service
    service.create_gathering(
        GatheringSpec(gathering_id="g", title="G", date="2030-01-01", capacity=5)
    )
    service.create_user("ann", "Ann")
    calls, stop = _batcher_calls(service)
    try:
        service.register("ann", "g")
    finally:
        stop()

    assert calls == ["TransactWriteItems"]
