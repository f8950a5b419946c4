"""The JSON-lines log formatter: one object per line, extras kept, nothing lost."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import time
from uuid import UUID

from infra.logs import JsonLinesFormatter, JsonLinesHandler, flush_logs, set_request_id


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


def handler_writing_to(stream: io.StringIO, interval: float) -> JsonLinesHandler:
    handler = JsonLinesHandler(stream, interval=interval)
    handler.setFormatter(JsonLinesFormatter())
    return handler


def written(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["message"] for line in stream.getvalue().splitlines()]


def test_info_lines_are_written_in_one_batch_by_the_writer_thread() -> None:
    stream = io.StringIO()
    handler = handler_writing_to(stream, interval=0.2)
    for n in range(3):
        info = record(f"info {n}")
        info.levelno, info.levelname = logging.INFO, "INFO"
        handler.handle(info)

    assert written(stream) == []  # not yet: no system call per line
    deadline = time.monotonic() + 5
    while not stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert written(stream) == ["info 0", "info 1", "info 2"]


def test_a_warning_is_written_at_once_after_everything_logged_before_it() -> None:
    stream = io.StringIO()
    handler = handler_writing_to(stream, interval=3600)
    info = record("before")
    info.levelno, info.levelname = logging.INFO, "INFO"
    handler.handle(info)
    handler.handle(record("the warning"))

    assert written(stream) == ["before", "the warning"]


def test_threads_warning_while_the_writer_writes_neither_deadlock_nor_lose_or_reorder_lines() -> (
    None
):
    stream = io.StringIO()
    handler = handler_writing_to(stream, interval=0.0001)

    def log(thread: int) -> None:
        for n in range(300):
            handler.handle(record(f"{thread}:{n}"))

    threads = [threading.Thread(target=log, args=(t,), daemon=True) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    handler.flush()

    lines = written(stream)
    assert sorted(lines) == sorted(f"{t}:{n}" for t in range(4) for n in range(300))
    for t in range(4):
        own = [int(line.split(":")[1]) for line in lines if line.startswith(f"{t}:")]
        assert own == sorted(own)


def test_flush_logs_writes_what_the_root_handler_queued() -> None:
    stream = io.StringIO()
    handler = handler_writing_to(stream, interval=3600)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("tests.logs").warning("at once")
        queued = record("queued")
        queued.levelno, queued.levelname = logging.INFO, "INFO"
        handler.handle(queued)
        assert written(stream) == ["at once"]

        flush_logs()

        assert written(stream) == ["at once", "queued"]
    finally:
        root.removeHandler(handler)
