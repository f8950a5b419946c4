"""Decision state stays small: an event with 100,000 confirmed and 10,000 waitlisted
registrations is decided on from a snapshot and a few events, never 100,000."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eventsourcing.persistence import AggregateRecorder

from domain.application import RegistrationService
from domain.model import (
    WAITLIST_PAGE_SIZE,
    Gathering,
    GatheringDetails,
    Registration,
    RegistrationStatus,
    User,
    WaitlistPage,
    waitlist_page_aggregate_id,
)
from infra.settings import Settings
from infra.wiring import Container, build_container
from tests.support import fresh_store_settings

# One seeding for the whole module: its tests run on one xdist worker (--dist loadgroup).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("scale")]

# DynamoDB Local takes about 0.1-0.3 s per transaction of 28 events, so it
# decides on a 3,300-event history by default (the same shape, far past the
# snapshot interval: a snapshot and a tail; what a decision reads does not grow
# with the history). SCALE_FULL=1 seeds the full size on DynamoDB too.
FULL = {"confirmed": 100_000, "waitlisted": 10_000}
SIZES = {
    "sqlite": FULL,
    "dynamodb": FULL
    if os.environ.get("SCALE_FULL") == "1"
    else {"confirmed": 3_000, "waitlisted": 300},
}


@dataclass
class Huge:
    """The seeded service, and how many people its huge event holds."""

    container: Container
    confirmed: int
    waitlisted: int


# Events per save: a DynamoDB transaction holds at most 100 items (each event
# takes two, plus the sequence counter and the read-table rows written inline),
# SQLite has no such limit.
BATCH = {"sqlite": 2_000, "dynamodb": 28}


def _seed(service: RegistrationService, batch: int, confirmed: int, waitlisted: int) -> None:
    """Writes the history of a huge event directly, in large atomic saves.

    The gathering's stream gets every one of its 110,000 events. Registration
    streams are written for the people the test acts on (the first confirmed
    ones and every waitlisted person, whom promotion reads); the other
    confirmed people's registration streams are separate streams that no
    decision about this event reads, so they are left out to keep the test fast.
    """
    gathering = Gathering.create(
        "huge", confirmed, GatheringDetails(title="Huge", date="2025-06-01", waitlist_enabled=True)
    )
    pending: list[Any] = []
    # Snapshots are taken once at the end rather than every 50 events while
    # seeding (which would double the writes); the state decided on is the same.
    service.snapshotting_intervals = {}  # type: ignore[misc]

    def flush(force: bool = False) -> None:
        aggregates = {id(a): a for a in (gathering, *pending)}.values()
        if force or sum(len(a.pending_events) for a in aggregates) >= batch:
            service.save(*aggregates)
            pending.clear()

    for n in range(confirmed):
        gathering.take_seat(user_id=f"seated-{n}")
        if n < 10:
            user = User(user_id=f"seated-{n}", name="Seated")
            registration = Registration(gathering_id="huge", user_id=f"seated-{n}")
            registration.confirm()
            pending.extend((user, registration))
        flush()
    page: WaitlistPage | None = None
    for n in range(waitlisted):
        ticket = gathering.next_ticket
        if ticket % WAITLIST_PAGE_SIZE == 0:
            page = WaitlistPage(gathering_id="huge", page=ticket // WAITLIST_PAGE_SIZE)
        assert page is not None
        gathering.join_waitlist(user_id=f"waiting-{n}", ticket=ticket)
        page.append(ticket=ticket, user_id=f"waiting-{n}")
        registration = Registration(gathering_id="huge", user_id=f"waiting-{n}")
        registration.waitlist(ticket=ticket)
        pending.extend((page, registration))
        flush()
    flush(force=True)
    del service.snapshotting_intervals
    service.take_snapshot(gathering.id)
    for number in range(waitlisted // WAITLIST_PAGE_SIZE):
        service.take_snapshot(waitlist_page_aggregate_id("huge", number))


class _CountingRows:
    """Counts the stored events and snapshots a command reads."""

    def __init__(self, *recorders: AggregateRecorder) -> None:
        self.rows = 0
        self._recorders = recorders
        self._originals = [r.select_events for r in recorders]

    def __enter__(self) -> _CountingRows:
        for recorder, original in zip(self._recorders, self._originals, strict=True):

            def counting(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                found = _original(*args, **kwargs)
                self.rows += len(found)
                return found

            recorder.select_events = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        for recorder, original in zip(self._recorders, self._originals, strict=True):
            recorder.select_events = original  # type: ignore[method-assign]


@pytest.fixture
def huge(
    tmp_path_factory: pytest.TempPathFactory, store_name: str, endpoint: str | None
) -> Iterator[Huge]:
    settings = Settings(
        **fresh_store_settings(store_name, endpoint),  # type: ignore[arg-type]
        data_dir=tmp_path_factory.mktemp("huge") / "data",
        environment="test",
    )
    seeding = build_container(settings)
    sizes = SIZES[store_name]
    _seed(seeding.service, BATCH[store_name], sizes["confirmed"], sizes["waitlisted"])
    seeding.service.create_user("newcomer", "Newcomer")
    seeding.close()
    # A fresh service, as after a restart: nothing cached, so what a decision
    # reads comes from the store (a snapshot and the events after it).
    container = build_container(settings)
    try:
        yield Huge(container, sizes["confirmed"], sizes["waitlisted"])
    finally:
        container.close()


def _reads(container: Container) -> _CountingRows:
    service = container.service
    assert service.snapshots is not None
    return _CountingRows(service.events.recorder, service.snapshots.recorder)


def test_a_huge_event_is_decided_on_from_a_snapshot_and_a_few_events(huge: Huge) -> None:
    """One test, so that the history is seeded once (xdist may spread a module's tests)."""
    the_gatherings_decision_state_and_snapshot_stay_small(huge)
    a_registration_reads_a_snapshot_and_a_few_events(huge)
    a_leave_promotes_the_head_from_a_few_events(huge)


def a_registration_reads_a_snapshot_and_a_few_events(huge: Huge) -> None:
    with _reads(huge.container) as reads:
        outcome = huge.container.service.register("newcomer", "huge")

    assert outcome.status == RegistrationStatus.WAITLIST
    assert outcome.waitlist_position == huge.waitlisted + 1
    print(f"registration decision read {reads.rows} stored rows")
    assert reads.rows < 60, f"the decision read {reads.rows} stored events"


def a_leave_promotes_the_head_from_a_few_events(huge: Huge) -> None:
    with _reads(huge.container) as reads:
        outcome = huge.container.service.leave("seated-3", "huge")

    assert outcome.promoted == ("waiting-0",)
    print(f"leave-with-promotion decision read {reads.rows} stored rows")
    assert reads.rows < 160, f"the decision read {reads.rows} stored events"


def the_gatherings_decision_state_and_snapshot_stay_small(huge: Huge) -> None:
    service = huge.container.service
    gathering = service.get_gathering("huge")
    assert gathering.registered_count == huge.confirmed
    assert gathering.version > huge.confirmed + huge.waitlisted
    state_bytes = len(json.dumps(vars(gathering), default=str))
    assert state_bytes < 1_000
    snapshots = service.snapshots
    assert snapshots is not None
    (latest,) = snapshots.recorder.select_events(gathering.id, desc=True, limit=1)
    assert len(latest.state) < 2_000
    assert gathering.version - latest.originator_version < 50
    last_page = waitlist_page_aggregate_id("huge", huge.waitlisted // WAITLIST_PAGE_SIZE - 1)
    page: WaitlistPage = service.repository.get(last_page)
    assert len(json.dumps(vars(page), default=str)) < 4_000
