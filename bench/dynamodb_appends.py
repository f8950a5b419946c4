"""Appends per second on the DynamoDB application recorder, with 1, 4 and 16
concurrent writer threads, each append being one event to its own new stream.

Runs against AWS_ENDPOINT_URL_DYNAMODB if set (with the dummy credentials of
infra.devtools.dynamodb_local), else starts DynamoDB Local itself.

    python -m bench.dynamodb_appends [--seconds 5] [--threads 1 4 16]

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
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from uuid import uuid4

from eventsourcing.persistence import StoredEvent

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.devtools.dynamodb_local import LOCAL_CREDENTIALS, DynamoDBLocal
from infra.dynamodb import (
    DynamoDBApplicationRecorder,
    DynamoDBDatastore,
    make_client,
)
from infra.dynamodb.layout import EVENT_PK, EVENT_SK, STATE, TOPIC


def run_level(
    endpoint_url: str, threads: int, seconds: float, warmup: float = 0.0, *, raw: bool = False
) -> dict[str, float]:
    if warmup > 0:
        run_level(endpoint_url, threads, warmup, raw=raw)
    client = make_client(
        endpoint_url=endpoint_url,
        region_name=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        max_pool_connections=max(10, 2 * threads),
    )
    datastore = DynamoDBDatastore(client, table_prefix=f"bench{uuid4().hex[:8]}_")
    recorder = DynamoDBApplicationRecorder(datastore)
    recorder.create_table()
    # Warm up connections and the JVM's code paths.
    for _ in range(20):
        recorder.insert_events([StoredEvent(uuid4(), 1, "bench.Event", b"{}")])
    recorder.append_retries = 0

    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)
    deadline = 0.0

    def append() -> None:
        recorder.insert_events([StoredEvent(uuid4(), 1, "bench.Event", b"{}")])

    def put() -> None:  # what the recorder sends for such an append, sent directly
        client.put_item(
            TableName=recorder.events_table_name,
            Item={
                EVENT_PK: {"S": str(uuid4())},
                EVENT_SK: {"N": "1"},
                TOPIC: {"S": "bench.Event"},
                STATE: {"B": b"{}"},
            },
            ConditionExpression="attribute_not_exists(#oid)",
            ExpressionAttributeNames={"#oid": EVENT_PK},
        )

    write = put if raw else append

    def writer(i: int) -> None:
        mine = latencies[i]
        start.wait()
        try:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                write()
                mine.append(time.perf_counter() - t0)
        except BaseException as e:  # report, don't hang the barrier
            errors.append(e)

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + seconds
    started = time.perf_counter()
    start.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    datastore.close()
    if errors:
        raise errors[0]
    all_latencies = sorted(x for xs in latencies for x in xs)
    n = len(all_latencies)
    return {
        "threads": threads,
        "appends": n,
        "seconds": elapsed,
        "per_second": n / elapsed,
        "p50_ms": 1000 * statistics.median(all_latencies),
        "p95_ms": 1000 * all_latencies[int(0.95 * (n - 1))],
        "retries_per_append": recorder.append_retries / n,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--raw", action="store_true", help="PutItem straight, no recorder")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        endpoint_url = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
        where = "AWS_ENDPOINT_URL_DYNAMODB"
        if not endpoint_url:
            endpoint_url = stack.enter_context(DynamoDBLocal()).endpoint_url
            where = "DynamoDB Local started by this script"
        print(f"Endpoint: {endpoint_url} ({where}); {args.seconds:g} s per level")
        rows = [
            run_level(endpoint_url, t, args.seconds, args.warmup, raw=args.raw)
            for t in args.threads
        ]
    print()
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


if __name__ == "__main__":
    main()
