"""The three servers the benchmark compares, each started as its own process.

- ``service``: this repository's service, ``python -m api`` (what ``make run``
  runs), 1 worker, ``LOG_LEVEL=WARNING``, ``ENVIRONMENT=production``.
- ``state-based``: ``python -m bench.baseline`` (see that module).
- ``bare``: ``python -m bench.bare``, the framework ceiling.

All three run uvicorn in one process with its defaults (``loop="auto"``,
``http="auto"``: uvloop and httptools when installed, else asyncio and h11),
no access log, on a free loopback port, with a fresh SQLite directory or fresh
DynamoDB tables (their own table-name prefix) per run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.feed_lag import caught_up_at
from bench.load import CapacityProbe, no_capacity
from infra.devtools.dynamodb_local import (
    LOCAL_CREDENTIALS,
    DynamoDBLocal,
    free_port,
    install,
    local_client,
)

ROOT = Path(__file__).resolve().parent.parent


def serve(app: Any) -> None:
    """Serves ``app`` on $HOST:$PORT the way the service does: uvicorn, one process."""
    import uvicorn

    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        workers=1,
        access_log=False,
        log_level="warning",
    )


def stats_units(body: Any) -> tuple[float, float] | None:
    """(RCU, WCU) so far, from the state-based server's GET /_stats."""
    total = body.get("total") if isinstance(body, dict) else None
    if not isinstance(total, dict):
        return None
    return float(total.get("readUnits", 0.0)), float(total.get("writeUnits", 0.0))


def health_units(body: Any) -> tuple[float, float] | None:
    """(RCU, WCU) so far, from the service's GET /health (``consumedCapacity``)."""
    if not isinstance(body, dict):
        return None
    units = body.get("consumedCapacity") or body.get("consumed_capacity")
    if not isinstance(units, dict):
        return None
    return float(units.get("readUnits", 0.0)), float(units.get("writeUnits", 0.0))


FEED_DRAIN_TIMEOUT = 120.0


async def _feed_drained(client: httpx.AsyncClient, path: str) -> None:
    """Waits until the service's feed (its stream indexer) has indexed every
    event written before this call: the index writes that a load causes are
    then counted with it, however far the indexer lags."""
    asked = time.monotonic()
    while time.monotonic() - asked < FEED_DRAIN_TIMEOUT:
        feed = (await client.get(path)).json().get("feed")
        if not isinstance(feed, dict):
            return  # no feed (the indexer is off): nothing to wait for
        at = caught_up_at(feed)
        if at is not None and at >= asked:
            return
        await asyncio.sleep(0.05)
    msg = f"the feed did not drain within {FEED_DRAIN_TIMEOUT:g} s"
    raise RuntimeError(msg)


def _async_probe(
    path: str, parse: Callable[[Any], tuple[float, float] | None], *, drain: bool
) -> CapacityProbe:
    async def read(client: httpx.AsyncClient) -> tuple[float, float] | None:
        response = await client.get(path)
        return parse(response.json()) if response.status_code == 200 else None

    async def probe(client: httpx.AsyncClient) -> tuple[float, float] | None:
        units = await read(client)
        if not drain or units is None:
            return units
        # Reads as they stand (waiting would add the polls' own reads); writes
        # once the deferred ones are done (polling writes nothing).
        await _feed_drained(client, path)
        later = await read(client)
        return None if later is None else (units[0], later[1])

    return probe


@dataclass(frozen=True)
class ServerKind:
    name: str
    module: str
    bare: bool = False
    # Where the server shows the DynamoDB capacity it consumed so far, and how to read it.
    capacity_path: str | None = None
    capacity_units: Callable[[Any], tuple[float, float] | None] | None = None
    # Whether part of a write's cost comes later (the service's stream indexer):
    # the probe then waits for that to be done before it reads.
    deferred_writes: bool = False

    def probe(self, store: str) -> CapacityProbe:
        """Reads (RCU, WCU) so far over HTTP; off DynamoDB, nothing."""
        if store != "dynamodb" or self.capacity_path is None or self.capacity_units is None:
            return no_capacity
        return _async_probe(self.capacity_path, self.capacity_units, drain=self.deferred_writes)

    def consumed(self, url: str) -> tuple[float, float]:
        """(RCU, WCU) so far, read synchronously, as ``probe`` reads them."""

        async def read() -> tuple[float, float] | None:
            async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client:
                return await self.probe("dynamodb")(client)

        units = asyncio.run(read())
        if units is None:
            msg = f"{self.name}: no consumed capacity in GET {self.capacity_path}"
            raise ServerError(msg)
        return units


