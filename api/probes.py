"""Probes that answer in bounded time, even while the store does not answer.

A probe reads the store (positions, the readiness checks). Against a store that
stalls, without answering or refusing, each read waits for the client's
timeouts and retries: a minute on DynamoDB. An orchestrator's probe has a few
seconds. So a probe's read runs in a thread of its own and is waited for at
most ``PROBE_BUDGET_SECONDS``; a probe arriving while an earlier read still
waits joins that read rather than starting another, so a stalled store holds
one thread per probe, never one per request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Generic, TypeVar

from domain.errors import StoreDidNotAnswerError

T = TypeVar("T")

PROBE_BUDGET_SECONDS = 2.0


class BoundedProbe(Generic[T]):
    """Runs ``read`` in a thread, one run at a time, waited for at most ``budget``."""

    def __init__(self, read: Callable[[], T], budget: float = PROBE_BUDGET_SECONDS) -> None:
        self.read = read
        self.budget = budget
        self._lock = threading.Lock()
        self._running: Future[T] | None = None

    def __call__(self) -> T:
        """The read's result, or its exception; ``StoreDidNotAnswerError`` when it
        did not finish within the budget (it goes on, and the next call joins it)."""
        with self._lock:
            running = self._running
            if running is None or running.done():
                running = self._running = Future()
                threading.Thread(
                    target=self._run, args=(running,), name="store-probe", daemon=True
                ).start()
        try:
            return running.result(timeout=self.budget)
        except FutureTimeout:
            msg = f"the store did not answer within {self.budget:g} s"
            raise StoreDidNotAnswerError(msg) from None

    def _run(self, future: Future[T]) -> None:
        try:
            future.set_result(self.read())
        except BaseException as error:  # handed to whoever waits for it
            future.set_exception(error)
