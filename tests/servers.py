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
