"""Appends per second on the DynamoDB application recorder, with 1, 4 and 16
concurrent writer threads, each writer appending one event at a time to a
stream of its own.

Runs against AWS_ENDPOINT_URL_DYNAMODB if set (with the dummy credentials of
infra.devtools.dynamodb_local), else starts DynamoDB Local itself.

    python -m bench.dynamodb_appends [--seconds 5] [--threads 1 4 16]
    python -m bench.dynamodb_appends --latency-ms 10 20   # simulated round trips

Appends are conditional on their own stream only (no item is shared by all
writers, see README "DynamoDB"), so appends to different streams should scale
with writers until the store itself is the limit: on DynamoDB Local, its one
process on the same cores. "retries/append" counts transaction conflicts the
recorder retried. Each level first runs unmeasured for ``--warmup`` seconds,
so that DynamoDB Local's JIT compiler has done its work.

``--raw`` runs the same levels with the recorder left out: each writer sends
the same conditional PutItem itself, straight through boto3. That is the
store's own ceiling for these writes on this machine, beside which the
recorder's scaling is to be read.

``--latency-ms`` makes every DynamoDB call first wait that long, as a network
round trip would (``infra.devtools.simulated_latency``): a writer then waits
instead of computing, as on AWS, and scaling can show on this machine. For each
round trip the real recorder runs beside :class:`GlobalCounterAppends`, a naive
design whose appends all move one shared counter item on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from uuid import uuid4

from eventsourcing.persistence import StoredEvent

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.devtools.dynamodb_local import LOCAL_CREDENTIALS, DynamoDBLocal
from infra.dynamodb import (
    DynamoDBApplicationRecorder,
    DynamoDBDatastore,
    TableSpec,
    make_client,
)
from infra.dynamodb.layout import EVENT_PK, EVENT_SK, STATE, TOPIC

VARIANTS = ("recorder", "raw", "counter")


class GlobalCounterAppends:
    """A deliberately naive design, for comparison only (never the service's):
    every append takes the next number of one counter item shared by all
    writers, as a global sequence would. It reads the counter, then sends one
    transaction that moves the counter on, on condition that it still holds what
    was read, and puts the event; when another writer moved the counter first,
    it starts again from the read. Under a network round trip, writers then take
    turns on the counter: at most one append commits per round trip, however
    many writers there are.
    """

    KEY = "k"
    VALUE = "n"

    def __init__(self, datastore: DynamoDBDatastore, events_table_name: str) -> None:
        self.client = datastore.client
        self.events_table_name = events_table_name
        self.counter_table_name = datastore.table_name("global_counter")
        datastore.ensure_table(TableSpec(self.counter_table_name, self.KEY, "S"))
        self.retries = 0
        self._lock = threading.Lock()
        # A level's end (time.monotonic()): an append still retrying then gives
        # up (GaveUpError), so that one starved writer does not hold the level.
        self.give_up_at = float("inf")

    def append(self, stored: StoredEvent) -> None:
        counter_key: dict[str, Any] = {self.KEY: {"S": "sequence"}}
        while True:
            if time.monotonic() > self.give_up_at:
                raise GaveUpError
            found = self.client.get_item(
                TableName=self.counter_table_name, Key=counter_key, ConsistentRead=True
            ).get("Item")
            seen = int(found[self.VALUE]["N"]) if found else 0
            try:
                self.client.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": self.counter_table_name,
                                "Key": counter_key,
                                "UpdateExpression": "SET #n = :next",
                                # The design's point: the sequence moves on only
                                # from the value this append was decided on.
                                "ConditionExpression": "attribute_not_exists(#n) OR #n = :seen",
                                "ExpressionAttributeNames": {"#n": self.VALUE},
                                "ExpressionAttributeValues": {
                                    ":seen": {"N": str(seen)},
                                    ":next": {"N": str(seen + 1)},
                                },
                            }
                        },
                        {"Put": _event_put(self.events_table_name, stored)},
                    ]
                )
            except self.client.exceptions.TransactionCanceledException as e:
                reasons = e.response.get("CancellationReasons") or []
                counter = reasons[0].get("Code") if reasons else None
                if counter not in ("ConditionalCheckFailed", "TransactionConflict"):
                    raise
                with self._lock:
                    self.retries += 1
            else:
                return


class GaveUpError(Exception):
    """A measured level ended while this append was still being retried."""


def _event_put(table_name: str, stored: StoredEvent) -> Any:
    """The conditional put the recorder sends for a one-event append."""
    return {
        "TableName": table_name,
        "Item": {
            EVENT_PK: {"S": str(stored.originator_id)},
            EVENT_SK: {"N": str(stored.originator_version)},
            TOPIC: {"S": stored.topic},
            STATE: {"B": stored.state},
        },
        # A stream's version is written once only.
        "ConditionExpression": "attribute_not_exists(#oid)",
        "ExpressionAttributeNames": {"#oid": EVENT_PK},
    }


class Appends:
    """One variant's tables and client, measured at several numbers of writers.

    ``variant``: ``recorder`` (the service's DynamoDB application recorder,
    ``insert_events``), ``raw`` (the recorder's conditional PutItem sent straight
    through boto3) or ``counter`` (:class:`GlobalCounterAppends`).
    ``latency_ms``: the simulated round trip every call waits first
    (``infra.devtools.simulated_latency``; 0: none).
    """

    def __init__(
        self,
        endpoint_url: str,
        *,
        variant: str = "recorder",
        latency_ms: float = 0.0,
        max_threads: int = 16,
    ) -> None:
        if variant not in VARIANTS:
            msg = f"unknown variant {variant!r} (one of {', '.join(VARIANTS)})"
            raise ValueError(msg)
        self.variant = variant
        self.latency_ms = latency_ms
        client = make_client(
            endpoint_url=endpoint_url,
            region_name=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            max_pool_connections=max(10, 2 * max_threads),
            simulated_latency_ms=latency_ms,
        )
        self.datastore = DynamoDBDatastore(client, table_prefix=f"bench{uuid4().hex[:8]}_")
        self.recorder = DynamoDBApplicationRecorder(self.datastore)
        self.recorder.create_table()
        self.counter = (
            GlobalCounterAppends(self.datastore, self.recorder.events_table_name)
            if variant == "counter"
            else None
        )
        self.write = self._writer()
        # Warm up connections and the JVM's code paths.
        for _ in range(20):
            self.write(StoredEvent(uuid4(), 1, "bench.Event", b"{}"))

    def _writer(self) -> Callable[[StoredEvent], None]:
        if self.counter is not None:
            return self.counter.append
        if self.variant == "raw":
            client = self.datastore.client
            table = self.recorder.events_table_name

            def put(stored: StoredEvent) -> None:
                client.put_item(**_event_put(table, stored))

            return put
        recorder = self.recorder

        def append(stored: StoredEvent) -> None:
            recorder.insert_events([stored])

        return append

    def _retries(self) -> int:
        return self.counter.retries if self.counter is not None else self.recorder.append_retries

    def level(self, threads: int, seconds: float) -> dict[str, float]:
        """``threads`` writers for ``seconds``, each appending one event at a
        time to a stream of its own (version 1, 2, 3...)."""
        retries_before = self._retries()
        latencies: list[list[float]] = [[] for _ in range(threads)]
        errors: list[BaseException] = []
        start = threading.Barrier(threads + 1)
        deadline = 0.0
        write = self.write

        def writer(i: int) -> None:
            mine = latencies[i]
            stream = uuid4()
            start.wait()
            try:
                version = 0
                while time.monotonic() < deadline:
                    version += 1
                    t0 = time.perf_counter()
                    write(StoredEvent(stream, version, "bench.Event", b"{}"))
                    mine.append(time.perf_counter() - t0)
            except GaveUpError:
                pass  # not counted: it did not commit within the level
            except BaseException as e:  # report, don't hang the barrier
                errors.append(e)

        workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + seconds
        if self.counter is not None:
            self.counter.give_up_at = deadline
        started = time.perf_counter()
        start.wait()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - started
        if errors:
            raise errors[0]
        all_latencies = sorted(x for xs in latencies for x in xs)
        n = len(all_latencies)
        if n == 0:
            msg = f"no append committed in {elapsed:.1f} s by {threads} writer(s)"
            raise RuntimeError(msg)
        return {
            "threads": threads,
            "appends": n,
            "seconds": elapsed,
            "per_second": n / elapsed,
            "p50_ms": 1000 * statistics.median(all_latencies),
            "p95_ms": 1000 * all_latencies[int(0.95 * (n - 1))],
            "retries_per_append": (self._retries() - retries_before) / n,
            "latency_ms": self.latency_ms,
        }

    def close(self) -> None:
        self.datastore.close()


def run_level(
    endpoint_url: str,
    threads: int,
    seconds: float,
    warmup: float = 0.0,
    *,
    raw: bool = False,
    variant: str | None = None,
    latency_ms: float = 0.0,
) -> dict[str, float]:
    """One level on tables of its own, after ``warmup`` seconds unmeasured."""
    appends = Appends(
        endpoint_url,
        variant=variant or ("raw" if raw else "recorder"),
        latency_ms=latency_ms,
        max_threads=threads,
    )
    try:
        if warmup > 0:
            appends.level(threads, warmup)
        return appends.level(threads, seconds)
    finally:
        appends.close()


LATENCY_LEVELS = (10.0, 20.0)
LATENCY_THREADS = (1, 4, 16)


def latency_table(
    endpoint_url: str,
    *,
    latencies: Sequence[float] = LATENCY_LEVELS,
    threads: Sequence[int] = LATENCY_THREADS,
    seconds: float = 5.0,
    warmup: float = 1.0,
) -> list[dict[str, Any]]:
    """The real recorder beside the global counter, at each simulated round
    trip and number of writers: one row per (latency, writers), with both."""
    rows: list[dict[str, Any]] = []
    for latency in latencies:
        measured = {
            variant: [
                run_level(endpoint_url, n, seconds, warmup, variant=variant, latency_ms=latency)
                for n in threads
            ]
            for variant in ("recorder", "counter")
        }
        for i, n in enumerate(threads):
            rows.append(
                {
                    "latency_ms": latency,
                    "threads": n,
                    "recorder": measured["recorder"][i],
                    "counter": measured["counter"][i],
                    "recorder_x": measured["recorder"][i]["per_second"]
                    / (measured["recorder"][0]["per_second"] or 1.0),
                    "counter_x": measured["counter"][i]["per_second"]
                    / (measured["counter"][0]["per_second"] or 1.0),
                }
            )
    return rows


def latency_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The latency block of BENCHMARKS.md (see :func:`latency_table`)."""
    lines = [
        "Appends per second under a simulated network round trip (every DynamoDB call "
        "first sleeps 10 or 20 ms, `infra/devtools/simulated_latency.py`; "
        "`python -m bench.dynamodb_appends --latency-ms 10 20`): each writer appends to a "
        "stream of its own through the real recorder, beside a naive global-counter design "
        "(every append moves one shared counter item on, conditionally, in its transaction, "
        "and retries from a fresh read when another writer moved it first). A writer that "
        "waits leaves the cores to the others, as on AWS; the counter lets one append "
        "commit per round trip, whatever the number of writers.",
        "",
        "| round trip | writers | recorder appends/s | vs 1 writer | p50 ms "
        "| counter appends/s | vs 1 writer | counter retries/append |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rec, cnt = r["recorder"], r["counter"]
        lines.append(
            f"| {r['latency_ms']:g} ms | {r['threads']} | {rec['per_second']:.1f} | "
            f"x{r['recorder_x']:.2f} | {rec['p50_ms']:.1f} | {cnt['per_second']:.1f} | "
            f"x{r['counter_x']:.2f} | {cnt['retries_per_append']:.2f} |"
        )
    return "\n".join(lines)


def _print_levels(rows: Sequence[dict[str, float]]) -> None:
    print(
        f"{'threads':>7} {'appends':>8} {'appends/s':>10} {'p50 ms':>7} "
        f"{'p95 ms':>7} {'retries/append':>15} {'baseline: 1 thread':>19}"
    )
    baseline = rows[0]["per_second"] if rows else 0.0
    for r in rows:
        print(
            f"{r['threads']:>7.0f} {r['appends']:>8.0f} {r['per_second']:>10.1f} "
            f"{r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} {r['retries_per_append']:>15.2f} "
            f"{baseline:>10.1f} (x{r['per_second'] / baseline if baseline else 0:.2f})"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--raw", action="store_true", help="PutItem straight, no recorder")
    parser.add_argument(
        "--latency-ms",
        type=float,
        nargs="+",
        default=None,
        metavar="MS",
        help="simulated round trip per call: the recorder beside the global counter, per MS",
    )
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        endpoint_url = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
        where = "AWS_ENDPOINT_URL_DYNAMODB"
        if not endpoint_url:
            endpoint_url = stack.enter_context(DynamoDBLocal()).endpoint_url
            where = "DynamoDB Local started by this script"
        print(f"Endpoint: {endpoint_url} ({where}); {args.seconds:g} s per level")
        if args.latency_ms:
            table = latency_table(
                endpoint_url,
                latencies=args.latency_ms,
                threads=args.threads,
                seconds=args.seconds,
                warmup=args.warmup,
            )
            print()
            print(latency_markdown(table))
            return
        rows = [
            run_level(endpoint_url, t, args.seconds, args.warmup, raw=args.raw)
            for t in args.threads
        ]
    print()
    _print_levels(rows)


if __name__ == "__main__":
    main()
