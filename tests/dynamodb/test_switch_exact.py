"""A rebuild's switch on DynamoDB is exact without any timing assumption: an
append whose request is held on the wire until after the switch has pointed at
the new tables lands in the replaced ones, and is repaired into the live ones
(by the indexer, by the switch, or by the stream's next append)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from domain.application import GatheringSpec
from domain.errors import RegistrationDomainError
from domain.model import registration_aggregate_id
from infra.dynamodb import DynamoDBApplicationRecorder
from infra.dynamodb.live_pointer import LivePointer
from infra.dynamodb.read_tables import DynamoDBReadModel
from infra.dynamodb.rebuild import DynamoDBRebuildTarget
from infra.dynamodb.repair import RepairingIndexer
from infra.wiring import Container


class HeldSend:
    """A botocore before-send hook that holds the first TransactWriteItems whose
    body names ``marker`` until released: the request has passed the live
    pointer's own check and is delayed on its way to DynamoDB."""

    def __init__(self, marker: str) -> None:
        self.marker = marker.encode()
        self.holding = threading.Event()
        self.release = threading.Event()
        self.armed = False

    def __call__(self, request: Any, **_: Any) -> None:
        body = request.body if isinstance(request.body, bytes) else b""
        if self.armed and self.marker in body:
            self.armed = False
            self.holding.set()
            assert self.release.wait(60), "the held send was never released"


@pytest.fixture
def recorder(container: Container) -> DynamoDBApplicationRecorder:
    found = container.service.recorder
    assert isinstance(found, DynamoDBApplicationRecorder)
    return found


@pytest.fixture
def held(recorder: DynamoDBApplicationRecorder) -> Iterator[HeldSend]:
    recorder.read_tables()  # the live pointer's before-send check comes first
    hook = HeldSend('"held-gathering"')
    events = recorder.client.meta.events
    events.register_last("before-send.dynamodb.TransactWriteItems", hook, unique_id="held")
    yield hook
    hook.release.set()
    events.unregister("before-send.dynamodb.TransactWriteItems", unique_id="held")


def generation_model(container: Container, generation: str) -> DynamoDBReadModel:
    live = container.read_model
    assert isinstance(live, DynamoDBReadModel)
    return DynamoDBReadModel(live.client, live.prefix, create_tables=False, generation=generation)


def register_past_the_switch(container: Container, held: HeldSend) -> list[object]:
    """Registers ``late`` at the held gathering, its request held until a whole
    rebuild (fence, fold, point) has run; returns the registration's outcome."""
    service = container.service
    outcome: list[object] = []
    held.armed = True
    registering = threading.Thread(
        target=lambda: outcome.append(service.register("late", "held-gathering"))
    )
    registering.start()
    assert held.holding.wait(30), "the registration's append was never sent"
    container.rebuilder.begin()
    container.rebuilder.run()
    assert generation_model(container, "blue").pointer.read() == ("green", False)
    held.release.set()
    registering.join(30)
    assert not registering.is_alive()
    return outcome


def setup_held_gathering(container: Container) -> None:
    service = container.service
    service.create_gathering(GatheringSpec("held-gathering", "Held", "2030-04-04", 5))
    service.create_user("late", "Late")
    service.create_user("next", "Next")


def without_repairs(
    container: Container,
    recorder: DynamoDBApplicationRecorder,
    monkeypatch: pytest.MonkeyPatch,
    *,
    by: tuple[str, ...],
) -> None:
    """Turns off the repairs made by ``by``: "indexer", "switch" (its repair
    after pointing), "answer" (the append's own, before it answers). The one
    made by a stream's next append (its version guard) stays."""
    if "indexer" in by:
        core = recorder.indexer().indexer
        assert isinstance(core, RepairingIndexer)
        monkeypatch.setattr(core, "on_indexed", lambda tagged: None)
    if "switch" in by:
        target = container.rebuilder.target
        assert isinstance(target, DynamoDBRebuildTarget)
        monkeypatch.setattr(target, "repair_since", None)
    if "answer" in by:
        assert recorder.repairs is not None
        monkeypatch.setattr(recorder.repairs, "after_append", lambda *args: None)


AFTER_THE_FACT = ("indexer", "switch", "answer")


