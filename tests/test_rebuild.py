"""The read tables are a fold of the log: rebuilt from it, they equal the live ones."""

from __future__ import annotations

from typing import Any

import pytest

from api.cli import _rows
from domain.application import GatheringChanges, GatheringSpec
from infra.wiring import Container
from projections.catch_up import CatchUpProjector


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
    live = _rows(container.read_model)

    container.read_model.reset()
    container.projector.batch_size = 7
    container.projector.catch_up()

    assert _rows(container.read_model) == live
    health = container.read_model.position()
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
    assert service.get_gathering("busy").confirmed_count == 60
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

    def wait_until_indexed(self, timeout: float = 60.0) -> None:
        self._visible = self._recorder.max_notification_id() or 0


def test_a_rebuild_also_folds_what_reaches_the_log_only_after_its_first_read_of_the_head(
    container: Container,
) -> None:
    service = container.service
    _gathering(container, "late", 2)
    first_commit_end = service.recorder.max_notification_id() or 0
    for n in range(3):
        service.create_user(f"late{n}", "Late")
        service.register(f"late{n}", "late")
    live = _rows(container.read_model)

    container.read_model.reset()
    projector = CatchUpProjector(
        _LateLog(service.recorder, first_commit_end),  # type: ignore[arg-type]
        service.mapper,
        container.read_model,
    )
    projector.catch_up()

    assert _rows(container.read_model) == live


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
