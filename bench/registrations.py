"""Registration benchmarks, printed beside their baselines.

1. Registrations per second through HTTP (real uvicorn processes, embedded
   SQLite store), 1 worker versus 2 workers, spread over many events and on
   one hot event. Baseline: the same load with 1 worker.
2. Decision time for one registration with 10 versus 100,000 confirmed
   registrations already in the event. Baseline: the same decision with
   snapshots turned off, which replays the event's whole stream.

    python -m bench.registrations [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from domain.model import Gathering, User
from infra.service import StoredRegistrationService
from tests.servers import running_server


def _http_rate(workers: int, registrations: int, events: int, clients: int) -> float:
    with (
        tempfile.TemporaryDirectory() as scratch,
        running_server(Path(scratch) / "data", workers=workers) as url,
    ):
        limits = httpx.Limits(max_connections=clients)
        with httpx.Client(base_url=url, timeout=60, limits=limits) as http:
            event_ids = [f"bench-{n}" for n in range(events)]
            for event_id in event_ids:
                http.post(
                    "/events",
                    json={
                        "eventId": event_id,
                        "title": "Bench",
                        "date": "2025-01-01",
                        "capacity": registrations,
                        "waitlistEnabled": True,
                    },
                ).raise_for_status()
            users = [f"user-{n}" for n in range(registrations)]
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(lambda u: http.post("/users", json={"userId": u, "name": u}), users))

            def register(n: int) -> int:
                response = http.post(
                    f"/users/{users[n]}/registrations",
                    json={"eventId": event_ids[n % events]},
                )
                return response.status_code

            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                codes = list(pool.map(register, range(registrations)))
            elapsed = time.perf_counter() - started
    failed = sum(code != 201 for code in codes)
    if failed:
        print(f"  ({failed} registrations did not answer 201)")
    return registrations / elapsed


def _service(path: Path, snapshots: bool) -> StoredRegistrationService:
    class Service(StoredRegistrationService):
        snapshotting_intervals = (
            StoredRegistrationService.snapshotting_intervals if snapshots else {}
        )

    return Service(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)})


def _seed(service: StoredRegistrationService, confirmed: int) -> None:
    gathering = Gathering(
        gathering_id="big",
        title="Big",
        description="",
        date="2025-01-01",
        location=None,
        organizer=None,
        status="active",
        capacity=confirmed + 1_000,
        waitlist_enabled=True,
    )
    for n in range(confirmed):
        gathering.take_seat(user_id=f"seated-{n}")
        if len(gathering.pending_events) >= 2_000:
            service.save(gathering)
    service.save(gathering)
    if service.snapshots is not None:
        service.take_snapshot(gathering.id)
    for n in range(50):
        service.save(User(user_id=f"new-{n}", name="New"))


def _decision_ms(confirmed: int, snapshots: bool, repeats: int) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        service = _service(Path(scratch) / "events.sqlite3", snapshots)
        _seed(service, confirmed)
        timings = []
        for n in range(repeats):
            started = time.perf_counter()
            service.register(f"new-{n}", "big")
            timings.append((time.perf_counter() - started) * 1000)
        service.close()
    return statistics.median(timings)


def _row(label: str, value: float, baseline: float, unit: str) -> None:
    ratio = value / baseline if baseline else float("nan")
    print(
        f"  {label:<44} {value:>10.1f} {unit:<6} baseline {baseline:>10.1f} {unit:<6} x{ratio:.2f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.registrations", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller loads, for a smoke run")
    args = parser.parse_args(argv)
    registrations = 300 if args.quick else 2_000
    big = 10_000 if args.quick else 100_000
    repeats = 5 if args.quick else 20

    print("Registrations per second through HTTP (SQLite store, 32 concurrent clients)")
    spread_1 = _http_rate(1, registrations, events=50, clients=32)
    spread_2 = _http_rate(2, registrations, events=50, clients=32)
    _row("2 workers, 50 events (baseline: 1 worker)", spread_2, spread_1, "reg/s")
    hot_1 = _http_rate(1, registrations, events=1, clients=32)
    hot_2 = _http_rate(2, registrations, events=1, clients=32)
    _row("2 workers, one hot event (baseline: 1 worker)", hot_2, hot_1, "reg/s")

    print("Decision time for one registration, median (baseline: snapshots off)")
    measure: Callable[..., Any] = _decision_ms
    for confirmed in (10, big):
        with_snapshots = measure(confirmed, True, repeats)
        replaying = measure(confirmed, False, repeats)
        _row(f"{confirmed:,} confirmed already", with_snapshots, replaying, "ms")


if __name__ == "__main__":
    main()
