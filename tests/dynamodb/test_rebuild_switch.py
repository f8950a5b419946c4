"""A rebuild's switch on DynamoDB: an append whose read-table rows were built for
the generation being replaced is never sent once the switch has begun; it is
built again for the new generation and lands there."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from domain.application import GatheringSpec
from infra.dynamodb import DynamoDBApplicationRecorder
from infra.dynamodb.read_tables import DynamoDBReadModel
from infra.wiring import Container


@pytest.mark.parametrize("caught", ["before the attempt", "by the send hook"])
def test_an_append_built_for_the_replaced_generation_is_built_again_for_the_new_one(
    container: Container, monkeypatch: pytest.MonkeyPatch, caught: str
) -> None:
    """Caught before the attempt: the append loop sees the pointer moved. By the
    send hook: the loop's look came just before the switch (it is skipped here),
    and botocore's before-send hook refuses the request itself."""
    service = container.service
    recorder = service.recorder
    assert isinstance(recorder, DynamoDBApplicationRecorder)
    service.create_gathering(GatheringSpec("switching", "Switching", "2030-04-04", 5))
    service.create_user("mid", "Mid")
    pointer = recorder.read_tables().pointer
    rebuilder = container.rebuilder
    rebuilder.begin()
    switching = threading.Thread(target=rebuilder.run)
    built_for: list[str] = []
    build = recorder._inline_items

    def build_then_let_the_switch_begin(inline: Any) -> Any:
        items, generation = build(inline)
        built_for.append(generation or "")
        if len(built_for) == 1:  # the switch fences the pointer before these are sent
            switching.start()
            deadline = time.monotonic() + 30
            while not pointer.read()[1]:
                assert time.monotonic() < deadline, "the switch never fenced the pointer"
                time.sleep(0.01)
            time.sleep(pointer.ttl)  # this process's copy of the pointer expires
        return items, generation

    monkeypatch.setattr(recorder, "_inline_items", build_then_let_the_switch_begin)
    if caught == "by the send hook":
        looked = recorder._inline_still_live
        skipped: list[bool] = []

        def look_too_early(generation: str) -> bool:
            if not skipped:
                skipped.append(True)
                return True
            return looked(generation)

        monkeypatch.setattr(recorder, "_inline_still_live", look_too_early)

    outcome = service.register("mid", "switching")
    switching.join()

    assert outcome.status == "confirmed"
    assert built_for == ["blue", "green"]  # built again, after waiting for the switch
    assert pointer.read() == ("green", False)
    registration = container.read_model.get_registration("mid", "switching")
    assert registration is not None
    live = container.read_model
    assert isinstance(live, DynamoDBReadModel)
    blue = DynamoDBReadModel(recorder.client, live.prefix, create_tables=False, generation="blue")
    assert blue.get_registration("mid", "switching") is None  # never sent to the old set
    assert container.check("read-tables").ok