SERVICE = ServerKind(
    "service", "api", capacity_path="/health", capacity_units=health_units, deferred_writes=True
)
BASELINE = ServerKind(
    "state-based", "bench.baseline", capacity_path="/_stats", capacity_units=stats_units
)
BARE = ServerKind("bare", "bench.bare", bare=True)
KINDS = {kind.name: kind for kind in (BARE, BASELINE, SERVICE)}


@contextmanager
def store_endpoint(store: str) -> Iterator[str | None]:
    """DynamoDB Local's endpoint for ``store="dynamodb"`` (installed if missing,
    started here and stopped on exit); None for SQLite."""
    if store != "dynamodb":
        yield None
        return
    install()
    with DynamoDBLocal() as local:
        print(f"DynamoDB Local at {local.endpoint_url}", flush=True)
        yield local.endpoint_url


class ServerError(RuntimeError):
    """A server did not start."""


class Server:
    """One server process (the leader of its own process group)."""

    def __init__(
        self,
        kind: ServerKind,
        store: str,
        scratch: Path,
        *,
        endpoint_url: str | None = None,
        table_prefix: str = "",
        startup_timeout: float = 90.0,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        """``extra_env``: more environment variables for the server (e.g.
        ``DYNAMODB_SIMULATED_LATENCY_MS``)."""
        self.kind = kind
        self.store = store
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.endpoint_url = endpoint_url
        self.table_prefix = table_prefix
        self.log_path = scratch / f"{kind.name}-{self.port}.log"
        data_dir = scratch / f"data-{kind.name}-{self.port}"
        data_dir.mkdir(parents=True)
        env = {
            **os.environ,
            "STORE": store,
            "DATA_DIR": str(data_dir),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WORKERS": "1",
            "LOG_LEVEL": "WARNING",
            "ENVIRONMENT": "production",
        }
        if store == "dynamodb":
            assert endpoint_url is not None
            env |= {
                **LOCAL_CREDENTIALS,
                "AWS_REGION": LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
                "AWS_ENDPOINT_URL_DYNAMODB": endpoint_url,
                "DYNAMODB_TABLE_PREFIX": table_prefix,
            }
        env |= dict(extra_env or {})
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", kind.module],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_healthy(startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_until_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = f"{self.kind.name} exited with {self.process.returncode}: {self.log_tail()}"
                raise ServerError(msg)
            try:
                if httpx.get(f"{self.url}/health", timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        msg = f"{self.kind.name} did not answer GET /health in {timeout:.0f} s: {self.log_tail()}"
        raise ServerError(msg)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def peak_rss_kb(self) -> int:
        """Peak resident set (VmHWM) summed over the server's process group."""
        return self._group_status_kb("VmHWM:")

    def rss_kb(self) -> int:
        """Resident set now (VmRSS) summed over the server's process group."""
        return self._group_status_kb("VmRSS:")

    def _group_status_kb(self, field: str) -> int:
        total = 0
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                stat = (proc / "stat").read_text()
                group = int(stat.rsplit(")", 1)[1].split()[2])
                if group != self.process.pid:
                    continue
                for line in (proc / "status").read_text().splitlines():
                    if line.startswith(field):
                        total += int(line.split()[1])
            except (OSError, ValueError, IndexError):
                continue
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.store == "dynamodb" and self.endpoint_url and self.table_prefix:
            delete_tables(self.endpoint_url, self.table_prefix)


def delete_tables(endpoint_url: str, prefix: str) -> None:
    """Drops every table whose name starts with ``prefix`` (DynamoDB Local keeps them in memory)."""
    client = local_client(endpoint_url, timeout=30)
    try:
        names: list[str] = []
        start: dict[str, Any] = {}
        while True:
            page = client.list_tables(**start)
            names += page.get("TableNames", [])
            if "LastEvaluatedTableName" not in page:
                break
            start = {"ExclusiveStartTableName": page["LastEvaluatedTableName"]}
        for name in names:
            if name.startswith(prefix):
                client.delete_table(TableName=name)
    finally:
        client.close()
