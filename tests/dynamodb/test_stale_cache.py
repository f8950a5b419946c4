"""Two processes' caches on DynamoDB: decisions on stale state never stand.

The log is indexed after the appends, so a process cannot learn from it which
cached aggregates another process changed. It decides on its cache as it is:
a save on a stale aggregate conflicts (appends are conditional on versions) and
the command is decided again on fresh state; a refusal, which saves nothing, is
decided again on fresh state before it is reported.
"""

from __future__ import annotations

from collections.abc import Iterator

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
