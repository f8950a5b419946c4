"""A capacity raise that promotes thousands does not hold the server: it promotes
in bounded steps, other requests are answered between them, and the raise
answers once every promotion is committed, FIFO."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domain.invariants import gathering_violations
from domain.model import Gathering, Registration, WaitlistPage, gathering_aggregate_id
from infra.service import StoredRegistrationService
from tests.api.helpers import json_of
from tests.support import create_event, create_user, register

WAITING = 2_100
PROMOTED = 2_000


class Promotions(logging.Handler):
    """The promotions the server logs, one line per committed step, and every
    registration change in the order it was logged."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.steps: list[list[str]] = []
        self.causes: list[str] = []
        self.changes: list[tuple[str, Any]] = []
        self.first = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        operation = getattr(record, "operation", None)
        if operation is None:
            return
        self.changes.append((operation, record.__dict__.get("userId")))
        if operation == "promote":
            self.steps.append(list(record.__dict__["userIds"]))
            self.causes.append(record.__dict__["cause"])
            self.first.set()


@pytest.fixture
def promotions() -> Iterator[Promotions]:
    handler = Promotions()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def wait_behind(service: StoredRegistrationService, event_id: str, people: int) -> list[str]:
    """``people`` join the waitlist of ``event_id``, written straight to the store
    in a few large saves (as thousands of requests would, only faster)."""
    gathering: Gathering = service.repository.get(gathering_aggregate_id(event_id))
    waiting = [f"waiting-{n:05}" for n in range(people)]
    pending: list[Any] = []
    page: WaitlistPage | None = None
    for user_id in waiting:
        ticket = gathering.next_ticket
        if WaitlistPage.opened_by(ticket):
            page = WaitlistPage(gathering_id=event_id, page=WaitlistPage.number_of(ticket))
        assert page is not None
        gathering.join_waitlist(user_id=user_id, ticket=ticket)
        page.append(ticket=ticket, user_id=user_id)
        pending.extend((page, Registration.admit(event_id, user_id, ticket)))
        if len(pending) >= 1_000:
            service.save(gathering, *{id(a): a for a in pending}.values())
            pending.clear()
    service.save(gathering, *{id(a): a for a in pending}.values())
    return waiting


def test_a_raise_promoting_thousands_lets_other_requests_through_and_answers_when_all_are_seated(
    client: TestClient, promotions: Promotions, store_name: str
) -> None:
    if store_name != "sqlite":
        pytest.skip("one worker deciding on its event loop is the SQLite server")
    service: StoredRegistrationService = client.app.state.container.service  # type: ignore[attr-defined]
    event_id = create_event(client, capacity=1, waitlistEnabled=True)["eventId"]
    register(client, create_user(client), event_id)
    waiting = wait_behind(service, event_id, WAITING)
    elsewhere = create_event(client, capacity=5)["eventId"]
    newcomer = create_user(client)

    # Steps of 20 (the default is larger): a request passes through several
    # turns of the event loop, and each turn may run one step.
    service.promotions_per_step = 20
    with ThreadPoolExecutor(1) as pool:
        raised = pool.submit(client.put, f"/events/{event_id}", json={"capacity": 1 + PROMOTED})
        assert promotions.first.wait(timeout=120), "no promotion step committed"
        # The raise is under way: a registration elsewhere is decided and answered now.
        other = register(client, newcomer, elsewhere)
        steps_before_the_answer = len(promotions.steps)
        answer = raised.result(timeout=300)

    assert other.status_code == 201
    assert steps_before_the_answer < len(promotions.steps), "the raise held the server"
    body = json_of(answer, 200)
    assert (body["registeredCount"], body["waitlistCount"]) == (1 + PROMOTED, WAITING - PROMOTED)
    assert [user for step in promotions.steps for user in step] == waiting[:PROMOTED]
    assert service.waitlist_head(event_id, WAITING) == waiting[PROMOTED:]
    assert gathering_violations(service.get_gathering(event_id)) == []


def one_seated_and_waiting(client: TestClient, people: int) -> tuple[str, list[str]]:
    """An event of one seat, taken, and ``people`` waiting for it (in order)."""
    event_id = create_event(client, capacity=1, waitlistEnabled=True)["eventId"]
    waiting = [create_user(client) for _ in range(people)]
    for user_id in [create_user(client), *waiting]:
        register(client, user_id, event_id)
    return event_id, waiting


def test_each_step_of_a_raise_promotes_at_most_the_step_bound(
    client: TestClient, promotions: Promotions
) -> None:
    service: StoredRegistrationService = client.app.state.container.service  # type: ignore[attr-defined]
    event_id, waiting = one_seated_and_waiting(client, 7)
    service.promotions_per_step = 3

    body = json_of(client.put(f"/events/{event_id}", json={"capacity": 8}), 200)

    assert (body["registeredCount"], body["waitlistCount"]) == (8, 0)
    assert promotions.steps == [waiting[:3], waiting[3:6], waiting[6:]]


def test_a_registration_for_the_event_being_raised_waits_for_the_last_step(
    client: TestClient, promotions: Promotions
) -> None:
    service: StoredRegistrationService = client.app.state.container.service  # type: ignore[attr-defined]
    event_id, waiting = one_seated_and_waiting(client, 30)
    newcomer = create_user(client)
    service.promotions_per_step = 1

    with ThreadPoolExecutor(1) as pool:
        raised = pool.submit(client.put, f"/events/{event_id}", json={"capacity": 21})
        assert promotions.first.wait(timeout=60), "no promotion step committed"
        late = register(client, newcomer, event_id)
        answer = raised.result(timeout=120)

    body = json_of(late, 201)
    assert (body["status"], body["waitlistPosition"]) == ("waitlist", 11)
    assert json_of(answer, 200)["registeredCount"] == 21
    # Every seat went to the raise, in FIFO order, before the newcomer was decided.
    assert [user for step in promotions.steps for user in step] == waiting[:20]
    assert set(promotions.causes) == {"capacity raised"}
    assert promotions.changes[-1] == ("register", newcomer)
