"""Stored topics and payloads are a contract: history recorded by version 1 still loads.

``stored_events_v1.json`` holds a history written by the first release (every
domain event type, and snapshots of each snapshotted aggregate). It must
never be edited: a rename needs ``register_topic``, a payload change an
upcaster, and then these tests prove old history still works.
``stored_events_v2.json`` holds what version 2 changed: ``Registration.Created``
with the admission in it (``class_version`` 2).
``stored_events_v3.json`` holds what version 3 changed: every event stored with
its metadata and chain digest (``__meta__``), and the registration and waitlist
events that name their user (``class_version`` 2 of ``Registration.Confirmed``,
``Waitlisted``, ``Promoted``, ``Withdrawn`` and ``WaitlistPage.Removed``).
``stored_events_v4.json`` holds what version 4 changed: a user's name stored
sealed under their key (``pd1:...``), and ``User.Erased``; the store it is
inserted into has no key for it, so it reads as erased. Version 3 and older
histories hold names as given: ``test_legacy_names.py`` seals them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.application import Repository
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from domain import model
from domain.errors import GatheringNotFoundError
from domain.model import RegistrationStatus, registration_aggregate_id
from infra.wiring import Container
from projections.audit import FeedFilter
from projections.catch_up import wait_until_logged

RECORDED = json.loads((Path(__file__).parent / "stored_events_v1.json").read_text())
RECORDED_V2 = json.loads((Path(__file__).parent / "stored_events_v2.json").read_text())
RECORDED_V3 = json.loads((Path(__file__).parent / "stored_events_v3.json").read_text())
RECORDED_V4 = json.loads((Path(__file__).parent / "stored_events_v4.json").read_text())


def _stored(record: dict[str, Any]) -> StoredEvent:
    return StoredEvent(
        originator_id=UUID(record["originator_id"]),
        originator_version=record["originator_version"],
        topic=record["topic"],
        state=json.dumps(record["state"]).encode(),
    )


def _domain_event_classes() -> set[type[Aggregate.Event]]:
    classes = set()
    for aggregate in (model.User, model.Gathering, model.Registration, model.WaitlistPage):
        for value in vars(aggregate).values():
            # Each aggregate also gets a base class named Event, never stored itself.
            if (
                isinstance(value, type)
                and issubclass(value, Aggregate.Event)
                and value.__name__ != "Event"
            ):
                classes.add(value)
    return classes


@pytest.fixture
def recorded(container: Container) -> Container:
    records = RECORDED["notifications"]
    # In slices: a DynamoDB transaction holds at most 100 items (49 events).
    for start in range(0, len(records), 40):
        container.service.recorder.insert_events([_stored(r) for r in records[start : start + 40]])
    return container


def test_every_domain_event_type_appears_in_the_recorded_history() -> None:
    recorded_topics = {
        r["topic"] for history in (RECORDED, RECORDED_V4) for r in history["notifications"]
    }
    missing = {get_topic(cls) for cls in _domain_event_classes()} - recorded_topics
    assert not missing, f"record an example of {sorted(missing)} before shipping it"


def test_every_recorded_event_decodes_to_its_class_with_its_payload(container: Container) -> None:
    mapper = container.service.mapper
    for record in RECORDED["notifications"]:
        domain_event = mapper.to_domain_event(_stored(record))
        assert get_topic(type(domain_event)) == record["topic"]
        for name, value in record["state"].items():
            if name in {"timestamp", "originator_topic"}:
                continue
            assert getattr(domain_event, name) == value, (record["topic"], name)


def test_recorded_history_still_rebuilds_the_aggregates(recorded: Container) -> None:
    service = recorded.service
    assert service.get_user("alice").name == "Alice"
    kept = service.get_gathering("e2")
    assert (kept.capacity, kept.registered_count, kept.waitlist_count) == (2, 2, 1)
    assert service.waitlist_head("e2", 10) == ["dave"]
    with pytest.raises(GatheringNotFoundError):
        service.get_gathering("e1")


def test_recorded_history_still_projects_into_the_read_tables(recorded: Container) -> None:
    # Raw inserts bypass the inline fold: a rebuild folds the whole log.
    recorded.read_model.reset()
    recorded.projector.catch_up()
    read_model = recorded.read_model
    assert read_model.get_event("e1") is None
    event = read_model.get_event("e2")
    assert event is not None
    assert (event.registered_count, event.waitlist_count, event.waitlist) == (2, 1, ("dave",))
    listed = read_model.list_event_registrations("e2", 50, None).items
    assert [(r.user_id, r.status) for r in listed] == [
        ("bob", "confirmed"),
        ("carol", "confirmed"),
        ("dave", "waitlist"),
    ]
    assert read_model.list_user_registrations("alice", 50, None).items == []


def test_recorded_snapshots_still_load_and_agree_with_the_events(recorded: Container) -> None:
    service = recorded.service
    assert service.snapshots is not None
    # Fresh repositories, without the service's aggregate cache, so that the
    # second one really starts from the recorded snapshot.
    from_events: Repository[UUID] = Repository(event_store=service.events)
    from_snapshots: Repository[UUID] = Repository(
        event_store=service.events, snapshot_store=service.snapshots
    )
    service.snapshots.recorder.insert_events([_stored(r) for r in RECORDED["snapshots"]])
    for record in RECORDED["snapshots"]:
        aggregate_id = UUID(record["originator_id"])
        assert service.snapshots.recorder.select_events(aggregate_id)
        expected: Aggregate = from_events.get(aggregate_id)
        loaded: Aggregate = from_snapshots.get(aggregate_id)
        assert vars(loaded) == vars(expected)


def test_a_version_1_registration_created_reads_as_not_yet_admitted(container: Container) -> None:
    mapper = container.service.mapper
    created = [
        mapper.to_domain_event(_stored(r))
        for r in RECORDED["notifications"]
        if r["topic"] == get_topic(model.Registration.Created)
    ]
    assert created
    assert all(isinstance(e, model.Registration.Created) for e in created)
    assert {(vars(e)["admitted"], vars(e)["ticket"]) for e in created} == {(False, None)}


def test_recorded_version_1_registrations_still_hold_their_seat_or_ticket(
    recorded: Container,
) -> None:
    def registration(user_id: str) -> model.Registration:
        aggregate: Aggregate = recorded.service.repository.get(
            registration_aggregate_id("e2", user_id)
        )
        assert isinstance(aggregate, model.Registration)
        return aggregate

    assert registration("bob").status == RegistrationStatus.CONFIRMED
    dave = registration("dave")
    assert (dave.status, dave.ticket) == (RegistrationStatus.WAITLIST, 1)


def test_a_version_2_registration_created_holds_the_admission(container: Container) -> None:
    service = container.service
    service.recorder.insert_events([_stored(r) for r in RECORDED_V2["notifications"]])
    seated: model.Registration = service.repository.get(registration_aggregate_id("e3", "erin"))
    waiting: model.Registration = service.repository.get(registration_aggregate_id("e3", "frank"))
    assert (seated.status, seated.ticket, seated.version) == (RegistrationStatus.CONFIRMED, None, 1)
    assert (waiting.status, waiting.ticket, waiting.version) == (RegistrationStatus.WAITLIST, 0, 1)


def test_a_first_registration_is_recorded_as_one_event_of_version_2(container: Container) -> None:
    stored = container.service.mapper.to_stored_event(
        model.Registration.admit("e3", "erin", None).collect_events()[0]
    )
    state = json.loads(stored.state)
    assert (stored.topic, state["class_version"]) == (get_topic(model.Registration.Created), 2)
    assert {k: state[k] for k in ("admitted", "ticket")} == {"admitted": True, "ticket": None}


NAMING_THEIR_USER = {
    model.Registration.Confirmed,
    model.Registration.Waitlisted,
    model.Registration.Promoted,
    model.Registration.Withdrawn,
    model.WaitlistPage.Removed,
}


def test_version_3_events_name_their_user_and_keep_their_metadata_out_of_the_domain(
    container: Container,
) -> None:
    mapper = container.service.mapper
    seen = set()
    for record in RECORDED_V3["notifications"]:
        domain_event = mapper.to_domain_event(_stored(record))
        assert "__meta__" not in vars(domain_event)
        if type(domain_event) in NAMING_THEIR_USER:
            seen.add(type(domain_event))
            assert record["state"]["class_version"] == 2
            assert vars(domain_event)["user_id"] == record["state"]["user_id"]
            assert vars(domain_event)["user_id"] in {"gina", "hank", "ivy"}
    assert seen == NAMING_THEIR_USER


def test_version_1_events_that_named_nobody_read_with_no_user(container: Container) -> None:
    mapper = container.service.mapper
    old = [
        mapper.to_domain_event(_stored(r))
        for r in RECORDED["notifications"]
        if r["topic"] in {get_topic(cls) for cls in NAMING_THEIR_USER}
    ]
    assert old
    assert {vars(e)["user_id"] for e in old} == {None}


def test_a_version_3_history_rebuilds_its_aggregates_and_verifies(container: Container) -> None:
    service = container.service
    records = RECORDED_V3["notifications"]
    for start in range(0, len(records), 40):
        service.recorder.insert_events([_stored(r) for r in records[start : start + 40]])
    gathering = service.get_gathering("e4")
    assert (gathering.capacity, gathering.registered_count, gathering.waitlist_count) == (3, 3, 0)
    ivy: model.Registration = service.repository.get(registration_aggregate_id("e4", "ivy"))
    assert ivy.status == RegistrationStatus.CONFIRMED
    wait_until_logged(service.recorder)
    report = container.audit.verify().report()
    assert report == report | {"ok": True, "checked": len(records), "unsealed": 0}


def test_a_version_3_history_carries_who_caused_each_event() -> None:
    metas = [r["state"]["__meta__"] for r in RECORDED_V3["notifications"]]
    assert {(m["actor"], m["requestId"]) for m in metas} == {("fixture", "fixture-request")}
    assert all(len(m["hash"]) == 64 for m in metas)


def test_the_feed_filtered_by_event_keeps_version_1_registration_events_that_name_no_user(
    recorded: Container,
) -> None:
    """A version 1 registration event names neither its user nor its event: the
    filter finds its event from its registration's creation, as the feed serves it."""
    wait_until_logged(recorded.service.recorder)
    kept: list[dict[str, Any]] = []
    following: int | None = 0
    while following is not None:  # first, before any unfiltered page taught the feed
        entries, following = recorded.audit.page(following, 1, FeedFilter(event_id="e2"))
        kept += entries
    whole, _ = recorded.audit.page(0, 1000)
    e2 = str(model.gathering_aggregate_id("e2"))
    expected = [e for e in whole if e["stream"] == e2 or e["data"].get("eventId") == "e2"]
    assert [
        e for e in expected if e["type"] == "RegistrationConfirmed" and "userId" not in e["data"]
    ]
    assert kept == expected


def test_a_version_4_history_holds_a_sealed_name_reads_as_erased_and_verifies(
    container: Container,
) -> None:
    service = container.service
    records = RECORDED_V4["notifications"]
    service.recorder.insert_events([_stored(r) for r in records])
    assert records[0]["state"]["name"].startswith("pd1:")
    ursula = service.get_user("ursula")
    assert (ursula.name, ursula.erased) == (None, True)
    erasure = service.mapper.to_domain_event(_stored(records[1]))
    assert isinstance(erasure, model.User.Erased)
    assert (erasure.user_id, erasure.erased_by, erasure.request_id) == (
        "ursula",
        "fixture",
        "fixture-request",
    )
    wait_until_logged(service.recorder)
    entries = [e for e in container.audit.entries() if e["stream"] == records[0]["originator_id"]]
    assert [(e["type"], e["data"].get("name")) for e in entries] == [
        ("UserCreated", None),
        ("UserErased", None),
    ]
    assert entries[0]["sealed"] == {"name": records[0]["state"]["name"]}
    report = container.audit.verify().report()
    assert report == report | {"ok": True, "checked": len(records), "unsealed": 0}
