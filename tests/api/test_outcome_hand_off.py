"""Outcomes decided by the batcher (in its thread or on the loop) reach the
requests awaiting them on the event loop, a burst of them with one wake-up
(api/deps.py ``OutcomeHandOff``)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

import pytest

from api.deps import OutcomeHandOff


class WakeUps:
    """Counts the loop's cross-thread wake-ups (``call_soon_threadsafe``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.count = 0
        original = loop.call_soon_threadsafe

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign,assignment]


def test_a_burst_of_outcomes_wakes_the_loop_once_and_each_request_gets_its_own() -> None:
    async def scenario() -> tuple[list[Any], int]:
        loop = asyncio.get_running_loop()
        wake_ups = WakeUps(loop)
        hand_off = OutcomeHandOff(loop)
        outcomes: list[Future[str]] = [Future() for _ in range(8)]
        waiters = [hand_off.watch(outcome) for outcome in outcomes]

        def decide_a_batch() -> None:  # as the batcher does, one after the other
            for n, outcome in enumerate(outcomes):
                if n == 3:
                    outcome.set_exception(LookupError("refused"))
                else:
                    outcome.set_result(f"outcome {n}")

        batcher = threading.Thread(target=decide_a_batch)
        batcher.start()
        batcher.join()  # the loop is not running meanwhile: the whole burst waits
        results = await asyncio.gather(*waiters, return_exceptions=True)
        return results, wake_ups.count

    results, wake_ups = asyncio.run(scenario())
    assert wake_ups == 1
    assert [str(r) for r in results] == [
        "outcome 0",
        "outcome 1",
        "outcome 2",
        "refused",
        "outcome 4",
        "outcome 5",
        "outcome 6",
        "outcome 7",
    ]
    assert isinstance(results[3], LookupError)


def test_outcomes_arriving_apart_are_each_delivered() -> None:
    async def scenario() -> list[int]:
        hand_off = OutcomeHandOff(asyncio.get_running_loop())
        delivered = []
        for n in range(3):
            outcome: Future[int] = Future()
            waiter = hand_off.watch(outcome)
            threading.Thread(target=outcome.set_result, args=(n,)).start()
            delivered.append(await asyncio.wait_for(waiter, timeout=5))
        return delivered

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_a_request_that_goes_away_leaves_its_command_to_finish() -> None:
    async def scenario() -> Future[str]:
        hand_off = OutcomeHandOff(asyncio.get_running_loop())
        outcome: Future[str] = Future()
        waiter = hand_off.watch(outcome)
        waiter.cancel()  # the client disconnected
        with pytest.raises(asyncio.CancelledError):
            await waiter
        outcome.set_result("committed")  # no error for the command thread
        await asyncio.sleep(0)
        return outcome

    outcome = asyncio.run(scenario())
    assert not outcome.cancelled()
    assert outcome.result() == "committed"


def test_outcomes_decided_on_the_loop_itself_are_delivered_without_a_cross_thread_wake_up() -> None:
    async def scenario() -> tuple[list[str], int]:
        loop = asyncio.get_running_loop()
        wake_ups = WakeUps(loop)
        hand_off = OutcomeHandOff(loop)
        outcomes: list[Future[str]] = [Future() for _ in range(4)]
        waiters = [hand_off.watch(outcome) for outcome in outcomes]
        for n, outcome in enumerate(outcomes):  # as the LoopBatcher does, on the loop
            outcome.set_result(f"outcome {n}")
        results = await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)
        return results, wake_ups.count

    results, wake_ups = asyncio.run(scenario())
    assert results == [f"outcome {n}" for n in range(4)]
    assert wake_ups == 0
