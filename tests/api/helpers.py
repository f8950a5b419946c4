"""Assertions shared by the API tests."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx

from infra.logs import JsonLinesFormatter

ERROR_KEYS = {"code", "message", "details", "timestamp", "path", "requestId"}
UTC_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")


def assert_utc_timestamp(value: Any) -> datetime:
    """``value`` is an ISO 8601 UTC timestamp written with a trailing ``Z``."""
    assert isinstance(value, str), value
    assert UTC_TIMESTAMP.fullmatch(value), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The error object of an error response, after checking the envelope."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == ERROR_KEYS, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["details"], list)
    assert_utc_timestamp(error["timestamp"])
    assert error["path"] == response.request.url.path
    assert error["requestId"] == response.headers["X-Request-ID"]
    return error


def validation_fields(response: httpx.Response) -> list[str]:
    """The fields a 400 VALIDATION_ERROR names; every detail is ``{field, message}``."""
    error = error_of(response, 400, "VALIDATION_ERROR")
    assert error["details"], error
    for detail in error["details"]:
        assert set(detail) == {"field", "message"}, detail
        assert isinstance(detail["field"], str)
        assert isinstance(detail["message"], str)
        assert detail["message"]
    return [str(detail["field"]) for detail in error["details"]]


def json_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The JSON object body of a response with the given status."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert isinstance(body, dict)
    return body


@contextmanager
def service_log() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    """What the service's JSON-lines handler writes from now on (into a buffer),
    and that handler; its stream is put back afterwards."""
    handlers = [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler)
        and isinstance(handler.formatter, JsonLinesFormatter)
    ]
    assert len(handlers) == 1, logging.getLogger().handlers
    buffer = io.StringIO()
    previous = handlers[0].setStream(buffer)
    try:
        yield buffer, handlers[0]
    finally:
        if previous is not None:
            handlers[0].setStream(previous)
