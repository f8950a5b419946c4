"""The read tables are a fold of the log: rebuilt from it, they equal the live ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from domain.application import GatheringChanges, GatheringSpec
from domain.errors import RebuildInProgressError
from infra.settings import Settings
from infra.wiring import Container, build_container
from projections.catch_up import CatchUpProjector, wait_until_logged
from projections.rebuild import Rebuilder


def _gathering(container: Container, gathering_id: str, capacity: int) -> None:
    container.service.create_gathering(
        GatheringSpec(
            gathering_id=gathering_id,
            title="Rebuilt",
            date="2030-01-01",
            capacity=capacity,
            waitlist_enabled=True,
        )
    )


def test_a_rebuild_after_a_hundred_capacity_only_updates_equals_the_live_tables(
    container: Container,
) -> None:
    """Catch-up cuts batches where commits end (recorded with the events), so a
    long run of single-event commands never builds one oversized transaction."""
    service = container.service
    _gathering(container, "resized", 5)
    for n in range(6):
        service.create_user(f"r{n}", "Resized")
        service.register(f"r{n}", "resized")
    for step in range(120):
        service.revise_gathering("resized", GatheringChanges(capacity=6 + step % 7))
    live = container.read_model.dump()

    container.read_model.reset()
    container.projector.batch_size = 7
    container.projector.catch_up()

    assert container.read_model.dump() == live
    health = container.read_model.log_position()
    assert health is None or health == service.recorder.max_notification_id()


def test_a_snapshot_that_fails_to_save_never_fails_the_command(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = container.service
    assert service.snapshots is not None

    def broken(*args: Any, **kwargs: Any) -> None:
        msg = "the snapshot store is down"
        raise OSError(msg)

    monkeypatch.setattr(service.snapshots.recorder, "insert_events", broken)
    _gathering(container, "busy", 100)
    for n in range(60):  # the gathering's version passes 50: a snapshot is due
        service.create_user(f"b{n}", "Busy")
        outcome = service.register(f"b{n}", "busy")
        assert outcome.status == "confirmed"
    assert service.get_gathering("busy").registered_count == 60
    row = container.read_model.get_event("busy")
    assert row is not None
    assert row.registered_count == 60


class _LateLog:
    """The container's log, as one indexed after the appends shows it: the
    newest commits appear only once a reader waits for them."""

    def __init__(self, recorder: Any, visible: int) -> None:
        self._recorder = recorder
        self._visible = visible

    def __getattr__(self, name: str) -> Any:
        return getattr(self._recorder, name)

    def max_notification_id(self) -> int | None:
        head = self._recorder.max_notification_id() or 0
        return min(head, self._visible) or None

    def select_notifications(
        self, start: int, limit: int, stop: int | None = None, **kw: Any
    ) -> Any:
        stop = self._visible if stop is None else min(stop, self._visible)
        return self._recorder.select_notifications(start, limit, stop, **kw)

    def wait_until_indexed(self, timeout: float = 60.0, *, every_process: bool = False) -> None:
        self._visible = self._recorder.max_notification_id() or 0


def test_a_rebuild_also_folds_what_reaches_the_log_only_after_its_first_read_of_the_head(
    container: Container,
) -> None:
    service = container.service
    _gathering(container, "late", 2)
    wait_until_logged(service.recorder)  # DynamoDB: the indexer placed it
    first_commit_end = service.recorder.max_notification_id() or 0
    for n in range(3):
        service.create_user(f"late{n}", "Late")
        service.register(f"late{n}", "late")
    wait_until_logged(service.recorder)
    live = container.read_model.dump()

    container.read_model.reset()
    projector = CatchUpProjector(
        _LateLog(service.recorder, first_commit_end),  # type: ignore[arg-type]
        service.mapper,
        container.read_model,
    )
    projector.catch_up()

    assert container.read_model.dump() == live


def test_a_rebuild_keeps_every_event_a_user_ever_registered_for(container: Container) -> None:
    """Which events a user registered for (their history's index) is a fold of the
    log like the rest: kept when they leave, rebuilt from the log."""
    service = container.service
    for gathering_id in ("kept", "left"):
        _gathering(container, gathering_id, 2)
    service.create_user("una", "Una")
    service.register("una", "kept")
    service.register("una", "left")
    service.leave("una", "left")
    assert container.read_model.registered_event_ids("una") == ["kept", "left"]

    container.read_model.reset()
    assert container.read_model.registered_event_ids("una") == []
    container.projector.catch_up()

    assert container.read_model.registered_event_ids("una") == ["kept", "left"]
    entries, _ = container.history.of_user("una", 50, None)
    assert [e["type"] for e in entries].count("RegistrationCreated") == 2


# -- zero-downtime rebuilds: new tables filled from the log, then switched in --


@pytest.fixture
def rebuilding(settings: Settings) -> Iterator[Container]:
    """A container whose rebuilds fold a few events per batch."""
    quick = settings.model_copy(update={"rebuild_batch_size": 5})
    built = build_container(quick)
    built.start()
    try:
        yield built
    finally:
        built.close()


def some_history(container: Container, gathering_id: str = "rebuilt", people: int = 8) -> None:
    service = container.service
    _gathering(container, gathering_id, 3)
    for n in range(people):
        service.create_user(f"{gathering_id}-{n}", f"Person {n}")
        service.register(f"{gathering_id}-{n}", gathering_id)
    service.leave(f"{gathering_id}-0", gathering_id)  # promotes the first in line
    service.revise_gathering(gathering_id, GatheringChanges(title="Rebuilt, revised"))
    wait_until_logged(service.recorder)


def test_a_rebuild_switches_in_tables_equal_to_the_live_ones(rebuilding: Container) -> None:
    some_history(rebuilding)
    live = rebuilding.read_model.dump()

    head = rebuilding.rebuilder.begin() or rebuilding.rebuilder.run()

    assert head == rebuilding.service.recorder.max_notification_id()
    assert rebuilding.read_model.dump() == live
    assert rebuilding.rebuilder.state() is None
    assert rebuilding.projection("read-tables").state == "live"
    assert rebuilding.check("read-tables").ok


def test_writes_during_a_rebuild_are_served_at_once_and_kept_by_the_switch(
    rebuilding: Container,
) -> None:
    service = rebuilding.service
    some_history(rebuilding)
    rebuilder = rebuilding.rebuilder
    assert rebuilder.begin() == 0
    rebuilder.projector.step()
    status = rebuilding.projection("read-tables")
    assert status.state == "rebuilding"
    assert status.progress is not None
    assert 0 < status.progress < 1

    service.create_user("late", "Late")
    service.register("late", "rebuilt")
    service.create_gathering(
        GatheringSpec("during", "During", "2030-02-02", 1, waitlist_enabled=False)
    )
    registration = rebuilding.read_model.get_registration("late", "rebuilt")
    assert registration is not None
    assert registration.status == "waitlist"
    assert rebuilding.read_model.event_exists("during")
    live = rebuilding.read_model.dump()

    rebuilder.run()

    assert rebuilding.read_model.dump() == live
    service.register("late", "during")  # after the switch, appends fold into the new tables
    assert rebuilding.read_model.get_registration("late", "during") is not None
    assert rebuilding.check("read-tables").ok


def test_a_second_rebuild_while_one_runs_is_refused(rebuilding: Container) -> None:
    some_history(rebuilding)
    rebuilding.rebuilder.begin()
    other = Rebuilder(
        rebuilding.service.recorder, rebuilding.service.mapper, rebuilding.rebuilder.target
    )
    with pytest.raises(RebuildInProgressError):
        other.begin()
    rebuilding.rebuilder.run()
    assert other.begin() == 0  # once it is over, a new one may start
    other.run()


def test_a_rebuild_whose_holder_stopped_writing_is_taken_over_where_it_stopped(
    rebuilding: Container,
) -> None:
    some_history(rebuilding)
    live = rebuilding.read_model.dump()
    first = rebuilding.rebuilder
    first.begin()
    first.projector.step()
    first.projector.step()
    reached = first.projector.read_model.log_position()
    assert reached is not None
    assert reached > 0

    # Its lease lapsed (its process hung or died elsewhere): another takes over.
    second = Rebuilder(
        rebuilding.service.recorder,
        rebuilding.service.mapper,
        first.target,
        lease_seconds=0.0,
    )
    assert second.begin() == reached
    with pytest.raises(RebuildInProgressError):
        first.projector.step()  # the first holder may not write any more
    second.run()

    assert rebuilding.read_model.dump() == live


def test_a_rebuild_that_fails_shows_failed_and_resumes_when_asked_again(
    rebuilding: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    some_history(rebuilding)
    live = rebuilding.read_model.dump()
    rebuilder = rebuilding.rebuilder
    rebuilder.begin()
    rebuilder.projector.step()

    def broken(*args: Any, **kwargs: Any) -> None:
        msg = "the log cannot be read"
        raise OSError(msg)

    with monkeypatch.context() as patch:
        patch.setattr(rebuilder.projector, "step", broken)
        with pytest.raises(OSError, match="cannot be read"):
            rebuilder.run()
    status = rebuilding.projection("read-tables")
    assert (status.state, status.error) == ("failed", "OSError: the log cannot be read")
    assert rebuilding.read_model.dump() == live  # the live tables kept serving

    assert rebuilder.begin() > 0
    rebuilder.run()
    assert rebuilding.read_model.dump() == live
    assert rebuilding.projection("read-tables").state == "live"


def test_two_rebuilds_in_a_row_each_switch_in_a_clean_fold(rebuilding: Container) -> None:
    """The second rebuild fills the tables the first one replaced (SQLite: fresh
    tables and indexes; DynamoDB: the other generation, emptied first)."""
    some_history(rebuilding)
    for round_ in range(2):
        rebuilding.service.create_user(f"round-{round_}", "Round")
        live = rebuilding.read_model.dump()
        rebuilding.rebuilder.begin()
        rebuilding.rebuilder.run()
        assert rebuilding.read_model.dump() == live
    assert rebuilding.check("read-tables").ok
