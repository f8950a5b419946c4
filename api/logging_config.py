"""JSON-lines logging, configured once at start-up."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from api.context import current_request_id

_configured = False


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "requestId"):
            record.requestId = current_request_id()
        return True


def configure_logging(level: str) -> None:
    """Sends every log record to stderr as one JSON object per line (idempotent)."""
    global _configured  # noqa: PLW0603 - configured once per process
    root = logging.getLogger()
    root.setLevel(level)
    if _configured:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        )
    )
    handler.addFilter(_RequestIdFilter())
    root.handlers = [handler]
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = name != "uvicorn.access"
    _configured = True
