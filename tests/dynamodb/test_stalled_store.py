"""A DynamoDB that stops answering (stalled, not down): every request still answers
soon, with 503, and the probes at once.

DynamoDB Local is stopped with SIGSTOP: connections stay open and nothing answers,
as a store behind a network partition or a paused VM. Each call then fails after one
read timeout (``READ_TIMEOUT_SECONDS``) and is not retried past
``RETRY_BUDGET_SECONDS``; before, it waited out botocore's five attempts of ten
seconds (a minute per call, 160 s for a user's creation).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from infra.devtools.dynamodb_local import QUICK_START_JVM_OPTIONS, DynamoDBLocal
from infra.dynamodb.datastore import READ_TIMEOUT_SECONDS, RETRY_BUDGET_SECONDS
from infra.settings import Settings
from tests.support import create_event, create_user, fresh_store_settings, register

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("servers")]


@pytest.fixture
def stalled(tmp_path: Any) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with DynamoDBLocal(jvm_options=QUICK_START_JVM_OPTIONS) as local:
        settings = Settings(
            **fresh_store_settings("dynamodb", local.endpoint_url),  # type: ignore[arg-type]
            data_dir=tmp_path,
            environment="test",
        )
        with TestClient(create_app(settings)) as client:
            user = create_user(client)
            event = create_event(client, capacity=5)["eventId"]
            assert local.process is not None
            os.kill(local.process.pid, signal.SIGSTOP)
            try:
                yield client, {"user": user, "event": event}
            finally:
                os.kill(local.process.pid, signal.SIGCONT)


def test_a_stalled_store_gets_a_503_within_seconds_per_call_and_the_probes_answer(
    stalled: tuple[TestClient, dict[str, str]],
) -> None:
    client, ids = stalled
    answers: dict[str, tuple[int, float]] = {}

    def timed(name: str, send: Any) -> None:
        started = time.monotonic()
        status = send().status_code
        answers[name] = (status, time.monotonic() - started)

    def commands() -> None:
        # One after the other: two commands at once may share a writer lane, and
        # the second would then also wait out the first one's calls.
        timed("register", lambda: register(client, ids["user"], ids["event"]))
        timed("create user", lambda: client.post("/users", json={"userId": "late", "name": "Late"}))

    requests = {
        "health": lambda: timed("health", lambda: client.get("/health")),
        "ready": lambda: timed("ready", lambda: client.get("/ready")),
        "get event": lambda: timed("get event", lambda: client.get(f"/events/{ids['event']}")),
        "commands": commands,
    }
    threads = [threading.Thread(target=run) for run in requests.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    per_call = max(READ_TIMEOUT_SECONDS, RETRY_BUDGET_SECONDS) + 2  # and one backoff
    assert answers["health"][0] == 200
    assert answers["ready"][0] == 503
    assert max(answers["health"][1], answers["ready"][1]) < 5
    assert answers["get event"][0] == 503
    assert answers["get event"][1] < per_call
    for command in ("register", "create user"):
        status, waited = answers[command]
        assert status == 503, command
        assert waited < 3 * per_call, (command, waited)  # a few calls in turn, each bounded
