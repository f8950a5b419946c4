"""With two uvicorn workers, GET /metrics (answered by either) counts every
worker's requests: prometheus-client's multiprocess mode."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

import api.__main__ as entry
from infra.settings import Settings
from tests.metrics_text import sample
from tests.servers import running_server
from tests.support import fresh_store_settings, server_env, unique

# Counting across processes is the same on every store: it runs in the SQLite pass only.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.processes,
    pytest.mark.sqlite_pass,
    pytest.mark.xdist_group("servers"),
]

REQUESTS = 40


def test_two_workers_metrics_sum_every_request_sent(tmp_path: Path) -> None:
    store = server_env(fresh_store_settings("sqlite", None))
    counted_in = tmp_path / "metrics"
    counted_in.mkdir()
    env = {**store, "PROMETHEUS_MULTIPROC_DIR": str(counted_in)}
    labels = {"route": "/users/{userId}", "method": "GET", "status": "404"}
    with running_server(tmp_path / "data", workers=2, extra_env=env) as url:
        for _ in range(REQUESTS):
            # A connection per request: the workers take turns accepting them.
            assert httpx.get(f"{url}/users/{unique('nobody')}").status_code == 404
        scrapes = [httpx.get(f"{url}/metrics") for _ in range(6)]

    for scrape in scrapes:
        assert scrape.status_code == 200, scrape.text
        assert sample(scrape.text, "regsvc_http_requests_total", **labels) == REQUESTS
    # Both workers counted (each in its own files).
    assert len({path.stem.rsplit("_", 1)[-1] for path in counted_in.glob("counter_*.db")}) == 2


def test_serving_with_two_workers_gives_them_a_fresh_metrics_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Recorded (then removed) so that the variable serve() sets is undone after the test.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    seen: list[Path] = []

    def run(*_: object, **__: object) -> None:
        directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert directory.is_dir()
        assert not any(directory.iterdir())
        seen.append(directory)

    monkeypatch.setattr("uvicorn.run", run)
    entry.serve(Settings(workers=2))

    assert len(seen) == 1
    assert not seen[0].exists()  # removed when the server stops