def test_an_append_held_on_the_wire_past_the_switch_is_repaired_into_the_live_tables(
    container: Container,
    recorder: DynamoDBApplicationRecorder,
    held: HeldSend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """By the indexer: the held commit lands after the switch's own repair, and
    its process's copy of the pointer is not asked (the answer's repair off)."""
    setup_held_gathering(container)
    without_repairs(container, recorder, monkeypatch, by=("answer",))

    outcome = register_past_the_switch(container, held)

    assert [getattr(o, "status", o) for o in outcome] == ["confirmed"]
    # It landed in the replaced tables, which the switch had folded without it...
    assert generation_model(container, "blue").get_registration("late", "held-gathering")
    report = container.check("read-tables")  # waits until the log holds it
    # ...and the live tables hold its rows all the same.
    assert report.ok, report.report()
    live = container.read_model
    assert live.get_registration("late", "held-gathering") is not None
    gathering = live.get_event("held-gathering")
    assert gathering is not None
    assert gathering.registered_count == 1
    assert recorder.repairs is not None
    assert recorder.repairs.repaired_events >= 1


def test_a_gathering_deleted_by_a_held_append_is_gone_from_the_live_tables(
    container: Container,
    recorder: DynamoDBApplicationRecorder,
    held: HeldSend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its stream name keeps the version that deleted it, so the repair knows
    the stream is complete (and nothing can resurrect the row)."""
    setup_held_gathering(container)
    without_repairs(container, recorder, monkeypatch, by=("answer",))
    deleting = threading.Thread(target=lambda: container.service.delete_gathering("held-gathering"))
    held.armed = True
    deleting.start()
    assert held.holding.wait(30), "the deletion's append was never sent"
    container.rebuilder.begin()
    container.rebuilder.run()
    held.release.set()
    deleting.join(30)

    report = container.check("read-tables")

    assert report.ok, report.report()
    assert container.read_model.get_event("held-gathering") is None
    assert not container.read_model.event_exists("held-gathering")


def test_the_streams_next_append_repairs_what_the_held_one_left_behind(
    container: Container,
    recorder: DynamoDBApplicationRecorder,
    held: HeldSend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the indexer's and the switch's repairs off, the next registration at
    the gathering finds the live row behind its stream (its version guard
    fails), repairs it from the event store and then applies its own."""
    setup_held_gathering(container)
    without_repairs(container, recorder, monkeypatch, by=AFTER_THE_FACT)
    register_past_the_switch(container, held)
    live = container.read_model
    assert live.get_registration("late", "held-gathering") is None  # left behind
    recorder.read_tables().pointer.expire()  # as its time to live would: green is live

    assert container.service.register("next", "held-gathering").status == "confirmed"

    assert live.get_registration("late", "held-gathering") is not None
    gathering = live.get_event("held-gathering")
    assert gathering is not None
    assert gathering.registered_count == 2
    report = container.check("read-tables")
    assert report.ok, report.report()


def test_without_any_repair_the_held_append_is_lost_from_the_live_tables(
    container: Container,
    recorder: DynamoDBApplicationRecorder,
    held: HeldSend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control: what the two tests above would see if nothing repaired."""
    setup_held_gathering(container)
    without_repairs(container, recorder, monkeypatch, by=AFTER_THE_FACT)

    register_past_the_switch(container, held)

    report = container.check("read-tables")
    assert not report.ok
    assert {d.table for d in report.differences} >= {"registrations", "gatherings"}


def test_an_append_that_sees_the_switch_when_it_commits_repairs_before_answering(
    container: Container,
    recorder: DynamoDBApplicationRecorder,
    held: HeldSend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its process's copy of the pointer, read again once the held commit
    landed, names green: the append repairs its streams there before it
    answers, so a read right after its response sees it."""
    setup_held_gathering(container)
    without_repairs(container, recorder, monkeypatch, by=("indexer", "switch"))
    pointer = recorder.read_tables().pointer
    monkeypatch.setattr(held, "release", ExpiringRelease(held.release, pointer))

    register_past_the_switch(container, held)

    live = container.read_model
    assert live.get_registration("late", "held-gathering") is not None
    gathering = live.get_event("held-gathering")
    assert gathering is not None
    assert gathering.registered_count == 1


class ExpiringRelease:
    """The held send's release that also lets the pointer's copy expire (as its
    time to live would, had the send been held for longer)."""

    def __init__(self, release: threading.Event, pointer: LivePointer) -> None:
        self.release = release
        self.pointer = pointer

    def wait(self, timeout: float) -> bool:
        released = self.release.wait(timeout)
        self.pointer.expire()
        return released

    def set(self) -> None:
        self.release.set()


def test_drift_check_passes_after_racing_appends_and_switches(container: Container) -> None:
    """A few rounds of registrations and leaves from two threads, each round
    racing a whole rebuild; every DynamoDB write is delayed a little at random
    (so some land after a fence or a switch)."""
    service = container.service
    gatherings = [f"race-{n}" for n in range(3)]
    users = [f"racer-{n}" for n in range(8)]
    for gathering in gatherings:
        service.create_gathering(GatheringSpec(gathering, "Race", "2030-04-04", 3))
    for user in users:
        service.create_user(user, user)
    recorder = service.recorder
    assert isinstance(recorder, DynamoDBApplicationRecorder)
    rng = random.Random(18)

    def delay(**_: Any) -> None:
        time.sleep(rng.uniform(0, 0.03))

    events = recorder.client.meta.events
    events.register_last("before-send.dynamodb.TransactWriteItems", delay, unique_id="delay")
    try:
        for _ in range(3):
            stop = threading.Event()

            def race(seed: int, stop: threading.Event = stop) -> None:
                own = random.Random(seed)
                while not stop.is_set():
                    user, gathering = own.choice(users), own.choice(gatherings)
                    try:
                        if own.random() < 0.6:
                            service.register(user, gathering)
                        else:
                            service.leave(user, gathering)
                    except RegistrationDomainError:
                        pass  # already registered, not registered, a conflict

            racers = [threading.Thread(target=race, args=(seed,)) for seed in range(2)]
            for racer in racers:
                racer.start()
            time.sleep(0.2)
            container.rebuilder.begin()
            container.rebuilder.run()
            time.sleep(0.2)
            stop.set()
            for racer in racers:
                racer.join(30)
            report = container.check("read-tables")
            assert report.ok, report.report()
    finally:
        events.unregister("before-send.dynamodb.TransactWriteItems", unique_id="delay")


@pytest.mark.parametrize("repaired_by", ["the switch", "the indexer, the switch having died"])
def test_a_commit_indexed_while_the_switch_was_fenced_is_repaired_after_it_points(
    container: Container,
    recorder: DynamoDBApplicationRecorder,
    held: HeldSend,
    monkeypatch: pytest.MonkeyPatch,
    repaired_by: str,
) -> None:
    """The held commit lands, and is indexed, after the switch read the head it
    folds up to and before it points: the indexer saw the pointer still at the
    tag's generation (fenced) and left it. The switch records, with the
    pointer's move, that it owes a repair from that head; if it dies before
    making it, the next indexer batch makes it."""
    setup_held_gathering(container)
    target = container.rebuilder.target
    assert isinstance(target, DynamoDBRebuildTarget)
    projector = container.rebuilder.projector
    rest = projector.rest

    def rest_then_let_the_held_commit_land(position: int) -> Any:
        folded = rest(position)
        held.release.set()
        deadline = time.monotonic() + 30
        while not recorder.stream_exists(registration_aggregate_id("held-gathering", "late")):
            assert time.monotonic() < deadline, "the held commit never landed"
            time.sleep(0.01)
        recorder.wait_until_indexed()  # the indexer sees the fence: no repair
        return folded

    monkeypatch.setattr(projector, "rest", rest_then_let_the_held_commit_land)
    if repaired_by != "the switch":
        monkeypatch.setattr(target, "_owed_repair", lambda: None)  # dies after pointing
    without_repairs(container, recorder, monkeypatch, by=("answer",))
    held.armed = True
    registering = threading.Thread(
        target=lambda: container.service.register("late", "held-gathering")
    )
    registering.start()
    assert held.holding.wait(30)
    container.rebuilder.begin()
    container.rebuilder.run()
    registering.join(30)
    pointer = generation_model(container, "blue").pointer
    if repaired_by != "the switch":
        assert pointer.pending_repair() is not None
        assert container.read_model.get_registration("late", "held-gathering") is None
        container.service.create_user("trigger", "Trigger")  # a batch for the indexer

    report = container.check("read-tables")

    assert report.ok, report.report()
    assert pointer.pending_repair() is None
    assert container.read_model.get_registration("late", "held-gathering") is not None


def test_an_append_held_until_the_next_rebuild_refills_its_tables_lands_once(
    container: Container,
    recorder: DynamoDBApplicationRecorder,
    held: HeldSend,
) -> None:
    """Held past one switch (blue -> green) and until the next rebuild has
    refilled blue past the gathering's previous version: the commit lands in
    blue (its rows' version guard holds there), is repaired into green, and
    the refill, finding blue's row ahead of the log, does not apply it twice;
    after the second switch blue is live and exact."""
    setup_held_gathering(container)
    register_past_the_switch_but_hold_on(container, held)
    rebuilder = container.rebuilder
    rebuilder.begin()  # refills blue
    rebuilder.projector.step()
    held.release.set()
    deadline = time.monotonic() + 30
    while not recorder.stream_exists(registration_aggregate_id("held-gathering", "late")):
        assert time.monotonic() < deadline, "the held commit never landed"
        time.sleep(0.01)
    assert generation_model(container, "blue").get_registration("late", "held-gathering")

    rebuilder.run()

    assert generation_model(container, "blue").pointer.read() == ("blue", False)
    report = container.check("read-tables")
    assert report.ok, report.report()
    gathering = container.read_model.get_event("held-gathering")
    assert gathering is not None
    assert gathering.registered_count == 1


def register_past_the_switch_but_hold_on(container: Container, held: HeldSend) -> None:
    """Starts the registration, its send held, and runs a whole rebuild."""
    held.armed = True
    threading.Thread(
        target=lambda: container.service.register("late", "held-gathering"), daemon=True
    ).start()
    assert held.holding.wait(30), "the registration's append was never sent"
    container.rebuilder.begin()
    container.rebuilder.run()
    assert generation_model(container, "blue").pointer.read() == ("green", False)
