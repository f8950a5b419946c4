"""The JSON-lines log formatter: one object per line, extras kept, nothing lost."""

from __future__ import annotations

import json
import logging
import sys
from uuid import UUID

from infra.logs import JsonLinesFormatter, set_request_id


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("tests.logs", logging.WARNING, __file__, 1, message, (), None)
    made.__dict__.update(extra)
    return made


def test_a_record_becomes_one_json_line_with_time_level_logger_message_request_id_and_extras() -> (
    None
):
    set_request_id("req-7")
    line = JsonLinesFormatter().format(record("request", status=201, path="/users"))

    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["level"] == "WARNING"
    assert parsed["logger"] == "tests.logs"
    assert parsed["message"] == "request"
    assert parsed["requestId"] == "req-7"
    assert parsed["status"] == 201
    assert parsed["path"] == "/users"
    assert parsed["time"].endswith("Z")
    assert len(parsed["time"]) == len("2026-11-26T11:11:19.738Z")


def test_values_json_cannot_hold_are_written_as_text() -> None:
    parsed = json.loads(
        JsonLinesFormatter().format(record("x", id=UUID(int=1), pair=(1, "a"), none=None))
    )

    assert parsed["id"] == "00000000-0000-0000-0000-000000000001"
    assert parsed["pair"] == [1, "a"]
    assert parsed["none"] is None


def test_an_exception_is_logged_with_its_traceback_on_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failed = record("failed")
        failed.exc_info = sys.exc_info()

    line = JsonLinesFormatter().format(failed)

    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc_info"]


def test_times_within_one_second_keep_their_milliseconds() -> None:
    formatter = JsonLinesFormatter()
    early, late = record("a"), record("b")
    early.created, late.created = 1_795_000_000.0015, 1_795_000_000.9995

    assert json.loads(formatter.format(early))["time"].endswith(".001Z")
    assert json.loads(formatter.format(late))["time"].endswith(".999Z")
