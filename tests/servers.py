"""Real server processes for tests: ``python -m api`` with uvicorn workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from infra.devtools.dynamodb_local import free_port


@contextmanager
def running_server(
    data_dir: Path, *, workers: int = 2, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """Starts the API in its own processes; yields its base URL; stops it after."""
    with server_process(data_dir, workers=workers, extra_env=extra_env) as (url, _):
        yield url


@contextmanager
def server_process(
    data_dir: Path,
    *,
    workers: int = 2,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Like ``running_server``, also yielding the process (to kill it, say)."""
    port = port or free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "PORT": str(port),
        "WORKERS": str(workers),
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    log_path = data_dir.parent / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            run_command(env),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_healthy(base_url, process, log_path)
            yield base_url, process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run_command(env: dict[str, str]) -> list[str]:
    """What `make run` runs: the API, wrapped in DynamoDB Local's launcher when it needs one."""
    serve = [sys.executable, "-m", "api"]
    if env.get("STORE") == "dynamodb" and not env.get("AWS_ENDPOINT_URL_DYNAMODB"):
        return [sys.executable, "-m", "infra.devtools.dynamodb_local", "run", "--", *serve]
    return serve


def _wait_until_healthy(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"server exited with {process.returncode}:\n{log.read_text()[-4000:]}"
            raise RuntimeError(msg)
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    msg = f"server did not answer within 60 s:\n{log.read_text()[-4000:]}"
    raise RuntimeError(msg)


def event_registrations(http: httpx.Client, event_id: str) -> list[dict[str, object]]:
    """Every registration of an event (confirmed, then the waitlist), across pages."""
    found: list[dict[str, object]] = []
    token: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 500} | ({"nextToken": token} if token else {})
        page = http.get(f"/events/{event_id}/registrations", params=params).json()
        found.extend(page["registrations"])
        token = page.get("nextToken")
        if not token:
            return found


def assert_acknowledged_writes_kept(
    http: httpx.Client,
    acknowledged: list[tuple[str, str, str]],
    event_ids: list[str],
    capacity: int,
) -> None:
    """Every acknowledged user and registration is there, once; counts agree.

    ``acknowledged`` holds ("user", user, ""), ("registered", user, event),
    and ("leaving", user, event) for a leave that was sent (it may have
    committed whatever its answer).
    """
    users = {user for kind, user, _ in acknowledged if kind == "user"}
    for user in users:
        answer = http.get(f"/users/{user}")
        assert answer.status_code == 200, (user, answer.status_code, answer.text)
    held = {(u, e) for kind, u, e in acknowledged if kind == "registered"}
    held -= {(u, e) for kind, u, e in acknowledged if kind == "leaving"}
    for event_id in event_ids:
        event = http.get(f"/events/{event_id}").json()
        listed = event_registrations(http, event_id)
        people = [str(r["userId"]) for r in listed]
        assert len(people) == len(set(people)), "a registration was applied twice"
        assert {u for u, e in held if e == event_id} <= set(people)
        confirmed = [r for r in listed if r["status"] == "confirmed"]
        assert event["registeredCount"] == len(confirmed) <= capacity
        assert event["waitlistCount"] == len(listed) - len(confirmed)


def run_cli(
    store_env: dict[str, str], data_dir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """``regsvc <args>`` on that store (``check``: the log folded afresh against the
    tables; ``verify``: the hash chains)."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env={**os.environ, **store_env, "DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
