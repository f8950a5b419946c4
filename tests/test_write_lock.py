"""When another process holds SQLite's write lock, a batch of commands waits for
it once, off the event loop: reads go on being answered meanwhile, and a batch
that cannot get the lock is answered with one 503, not one wait per command."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, NamedTuple

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from infra.service import StoredRegistrationService
from infra.settings import Settings
from tests.support import create_event, create_user, register

# The lock is SQLite's; DynamoDB has none to hold.
pytestmark = pytest.mark.sqlite_pass


class StoreCalls:
    """Records each batch the event loop decides, and each time the store is
    asked for the write lock with a wait (``started``: set at the first)."""

    def __init__(self, service: StoredRegistrationService, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches_on_loop = 0
        self.lock_waits = 0
        self.started = threading.Event()
        decide_batch = service.decide_batch
        insert_events = service.recorder.insert_events

        def counted_batch(jobs: list[Any]) -> list[Any]:
            if _on_event_loop():
                self.batches_on_loop += 1
            return decide_batch(jobs)

        def counted_insert(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("wait_for_lock", True):
                self.lock_waits += 1
                self.started.set()
            return insert_events(*args, **kwargs)

        monkeypatch.setattr(service, "decide_batch", counted_batch)
        monkeypatch.setattr(service.recorder, "insert_events", counted_insert)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@contextmanager
def app_client(settings: Settings, lock_timeout: int) -> Iterator[TestClient]:
    """The real application, on one worker: commands decided on its event loop."""
    changed = settings.model_copy(update={"sqlite_lock_timeout": lock_timeout})
    with TestClient(create_app(changed)) as client:
        assert changed.decide_on_event_loop
        assert changed.workers == 1
        yield client


@contextmanager
def write_lock_held(client: TestClient) -> Iterator[None]:
    """Another process's write transaction on the service's database."""
    container = client.app.state.container  # type: ignore[attr-defined]
    outsider = sqlite3.connect(container.settings.event_store_path, isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        outsider.rollback()
        outsider.close()


def register_all(
    client: TestClient, users: list[str], event_id: str
) -> tuple[list[threading.Thread], list[httpx.Response]]:
    """Each user's registration sent at once from its own thread; the
    responses are appended to the list as they arrive."""
    answers: list[httpx.Response] = []

    def send(user_id: str) -> None:
        answers.append(register(client, user_id, event_id))

    threads = [threading.Thread(target=send, args=(user_id,)) for user_id in users]
    for thread in threads:
        thread.start()
    return threads, answers


class Scene(NamedTuple):
    """The application, an event with room for everyone, its users, and the
    store's calls recorded from then on."""

    client: TestClient
    event_id: str
    users: list[str]
    calls: StoreCalls


@pytest.fixture
def scene(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], Scene]]:
    """Starts the scene, the application waiting at most ``lock_timeout`` seconds for
    the write lock; the application stops when the test ends."""
    with ExitStack() as running:

        def start(lock_timeout: int) -> Scene:
            client = running.enter_context(app_client(settings, lock_timeout))
            event_id = create_event(client, capacity=10)["eventId"]
            users = [create_user(client) for _ in range(6)]
            service = client.app.state.container.service  # type: ignore[attr-defined]
            return Scene(client, event_id, users, StoreCalls(service, monkeypatch))

        yield start


def test_a_read_is_answered_while_a_batch_waits_for_the_write_lock(
    scene: Callable[[int], Scene],
) -> None:
    client, event_id, users, calls = scene(20)

    with write_lock_held(client):
        threads, answers = register_all(client, users, event_id)
        assert calls.started.wait(timeout=30)
        read = client.get(f"/events/{event_id}")
        answered_before_the_read = list(answers)
    for thread in threads:
        thread.join()

    assert read.status_code == 200, read.text
    assert answered_before_the_read == []  # they still waited for the lock
    assert sorted(answer.status_code for answer in answers) == [201] * len(users)


def test_a_batch_that_cannot_get_the_write_lock_asks_for_it_once_and_answers_503(
    scene: Callable[[int], Scene],
) -> None:
    client, event_id, users, calls = scene(1)

    with write_lock_held(client):
        threads, refused = register_all(client, users, event_id)
        for thread in threads:
            thread.join()
    batches, lock_waits = calls.batches_on_loop, calls.lock_waits

    # Released: the same commands go through, each once.
    again = [register(client, user_id, event_id) for user_id in users]
    event = client.get(f"/events/{event_id}").json()

    assert [answer.status_code for answer in refused] == [503] * len(users)
    for answer in refused:
        assert answer.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert answer.headers["Retry-After"] == "1"
    assert 1 <= batches < len(users)
    assert lock_waits == batches  # one wait for the lock per batch, none per command
    assert [answer.status_code for answer in again] == [201] * len(users)
    assert event["registeredCount"] == len(users)
