"""On SQLite with one worker, commands are decided and group-committed on the
event loop that serves the requests (``LoopBatcher``): the commands submitted
during one turn of the loop are one batch, decided in the next turn, with no
writer thread to hand the GIL to and fro."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from api.deps import perform
from domain.application import RegistrationService
from domain.batching import CommandBatcher, LoopBatcher
from domain.errors import ConcurrentModificationError, DuplicateUserError
from infra.settings import Settings
from infra.wiring import Container, build_container

T = TypeVar("T")

# DynamoDB's network calls are never made on the event loop.
pytestmark = pytest.mark.sqlite_pass


@pytest.fixture
def on_loop(settings: Settings) -> Iterator[Callable[..., Any]]:
    """Runs a scenario on a loop whose container was started on it, as the server's is."""
    containers: list[Container] = []

    def run(scenario: Callable[[Container], Awaitable[T]], **changes: Any) -> T:
        async def started() -> T:
            container = build_container(settings.model_copy(update=changes))
            containers.append(container)
            container.start()
            try:
                return await scenario(container)
            finally:
                container.close()

        return asyncio.run(started())

    yield run
    for container in containers:
        container.service.close()


class Batches:
    """Records each batch the service decides: its size and the thread deciding it."""

    def __init__(self, service: RegistrationService, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        self.threads: set[int] = set()
        decide_batch = service.decide_batch

        def recorded(jobs: list[Any]) -> list[Any]:
            self.sizes.append(len(jobs))
            self.threads.add(threading.get_ident())
            return decide_batch(jobs)

        monkeypatch.setattr(service, "decide_batch", recorded)


def test_commands_sent_in_one_turn_of_the_loop_are_decided_as_one_batch_on_the_loop(
    on_loop: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(container: Container) -> tuple[list[Any], Batches]:
        service = container.service
        assert isinstance(service._batcher, LoopBatcher)
        batches = Batches(service, monkeypatch)
        outcomes = await asyncio.gather(
            *(perform(service, service.create_user_command(f"u{n}", f"User {n}")) for n in range(8))
        )
        assert batches.threads == {threading.get_ident()}
        return outcomes, batches

    outcomes, batches = on_loop(scenario)
    assert [o.user_id for o in outcomes] == [f"u{n}" for n in range(8)]
    assert batches.sizes == [8]
    assert "command-batcher" not in {t.name for t in threading.enumerate()}


def test_a_refusal_in_a_loop_batch_fails_only_its_own_command_and_the_rest_commit(
    on_loop: Callable[..., Any],
) -> None:
    async def scenario(container: Container) -> tuple[Any, list[str | None]]:
        service = container.service
        await perform(service, service.create_user_command("taken", "First"))
        outcomes = await asyncio.gather(
            perform(service, service.create_user_command("a", "A")),
            perform(service, service.create_user_command("taken", "Second")),
            perform(service, service.create_user_command("b", "B")),
            return_exceptions=True,
        )
        # Stored sealed (infra/personal_data.py): opened with each user's key.
        stored = [
            container.personal_data.reveal(user_id, "name", str(service.get_user(user_id).name))
            for user_id in ("a", "taken", "b")
        ]
        return outcomes, stored

    outcomes, stored = on_loop(scenario)
    assert isinstance(outcomes[1], DuplicateUserError)
    assert [o.user_id for o in (outcomes[0], outcomes[2])] == ["a", "b"]
    assert stored == ["A", "First", "B"]


def test_a_batch_larger_than_max_batch_is_decided_in_turns_of_at_most_max_batch(
    on_loop: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(container: Container) -> list[int]:
        service = container.service
        batches = Batches(service, monkeypatch)
        await asyncio.gather(
            *(perform(service, service.create_user_command(f"u{n}", "U")) for n in range(10))
        )
        return batches.sizes

    assert on_loop(scenario, max_batch=4) == [4, 4, 2]


def test_a_command_sent_from_another_thread_is_decided_on_the_loop(
    on_loop: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(container: Container) -> tuple[str | None, set[int], int]:
        service = container.service
        batches = Batches(service, monkeypatch)
        # An admin tool in a thread of the same process calls the plain method.
        name = await asyncio.to_thread(lambda: service.create_user("admin", "Admin").name)
        return name, batches.threads, threading.get_ident()

    name, threads, loop_thread = on_loop(scenario)
    assert name == "Admin"
    assert threads == {loop_thread}


def test_a_command_the_loop_itself_waits_for_is_decided_at_once_instead_of_waiting_for_ever(
    on_loop: Callable[..., Any],
) -> None:
    async def scenario(container: Container) -> tuple[str | None, str | None]:
        service = container.service
        batcher = service._batcher
        assert isinstance(batcher, LoopBatcher)
        queued = asyncio.ensure_future(perform(service, service.create_user_command("q", "Q")))
        await asyncio.sleep(0)  # "q" is now pending for the next turn

        def rescue() -> None:  # if the loop waits for itself, fail instead of hanging
            for job in list(batcher._pending):
                job.future.set_exception(TimeoutError("the loop waited for its own command"))

        watchdog = threading.Timer(10, rescue)
        watchdog.start()
        try:
            blocking = service.create_user("now", "Now")  # a plain call, on the loop
        finally:
            watchdog.cancel()
        return blocking.name, (await queued).name

    assert on_loop(scenario) == ("Now", "Q")


def test_stopping_decides_the_pending_commands_and_refuses_later_ones(
    on_loop: Callable[..., Any],
) -> None:
    async def scenario(container: Container) -> tuple[list[str], BaseException | None]:
        service = container.service
        batcher = service._batcher
        assert isinstance(batcher, LoopBatcher)
        futures = [service.submit(service.create_user_command(f"p{n}", "P")) for n in range(3)]
        batcher.stop()
        late = service.submit(service.create_user_command("late", "L"))
        return [f.result().user_id for f in futures], late.exception()

    decided, late_error = on_loop(scenario)
    assert decided == ["p0", "p1", "p2"]
    assert isinstance(late_error, ConcurrentModificationError)


def test_a_command_sent_after_the_loop_closed_is_refused_not_left_waiting(
    settings: Settings,
) -> None:
    container = build_container(settings)
    loop = asyncio.new_event_loop()
    try:
        container.service.start_batching(loop=loop)  # built here, on this thread
    finally:
        loop.close()
    outcome: list[BaseException | None] = []

    def from_another_thread() -> None:
        future = container.service.submit(container.service.create_user_command("x", "X"))
        outcome.append(future.exception(timeout=5))

    sender = threading.Thread(target=from_another_thread)
    sender.start()
    sender.join()
    container.service.close()
    assert isinstance(outcome[0], ConcurrentModificationError)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"workers": 2}, "another process's write lock would block the loop"),
        ({"decide_on_event_loop": False}, "the setting chooses the writer thread"),
    ],
)
def test_a_writer_thread_decides_when_the_loop_must_not(
    on_loop: Callable[..., Any], changes: dict[str, object], why: str
) -> None:
    async def scenario(container: Container) -> object:
        return container.service._batcher

    assert isinstance(on_loop(scenario, **changes), CommandBatcher), why


