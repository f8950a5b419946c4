"""``python -m bench.audit``: what auditors and admins wait for, on the embedded store.

One gathering's stream is given ``--events`` events (100,000 by default:
capacity changes, sealed and appended in commits of 500, as the service
stores them), then it measures, median of ``--repeat`` tries each:

- time travel to version 10 and to the last version (the whole stream replayed
  through the fold), and an event history page at the start and at the end;
- verify (every chain recomputed) over the whole log;
- a zero-downtime rebuild of the read tables (the fold over the whole log into
  new tables, then the switch) while a thread keeps appending (the latency of
  its appends: what the rebuild costs writers), beside the raw
  read rate of the same notifications (pages of 500, no decoding).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from eventsourcing.domain import Aggregate

from domain.application import GatheringSpec
from domain.model import Gathering
from infra.logs import configure_logging
from infra.settings import Settings
from infra.wiring import Container, build_container
from projections.fold import InlineChanges
from projections.time_travel import Moment

COMMIT = 500


def _seed(container: Container, events: int) -> str:
    service = container.service
    service.create_gathering(GatheringSpec("long", "Long", "2030-01-01", 1))
    gathering: Gathering = service.get_gathering("long")
    meta: dict[str, str | None] = {"requestId": "bench", "actor": "bench"}
    while gathering.version < events:
        for n in range(min(COMMIT, events - gathering.version)):
            gathering.resize(2 + n % 50)
        pending = cast("list[Aggregate.Event]", gathering.collect_events())
        stored, digests = service.mapper.seal(pending, [meta] * len(pending))
        service.recorder.insert_events(
            stored, inline=InlineChanges(tuple(pending), {gathering.id: "long"})
        )
        service.mapper.remember(digests)
    return "long"


def _median_ms(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(events: int, repeat: int) -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(store="sqlite", data_dir=Path(scratch), environment="test")
        container = build_container(settings)
        container.start()
        try:
            seeded = time.perf_counter()
            event_id = _seed(container, events)
            seeding = time.perf_counter() - seeded
            recorder = container.service.recorder
            head = recorder.max_notification_id() or 0
            travel = container.time_travel
            early = _median_ms(lambda: travel.event(event_id, Moment(version=10)), repeat)
            latest = _median_ms(lambda: travel.event(event_id, Moment()), repeat)
            rows: list[tuple[str, str]] = [
                ("events in the stream (log head)", f"{head:,}"),
                ("seeding, sealed appends", f"{head / seeding:,.0f} events/s"),
                ("time travel to version 10", f"{early:.1f} ms"),
                (f"time travel to version {head:,} (whole stream)", f"{latest:.0f} ms"),
            ]
            history = container.history
            first = _median_ms(lambda: history.of_event(event_id, 50, None), repeat)
            rows.append(("event history, first page of 50", f"{first:.1f} ms"))
            started = time.perf_counter()
            check = container.audit.verify()
            verifying = time.perf_counter() - started
            rows.append(("verify, whole log", f"{check.checked / verifying:,.0f} events/s"))

            def read_raw() -> int:
                position, count = 0, 0
                while True:
                    page = recorder.select_notifications(start=position + 1, limit=500)
                    if not page:
                        return count
                    count += len(page)
                    position = page[-1].id

            started = time.perf_counter()
            read = read_raw()
            raw = read / (time.perf_counter() - started)
            rebuilder = container.rebuilder
            stop = threading.Event()
            waits: list[float] = []

            def keep_writing() -> None:
                """Appends go on during the rebuild (new users, one command each)."""
                n = 0
                while not stop.is_set():
                    began = time.perf_counter()
                    container.service.create_user(f"during-{n}", "During")
                    waits.append(time.perf_counter() - began)
                    n += 1

            writer = threading.Thread(target=keep_writing)
            writer.start()
            started = time.perf_counter()
            try:
                rebuilder.begin()
                rebuilder.run()
            finally:
                rebuilt = head / (time.perf_counter() - started)
                stop.set()
                writer.join()
            waits.sort()
            rows.append(("raw read of the log (pages of 500)", f"{raw:,.0f} events/s"))
            rows.append(
                ("rebuild into new tables, switch (writes going on)", f"{rebuilt:,.0f} events/s")
            )
            rows.append(
                (
                    f"latency of the {len(waits):,} appends meanwhile: median / max",
                    f"{waits[len(waits) // 2] * 1000:.1f} / {waits[-1] * 1000:.1f} ms",
                )
            )
            return rows
        finally:
            container.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    rows = measure(args.events, args.repeat)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
