"""Holding a writer: the commands submitted meanwhile queue, and are decided together."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from types import TracebackType

from domain.batching import Command
from domain.runner import CommandRunner
from domain.unit_of_work import UnitOfWork

# How long to wait for the writer to take the hold before calling it stuck (a
# deadlock guard, not a timing assertion: it takes it in milliseconds).
STUCK = 60


class WriterHold:
    """A command that holds the writer (the lane) deciding ``key``'s commands inside
    its decision until the ``with`` block ends: what is submitted in the block queues
    behind it, and the next batch takes all of it.

    It is alone in its batch: nothing else was submitted when the writer took it.
    """

    def __init__(self, service: CommandRunner, key: str) -> None:
        self._deciding = threading.Event()
        self._gate = threading.Event()

        def decide(uow: UnitOfWork) -> None:
            del uow
            self._deciding.set()
            self._gate.wait()

        self.done: Future[None] = service.submit(Command(key, decide, name="hold"))

    def __enter__(self) -> WriterHold:
        assert self._deciding.wait(timeout=STUCK), "the writer never took the hold"
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._gate.set()
