"""A batch on DynamoDB grows as far as one commit allows, and no further.

The batcher stops adding commands to a batch when its weight, as
``UnitOfWork.weight`` counts it with the store's ``SaveWeights``, comes near the
bound: a commit holds at most 100 events and one transaction at most 100
items (a stream's events of one commit are one item, so items are fewer than
events plus aggregates). Counted too high, batches of a hot gathering stay
small and each pays a round trip; counted too low, a save is refused for its
size and every command of the batch runs again alone.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from domain.application import GatheringChanges, GatheringSpec
from domain.batching import Command
from domain.unit_of_work import UnitOfWork
from infra.dynamodb import DynamoDBFactory
from infra.dynamodb.layout import EVENTS, MAX_TRANSACT_ITEMS
from infra.dynamodb.recorders import DynamoDBApplicationRecorder
from infra.wiring import Container
from tests.holds import WriterHold
from tests.support import unique


def events_in(transact_items: list[dict[str, Any]]) -> int:
    """The domain events a transaction writes: one per event item, and those
    packed in its ``e``."""
    return sum(
        1 + len(put["Item"].get(EVENTS, {}).get("L", []))
        for put in (t.get("Put") for t in transact_items)
        if put is not None and "ver" in put["Item"]
    )


MAX_EVENTS_PER_COMMIT = DynamoDBApplicationRecorder.max_events_per_insert


class Saves:
    """Each transaction a save sends: (the batch's estimated weight, its items,
    its events)."""

    def __init__(self, container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[tuple[int, int, int]] = []
        self.alone = 0
        self._weight = threading.local()
        service = container.service
        save, run_each_alone = service._save, service._run_each_alone

        def weighed_save(uow: UnitOfWork) -> None:
            self._weight.value = uow.weight()
            save(uow)

        def counted_alone(jobs: list[Any]) -> None:
            self.alone += len(jobs)
            run_each_alone(jobs)

        def sent(params: dict[str, Any], **_: Any) -> None:
            weight = getattr(self._weight, "value", None)
            if weight is not None:
                items = params["TransactItems"]
                self.sent.append((weight, len(items), events_in(items)))

        monkeypatch.setattr(service, "_save", weighed_save)
        monkeypatch.setattr(service, "_run_each_alone", counted_alone)
        factory = service.factory
        assert isinstance(factory, DynamoDBFactory)
        factory.datastore.client.meta.events.register(
            "provide-client-params.dynamodb.TransactWriteItems", sent
        )


def all_at_once(container: Container, gathering_id: str, commands: list[Command[Any]]) -> None:
    """Submits ``commands`` while the gathering's lane is held, so that they
    are decided in as few batches as the bound allows; waits for them all."""
    service = container.service
    with WriterHold(service, f"gathering/{gathering_id}") as hold:
        futures = [service.submit(command) for command in commands]
    hold.done.result(timeout=120)
    for future in futures:
        future.result(timeout=120)


def test_no_save_writes_more_items_than_its_batch_was_weighed_at(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = container.service
    gathering = unique("gathering")
    users = [unique("user") for _ in range(60)]
    created = [service.submit(service.create_user_command(u, u)) for u in users]
    for future in created:
        future.result(timeout=120)
    service.create_gathering(
        GatheringSpec(
            gathering_id=gathering,
            title="Hot",
            date="2030-01-01",
            capacity=3,
            waitlist_enabled=True,
        )
    )
    saves = Saves(container, monkeypatch)

    all_at_once(container, gathering, [service.register_command(u, gathering) for u in users])
    # Seated people and the first few waiting leave: each seat freed promotes one.
    all_at_once(container, gathering, [service.leave_command(u, gathering) for u in users[:10]])
    service.revise_gathering(gathering, GatheringChanges(capacity=40))

    assert saves.alone == 0, "a batch was refused and its commands ran again alone"
    assert saves.sent, "no transaction was recorded"
    assert all(
        items <= weight <= MAX_TRANSACT_ITEMS and events <= weight
        for weight, items, events in saves.sent
    ), saves.sent
    # The registrations were not cut into small batches: one save held most of
    # the 100 events a commit may hold.
    assert max(events for _, _, events in saves.sent) > MAX_EVENTS_PER_COMMIT // 2, saves.sent
