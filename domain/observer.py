"""What the command side tells an observer (metrics), without knowing who listens.

The domain imports no metrics library: ``CommandRunner.observer`` is any object
with these methods (``infra/metrics.py`` implements them for Prometheus, and
``infra/wiring.py`` sets it). The default observer does nothing. An observer
must be quick and must not raise: it runs in the writer's path.
"""

from __future__ import annotations

from typing import Any, Protocol


class CommandObserver(Protocol):
    """Told of every command's outcome and every batch the runner commits."""

    def command_settled(self, command: str, outcome: Any, error: BaseException | None) -> None:
        """A command (``Command.name``) ended: with ``outcome``, or refused with ``error``."""

    def batch_committed(self, size: int, seconds: float) -> None:
        """A batch of ``size`` commands was saved in one write taking ``seconds``."""


class QuietObserver:
    """Observes nothing (the runner's default)."""

    def command_settled(self, command: str, outcome: Any, error: BaseException | None) -> None:
        """Nothing."""

    def batch_committed(self, size: int, seconds: float) -> None:
        """Nothing."""
