"""Probes answer in bounded time while the store does not answer (``api.probes``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.probes import BoundedProbe
from domain.errors import StoreDidNotAnswerError
from infra.settings import Settings
from infra.wiring import Container


def test_a_read_that_does_not_finish_in_time_is_reported_and_joined_not_repeated() -> None:
    release = threading.Event()
    calls: list[int] = []

    def read() -> int:
        calls.append(1)
        release.wait(10)
        return 42

    probe = BoundedProbe(read, budget=0.1)
    for _ in range(3):
        started = time.monotonic()
        with pytest.raises(StoreDidNotAnswerError, match=r"within 0\.1 s"):
            probe()
        assert time.monotonic() - started < 1.0
    assert len(calls) == 1  # the later probes joined the read still waiting

    release.set()
    assert probe() == 42
    assert len(calls) == 1  # its result, once done, answers the next probe
    assert probe() == 42
    assert len(calls) == 2  # then each probe reads afresh


def test_a_read_that_fails_raises_its_error() -> None:
    def read() -> int:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError, match="refused"):
        BoundedProbe(read, budget=1.0)()


@pytest.fixture
def stalled(settings: Settings) -> Iterator[tuple[TestClient, threading.Event]]:
    """An app whose store stops answering (its read tables' position never comes)."""
    with TestClient(create_app(settings)) as client:
        container: Container = client.app.state.container  # type: ignore[attr-defined]
        release = threading.Event()
        answer = container.read_model.log_position

        def stalls() -> int | None:
            release.wait(30)
            return answer()

        container.read_model.log_position = stalls  # type: ignore[method-assign]
        try:
            yield client, release
        finally:
            release.set()


def test_health_stays_200_and_says_degraded_while_the_store_does_not_answer(
    stalled: tuple[TestClient, threading.Event],
) -> None:
    client, release = stalled
    started = time.monotonic()
    health = client.get("/health")
    ready = client.get("/ready")
    waited = time.monotonic() - started

    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert health.json()["projectionPosition"] is None
    assert "did not answer" in health.json()["problem"]
    assert ready.status_code == 503
    assert [d["field"] for d in ready.json()["error"]["details"]] == ["store"]
    assert waited < 8.0  # two probes of about 2 s each, not the store's timeouts

    release.set()
    time.sleep(0.1)
    assert client.get("/health").json()["status"] == "ok"
