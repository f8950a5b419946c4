"""A batch asks the store once which of the aggregates its commands will read are
missing from the cache exist at all (``UnitOfWork.look_ahead``), instead of once
for each: on SQLite, where the cache is brought up to the log's head first."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from domain.application import GatheringSpec, RegistrationOutcome
from domain.errors import UserNotFoundError
from domain.model import user_aggregate_id
from infra.wiring import Container
from tests.holds import WriterHold

# DynamoDB decides on the cache as it is (cache_may_be_stale): no look-ahead.
pytestmark = pytest.mark.sqlite_pass


class Lookups:
    """Counts the store's existence look-ups."""

    def __init__(self, container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
        self.one_by_one = 0
        self.batched: list[int] = []
        recorder: Any = container.service.recorder
        stream_exists, streams_existing = recorder.stream_exists, recorder.streams_existing

        def counted_one(aggregate_id: UUID) -> bool:
            self.one_by_one += 1
            return bool(stream_exists(aggregate_id))

        def counted_many(aggregate_ids: list[UUID]) -> set[UUID]:
            self.batched.append(len(aggregate_ids))
            return set(streams_existing(aggregate_ids))

        monkeypatch.setattr(recorder, "stream_exists", counted_one)
        monkeypatch.setattr(recorder, "streams_existing", counted_many)


def register_together(container: Container, pairs: list[tuple[str, str]]) -> list[Any]:
    """Submits the registrations while a command holds the batcher, so that they
    are decided as one batch once it lets go."""
    service = container.service
    with WriterHold(service, "hold") as hold:
        futures = [service.submit(service.register_command(u, g)) for u, g in pairs]
    hold.done.result()
    outcomes: list[Any] = []
    for future in futures:
        try:
            outcomes.append(future.result())
        except Exception as error:
            outcomes.append(error)
    return outcomes


def test_a_batch_of_new_registrations_asks_the_store_once_which_streams_exist(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = container.service
    service.create_gathering(GatheringSpec("meetup", "Meetup", "2030-01-01", 50))
    users = [f"user-{n}" for n in range(8)]
    for user in users:
        service.create_user(user, "U")
    lookups = Lookups(container, monkeypatch)

    outcomes = register_together(container, [(u, "meetup") for u in users])

    assert all(isinstance(o, RegistrationOutcome) for o in outcomes)
    assert [str(o.status) for o in outcomes] == ["confirmed"] * 8
    assert lookups.batched == [8]  # the eight new registrations, in one look
    assert lookups.one_by_one == 0


def test_what_the_look_ahead_finds_missing_is_refused_and_what_it_finds_is_loaded(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = container.service
    service.create_gathering(GatheringSpec("meetup", "Meetup", "2030-01-01", 50))
    service.create_user("known", "K")
    cache = service.repository.cache
    assert cache is not None
    cache.get(user_aggregate_id("known"), evict=True)  # saved, but no longer cached
    lookups = Lookups(container, monkeypatch)

    known, stranger = register_together(container, [("known", "meetup"), ("stranger", "meetup")])

    assert isinstance(known, RegistrationOutcome)
    assert str(known.status) == "confirmed"
    assert isinstance(stranger, UserNotFoundError)
    assert lookups.batched == [4]  # known's user and registration, stranger's two
    assert container.read_model.get_registration("known", "meetup") is not None
