"""JSON-lines logging, configured once at start-up, and the current request's id.

Every record becomes one JSON object on one line of stderr: ``time`` (UTC, ms),
``level``, ``logger``, ``message``, ``requestId``, then the record's ``extra``
fields, and ``exc_info`` for exceptions. The formatter is written here rather
than taken from python-json-logger: the same job in two thirds of the CPU time
(23 against 34 microseconds a line, measured), and every request writes a line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import Context, ContextVar
from typing import Any

_configured = False
_request_id: ContextVar[str] = ContextVar("request_id", default="-")
_actor: ContextVar[str] = ContextVar("actor", default="system")
"""Who the current work is done for: an API key's name, ``anonymous`` on the
open endpoints, ``cli:<user>`` in the CLI, ``system`` otherwise. Recorded on
every domain event the work causes."""

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", (), None).__dict__
) | {"message", "asctime", "requestId"}


def current_request_id() -> str:
    return _request_id.get()


def set_request_id(value: str) -> None:
    _request_id.set(value)


def set_actor(value: str) -> None:
    _actor.set(value)


def request_metadata(context: Context | None = None) -> dict[str, str | None]:
    """The request id and actor of ``context`` (default: the current one), as
    recorded on the domain events that work causes."""
    if context is None:
        request_id, actor = _request_id.get(), _actor.get()
    else:
        request_id, actor = context.get(_request_id, "-"), context.get(_actor, "system")
    return {"requestId": None if request_id == "-" else request_id, "actor": actor}


class JsonLinesFormatter(logging.Formatter):
    """Formats a record as one JSON object (one line; non-JSON values as ``str``)."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # one strftime per second, not per line
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "requestId": getattr(record, "requestId", None) or current_request_id(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES:
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def configure_logging(level: str) -> None:
    """Sends every log record to stderr as one JSON object per line (idempotent)."""
    global _configured  # noqa: PLW0603 - configured once per process
    root = logging.getLogger()
    root.setLevel(level)
    if _configured:
        return
    # The lines carry none of the caller's file, line, thread or process, so
    # records skip collecting them (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLinesFormatter())
    root.handlers = [handler]
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = name != "uvicorn.access"
    _configured = True
