"""One DynamoDB Local for the test session.

- If AWS_ENDPOINT_URL_DYNAMODB is set, tests use that endpoint (it must accept
  the dummy credentials in infra.devtools.dynamodb_local.LOCAL_CREDENTIALS).
- Otherwise the session starts one. Under pytest-xdist the workers share it:
  the first worker to get the file lock starts it and records its URL and pid
  in the run's shared temporary directory; each worker counts itself in and
  out; the last one out stops it. (On 2 cores the JVM is the bottleneck, so one
  warmed-up instance beats one per worker.)

Tests isolate themselves with unique table prefixes, so sharing is safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest

from infra.devtools.dynamodb_local import DynamoDBLocal, DynamoDBLocalError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# The instance this process started, if any (so it can be reaped properly).
_started_here: DynamoDBLocal | None = None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _start() -> DynamoDBLocal:
    global _started_here  # noqa: PLW0603
    ddb = DynamoDBLocal()
    try:
        ddb.start()
    except DynamoDBLocalError as e:  # pragma: no cover
        pytest.fail(f"Could not start DynamoDB Local: {e}")
    _started_here = ddb
    return ddb


def _stop(pid: int) -> None:
    process = _started_here.process if _started_here is not None else None
    if _started_here is not None and process is not None and process.pid == pid:
        _started_here.stop()
        return
    # Started by a worker that has already finished: its child is now ours to end.
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _shared(root: Path) -> Iterator[str]:
    lock_path = root / "dynamodb-local.lock"
    state_path = root / "dynamodb-local.json"
    with _file_lock(lock_path):
        state: dict[str, Any] | None = None
        if state_path.exists():
            state = json.loads(state_path.read_text())
        if state is None or not _alive(state["pid"]):
            ddb = _start()
            assert ddb.process is not None
            state = {"url": ddb.endpoint_url, "pid": ddb.process.pid, "users": 0}
        state["users"] += 1
        state_path.write_text(json.dumps(state))
    try:
        yield state["url"]
    finally:
        with _file_lock(lock_path):
            state = json.loads(state_path.read_text())
            state["users"] -= 1
            if state["users"] <= 0:
                _stop(state["pid"])
                state_path.unlink()
            else:
                state_path.write_text(json.dumps(state))


@pytest.fixture(scope="session")
def dynamodb_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    if url:
        yield url
    elif os.environ.get("PYTEST_XDIST_WORKER"):
        # The parent of each worker's basetemp is shared by the run's workers.
        yield from _shared(tmp_path_factory.getbasetemp().parent)
    else:
        ddb = _start()
        try:
            yield ddb.endpoint_url
        finally:
            ddb.stop()