def test_a_container_started_outside_a_server_decides_in_a_writer_thread(
    settings: Settings,
) -> None:
    container = build_container(settings)
    container.start()  # the CLI's case: no event loop runs
    try:
        assert isinstance(container.service._batcher, CommandBatcher)
        assert container.service.create_user("cli", "CLI").name == "CLI"
    finally:
        container.close()


def restart_batching(container: Container, *, linger: float, max_batch: int = 128) -> None:
    service = container.service
    service.stop_batching()
    service.start_batching(max_batch, loop=asyncio.get_running_loop(), linger=linger)


async def create_users(container: Container, *user_ids: str) -> list[Any]:
    service = container.service
    return await asyncio.wait_for(
        asyncio.gather(*(perform(service, service.create_user_command(u, u)) for u in user_ids)),
        timeout=5,
    )


def test_under_concurrent_load_a_batch_lingers_for_the_commands_sent_meanwhile(
    on_loop: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(container: Container) -> list[int]:
        restart_batching(container, linger=0.2)
        service = container.service
        batches = Batches(service, monkeypatch)
        await create_users(container, "a1", "a2")  # two clients at once: a batch of 2
        first = asyncio.ensure_future(create_users(container, "b1"))
        await asyncio.sleep(0.02)  # another client's command arrives a little later
        await create_users(container, "b2")
        await first
        return batches.sizes

    assert on_loop(scenario) == [2, 2]


def test_a_lone_clients_command_is_decided_at_once_however_long_the_linger(
    on_loop: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(container: Container) -> list[int]:
        restart_batching(container, linger=60)
        batches = Batches(container.service, monkeypatch)
        for n in range(3):  # one after the other: each waits for its answer
            await create_users(container, f"lone{n}")
        return batches.sizes

    assert on_loop(scenario) == [1, 1, 1]


def test_after_concurrent_load_a_lone_clients_commands_stop_lingering_after_a_few_batches(
    on_loop: Callable[..., Any],
) -> None:
    async def scenario(container: Container) -> int:
        loop = asyncio.get_running_loop()
        restart_batching(container, linger=0.01)
        await create_users(container, "a1", "a2")  # a batch of two: load
        lingered = 0
        call_later = loop.call_later

        def counted(delay: float, callback: Callable[..., object], *args: Any) -> Any:
            nonlocal lingered
            lingered += getattr(callback, "__name__", "") == "_flush"  # not wait_for's timers
            return call_later(delay, callback, *args)

        loop.call_later = counted  # type: ignore[method-assign,assignment]
        for n in range(LoopBatcher.LONE_BATCHES + 4):  # then one client, one at a time
            await create_users(container, f"lone{n}")
        return lingered

    assert on_loop(scenario) == LoopBatcher.LONE_BATCHES


def test_a_full_batch_is_decided_at_once_without_lingering(
    on_loop: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(container: Container) -> list[int]:
        restart_batching(container, linger=60, max_batch=2)
        batches = Batches(container.service, monkeypatch)
        await create_users(container, "c1", "c2")
        await create_users(container, "c3", "c4")  # would linger for 60 s if not full
        return batches.sizes

    assert on_loop(scenario) == [2, 2]
