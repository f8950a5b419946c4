"""`python -m api` (what `make run` runs) serves the API on either store by itself."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.servers import running_server

pytestmark = pytest.mark.processes


def _create_and_read_a_user(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        created = http.post("/users", json={"userId": "alice", "name": "Alice"})
        assert created.status_code == 201
        assert http.get("/users/alice").json() == created.json()


def test_the_run_command_serves_the_api_on_the_embedded_store(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", workers=1, extra_env={"STORE": "sqlite"}) as url:
        assert httpx.get(f"{url}/health").json()["store"] == "sqlite"
        _create_and_read_a_user(url)
    assert (tmp_path / "data" / "events.sqlite3").exists()


@pytest.mark.dynamodb_pass
@pytest.mark.skipif(
    bool(os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")),
    reason="an endpoint is configured, so the run command would not start DynamoDB Local",
)
def test_the_run_command_on_dynamodb_starts_and_stops_dynamodb_local_itself(
    tmp_path: Path,
) -> None:
    with running_server(tmp_path / "data", workers=1, extra_env={"STORE": "dynamodb"}) as url:
        assert httpx.get(f"{url}/health").json()["store"] == "dynamodb"
        _create_and_read_a_user(url)
        port = url.rsplit(":", 1)[1]
        log = (tmp_path / f"server-{port}.log").read_text()
        assert "DynamoDB Local is serving at" in log
    endpoint = log.split("DynamoDB Local is serving at ", 1)[1].split()[0]
    with pytest.raises(httpx.TransportError):
        httpx.get(endpoint, timeout=2)
