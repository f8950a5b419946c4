"""Writer lanes: several batchers, each saving its own batches, so that saves overlap.

One writer thread saves one batch at a time. Where a save is mostly waiting
(DynamoDB: a network round trip per call), the process then waits for one
round trip after another while other gatherings' commands queue. With N
lanes, each a batcher of its own (its own thread), N saves are in flight at
once.

A command goes to the lane its key names (a stable hash of the key, such as
``gathering/<id>``), so every command on one gathering is decided in one
lane, in arrival order: the waitlist's FIFO order is still the order of
arrival, and two saves of the same process never race for the same stream.
Commands on different gatherings touch no aggregate in common that either
changes (a registration and a waitlist page belong to their gathering; a
user is only read), so lanes share the aggregate cache safely; across lanes
(as across processes) the store's conditional appends decide.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol


class Keyed(Protocol):
    """What a lane is chosen by: the key naming what the command decides about."""

    @property
    def key(self) -> str: ...


class Lane(Protocol):
    """A batcher that decides the commands submitted to it (``CommandBatcher``)."""

    def submit(self, job: Any) -> Future[Any]: ...

    def settle(self, future: Future[Any]) -> None: ...

    def stop(self) -> None: ...


def lane_of(key: str, lanes: int) -> int:
    """The lane a command with ``key`` goes to: the same in every run and process."""
    return zlib.crc32(key.encode()) % lanes


class WriterLanes:
    """Routes each command to one of ``lanes`` batchers by its key."""

    def __init__(self, make_lane: Callable[[int], Lane], lanes: int) -> None:
        if lanes < 1:
            msg = f"at least one writer lane, not {lanes}"
            raise ValueError(msg)
        self.lanes: Sequence[Lane] = tuple(make_lane(n) for n in range(lanes))

    def submit(self, job: Keyed) -> Future[Any]:
        return self.lanes[lane_of(job.key, len(self.lanes))].submit(job)

    def settle(self, future: Future[Any]) -> None:
        """Nothing to do: each lane's writer thread decides its futures."""

    def stop(self) -> None:
        for lane in self.lanes:
            lane.stop()
