"""``python -m bench``: the service beside a state-based twin and a bare endpoint.

For each store (SQLite, then DynamoDB Local, which this command starts itself
with ``infra.devtools.dynamodb_local``), each scenario (spread, hot, churn, reads) runs
against three servers, one process each: the service, the state-based baseline
(``bench/baseline/``) and the bare endpoint (``bench/bare.py``). Every run
checks its own results; the command prints one table of medians per store
(on DynamoDB also the capacity units per command, ``bench.dynamodb_capacity``)
and exits 1 when any check failed or a server did not start.

Options (or environment variables, for ``make bench``):

- ``--runs N`` / ``BENCH_RUNS``: interleaved runs per scenario and server (3);
- ``--quick`` / ``BENCH_QUICK=1``: smaller sizes and 1 run by default, a smoke pass;
- ``--stores`` / ``BENCH_STORES``: ``sqlite``, ``dynamodb`` or both (default);
- ``--scenarios`` / ``BENCH_SCENARIOS``, ``--servers`` / ``BENCH_SERVERS``: subsets;
- ``--write PATH``: also write the tables, machine and command as Markdown.

On DynamoDB, with the service and the state-based server, it also runs
``python -m bench.latency`` (both servers with every DynamoDB call delayed as a
network round trip would delay it, and the recorder beside a global counter
under the same delays; ``BENCH_LATENCY=0`` leaves that out).

Run on their own: ``python -m bench.dynamodb_capacity`` (the per-command
table alone) and ``python -m bench.dynamodb_appends`` (appends/s by 1, 4 and 16 writer
threads, each to streams of its own; ``--raw``: the same PutItem alone) and
``python -m bench.audit`` (time travel, history, verify and rebuild rates over
one 100,000-event stream, on SQLite).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from bench import (
    dynamodb_appends,
    dynamodb_capacity,
    dynamodb_census,
    dynamodb_model,
    latency,
)
from bench.feed_lag import FeedWatch
from bench.load import Outcome, Sizes, run_scenario
from bench.metrics_check import Comparison, MetricsWatch
from bench.metrics_check import section as metrics_section
from bench.report import STORE_TITLES, Result, failures, keep_sections, markdown, text_table
from bench.servers import BASELINE, KINDS, Server, ServerError, store_endpoint
from infra.devtools.dynamodb_local import DynamoDBLocal

STORES = ("sqlite", "dynamodb")
SCENARIOS = ("spread", "hot", "churn", "reads")
SERVERS = ("service", "state-based", "bare")

# DynamoDB Local answers tens to a few hundred requests per second (the
# service, which writes its events and then its read tables, about 15-40), so
# its scenarios are smaller: the default `make bench` stays under 20 minutes.
SIZES = {
    "sqlite": Sizes(),
    "dynamodb": Sizes(
        spread_registrations=600,
        spread_events=30,
        hot_capacity=150,
        hot_registrants=600,
        churn_ops=400,
        reads_ops=1_500,
        reads_events=20,
        reads_users=150,
        reads_prefill=300,
    ),
}
QUICK_SIZES = {
    "sqlite": Sizes(
        spread_registrations=400,
        spread_events=20,
        hot_capacity=100,
        hot_registrants=400,
        churn_ops=400,
        reads_ops=1_000,
        reads_events=20,
        reads_users=100,
        reads_prefill=200,
        bare_warmup=100,
    ),
    "dynamodb": Sizes(
        spread_registrations=200,
        spread_events=10,
        hot_capacity=50,
        hot_registrants=200,
        churn_ops=150,
        reads_ops=400,
        reads_events=10,
        reads_users=60,
        reads_prefill=100,
        bare_warmup=100,
    ),
}
# The ordered feed's lag under each DynamoDB scenario (service runs only).
FEED_LAGS: list[tuple[str, dict[str, float]]] = []
# Each service run's requests as sent and as GET /metrics counted them.
METRICS_COUNTS: list[tuple[str, str, int, Comparison]] = []

WARM_UP = Sizes(spread_registrations=200, spread_events=10, hot_capacity=50, hot_registrants=200)


def _env_list(name: str, default: Sequence[str]) -> list[str]:
    value = os.environ.get(name, "").replace(",", " ").split()
    return value or list(default)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(__doc__ or "").split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    quick_default = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    parser.add_argument(
        "--quick",
        action="store_true",
        default=quick_default,
        help="smaller sizes, 1 run unless --runs (env BENCH_QUICK=1)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=int(os.environ["BENCH_RUNS"]) if "BENCH_RUNS" in os.environ else None,
        help="interleaved runs per scenario and server (env BENCH_RUNS; default 3)",
    )
    parser.add_argument(
        "--stores",
        nargs="+",
        choices=STORES,
        default=_env_list("BENCH_STORES", STORES),
        help="env BENCH_STORES",
    )
    parser.add_argument(
        "--scenarios", nargs="+", choices=SCENARIOS, default=_env_list("BENCH_SCENARIOS", SCENARIOS)
    )
    parser.add_argument(
        "--servers", nargs="+", choices=SERVERS, default=_env_list("BENCH_SERVERS", SERVERS)
    )
    parser.add_argument(
        "--write", type=Path, default=None, metavar="PATH", help="also write Markdown to PATH"
    )
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    for name, allowed in (("stores", STORES), ("scenarios", SCENARIOS), ("servers", SERVERS)):
        wrong = set(getattr(args, name)) - set(allowed)
        if wrong:
            parser.error(f"unknown {name}: {', '.join(sorted(wrong))}")
    return args


def _run_one(
    store: str,
    scenario: str,
    server_name: str,
    run: int,
    sizes: Sizes,
    scratch: Path,
    endpoint_url: str | None,
) -> Result:
    kind = KINDS[server_name]
    run_id = f"r{run}{uuid.uuid4().hex[:6]}"
    try:
        server = Server(
            kind,
            store,
            scratch,
            endpoint_url=endpoint_url,
            table_prefix=f"bench-{run_id}-{kind.name}-",
        )
    except ServerError as e:
        outcome = Outcome(scenario)
        outcome.check("server_started", False, str(e))
        return Result(store, scenario, server_name, run, outcome)
    metrics: MetricsWatch | None = None
    try:
        try:
            if server_name == "service":
                metrics = MetricsWatch(server.url)
            watch = (
                FeedWatch(server.url, event_hooks=metrics.tally.hooks())
                if store == "dynamodb" and metrics is not None
                else None
            )
            if watch is not None:
                watch.start()
            outcome = run_scenario(
                server.url,
                scenario,
                sizes,
                run_id,
                bare=kind.bare,
                capacity_probe=kind.probe(store),
                event_hooks=None if metrics is None else metrics.tally.async_hooks(),
            )
            if watch is not None:
                FEED_LAGS.append((scenario, watch.finish()))
            if metrics is not None:
                counts = metrics.finish()
                METRICS_COUNTS.append((store, scenario, run, counts))
                print(f"    /metrics: {counts.summary()}", flush=True)
                outcome.check("metrics_count_the_requests_sent", counts.ok, counts.summary())
        except Exception as e:  # reported as a failed run; the others go on
            outcome = Outcome(scenario)
            outcome.check("run_completed", False, f"{type(e).__name__}: {e}")
        rss_kb = server.peak_rss_kb()
        if server.process.poll() is not None:
            outcome.check("server_survived", False, server.log_tail())
    finally:
        if metrics is not None:
            metrics.close()
        server.stop()
    return Result(store, scenario, server_name, run, outcome, rss_kb)


def _feed_lag_section() -> str:
    lines = [
        "The ordered feed behind the service's writes (its stream indexer, polled from "
        "`GET /health` every 0.1 s during each run; worst over the runs): records written but "
        "not yet indexed, the age of the oldest of them, and how long after the last answered "
        "request the feed held every event (`drain`).",
        "",
        "| scenario | runs | most pending records | oldest pending, s | drain after load, s |",
        "|---|---|---|---|---|",
    ]
    for scenario in SCENARIOS:
        lags = [lag for name, lag in FEED_LAGS if name == scenario]
        if lags:
            lines.append(
                f"| {scenario} | {len(lags)} | {max(x['max_pending'] for x in lags):.0f} | "
                f"{max(x['max_oldest_s'] for x in lags):.2f} | "
                f"{max(x['drain_s'] for x in lags):.2f} |"
            )
    return "\n".join(lines)


def _appends_section(levels: Sequence[dict[str, float]], raw: Sequence[dict[str, float]]) -> str:
    one = levels[0]["per_second"] or 1.0
    raw_one = raw[0]["per_second"] or 1.0
    lines = [
        "Appends per second by concurrent writers, each append one event to a new stream of "
        "its own (`python -m bench.dynamodb_appends`, 5 s per level after 2 s of warm-up, "
        "recorder only, no HTTP), beside the same conditional PutItem sent straight through "
        "boto3 (`--raw`): the store's own ceiling for these writes on this machine:",
        "",
        "| writers | appends/s | vs 1 writer | p50 ms | p95 ms | retries/append "
        "| raw PutItem/s | raw vs 1 writer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r, bare in zip(levels, raw, strict=True):
        lines.append(
            f"| {r['threads']:.0f} | {r['per_second']:.1f} | x{r['per_second'] / one:.2f} | "
            f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['retries_per_append']:.2f} | "
            f"{bare['per_second']:.1f} | x{bare['per_second'] / raw_one:.2f} |"
        )
    return "\n".join(lines)


def _latency_section(quick: bool) -> tuple[str | None, list[str]]:
    """The servers and the recorder under a simulated network round trip
    (``bench.latency``, ``bench.dynamodb_appends``), each on fresh DynamoDB
    Locals: the section for BENCHMARKS.md and the failed checks. Off with
    BENCH_LATENCY=0; runs per case: BENCH_LATENCY_RUNS (1)."""
    if os.environ.get("BENCH_LATENCY", "1") == "0":
        return None, []
    runs = int(os.environ.get("BENCH_LATENCY_RUNS", "1"))
    sizes = latency.QUICK_SIZES if quick else latency.SIZES
    print("\nUnder a simulated network round trip (bench.latency)", flush=True)
    measured = latency.measure(sizes, runs)
    problems = latency.failures(measured)
    appends: str | None = None
    try:
        with DynamoDBLocal() as local:
            rows = dynamodb_appends.latency_table(local.endpoint_url, seconds=2.0 if quick else 5.0)
    except Exception as e:
        problems.append(f"dynamodb appends under latency: {type(e).__name__}: {e}")
    else:
        appends = dynamodb_appends.latency_markdown(rows)
    section = latency.section(measured, sizes, runs, appends)
    print("\n" + section, flush=True)
    return section, problems


def _progress(result: Result, runs: int) -> None:
    o = result.outcome
    p50, p99 = o.percentile_ms(50), o.percentile_ms(99)
    units = ""
    if o.wcu is not None and o.rcu is not None and o.requests:
        units = f"  {o.wcu / o.requests:.2f} WCU {o.rcu / o.requests:.2f} RCU per req"
    timing = (
        f"{o.throughput:8.1f} req/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
        f"RSS {result.rss_kb / 1024:4.0f} MB{units}"
        if p50 is not None and p99 is not None
        else "no measurement"
    )
    verdict = "ok" if result.ok else "FAILED: " + ", ".join(f["check"] for f in o.failures)
    print(
        f"  [{STORE_TITLES[result.store]} run {result.run}/{runs}] {result.scenario:<6} "
        f"{result.server:<11} {timing}  {verdict}",
        flush=True,
    )
    for failure in o.failures:
        print(f"    {failure['check']}: {str(failure.get('detail'))[:600]}", file=sys.stderr)


def _warm_up(store: str, scratch: Path, endpoint_url: str | None) -> None:
    """One small untimed pass against the baseline: warms DynamoDB Local's JVM."""
    for scenario in ("spread", "hot"):
        result = _run_one(store, scenario, BASELINE.name, 0, WARM_UP, scratch, endpoint_url)
        if not result.ok:
            print(f"  warm-up {scenario} failed: {failures([result])}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    stores = [s for s in STORES if s in args.stores]
    scenarios = [s for s in SCENARIOS if s in args.scenarios]
    servers = [s for s in SERVERS if s in args.servers]
    started = time.monotonic()
    load_before = os.getloadavg()
    results: list[Result] = []
    capacity_table: str | None = None
    dynamodb_sections: list[str] = []
    extra_failures: list[str] = []
    for store in stores:
        print(f"{STORE_TITLES[store]}: {args.runs} run(s) of {', '.join(scenarios)}", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            scratch = Path(tmp)
            for run in range(1, args.runs + 1):
                for scenario in scenarios:
                    # Each round of servers gets a fresh DynamoDB Local, warmed
                    # up: one instance slows down as the tables, streams and
                    # stream records of earlier runs pile up in it (measured:
                    # the service's spread fell from 44 to 7 req/s by the third
                    # run), which would make the order of runs decide the result.
                    with store_endpoint(store) as endpoint:
                        if store == "dynamodb":
                            _warm_up(store, scratch, endpoint)
                        shift = (run - 1) % len(servers)
                        for server in servers[shift:] + servers[:shift]:
                            if server == "bare" and scenario in ("churn", "reads"):
                                continue  # no state to churn or read
                            result = _run_one(
                                store, scenario, server, run, sizes[store], scratch, endpoint
                            )
                            results.append(result)
                            _progress(result, args.runs)
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp, store_endpoint(store) as endpoint:
            scratch = Path(tmp)
            if store == "dynamodb" and {"service", "state-based"} <= set(servers):
                try:
                    measured = dynamodb_capacity.measure_both(endpoint or "")
                    hot = dynamodb_capacity.measure_hot(endpoint or "")
                except (ServerError, RuntimeError, OSError) as e:
                    extra_failures.append(f"dynamodb capacity per command: {e}")
                else:
                    capacity_table = "\n\n".join(
                        (
                            dynamodb_capacity.caption(),
                            dynamodb_capacity.table(measured, True),
                            dynamodb_capacity.hot_line(hot),
                        )
                    )
                    print("\n" + dynamodb_capacity.caption())
                    print(dynamodb_capacity.table(measured), flush=True)
                    print(dynamodb_capacity.hot_line(hot), flush=True)
            if store == "dynamodb" and "service" in servers:
                if FEED_LAGS:
                    dynamodb_sections.append(_feed_lag_section())
                    print("\n" + dynamodb_sections[-1], flush=True)
                try:
                    levels, raw = (
                        [
                            dynamodb_appends.run_level(endpoint or "", n, 5.0, 2.0, raw=raw)
                            for n in (1, 4, 16)
                        ]
                        for raw in (False, True)
                    )
                except Exception as e:
                    extra_failures.append(f"dynamodb appends by writers: {type(e).__name__}: {e}")
                else:
                    dynamodb_sections.append(_appends_section(levels, raw))
                    print("\n" + dynamodb_sections[-1], flush=True)
                try:
                    workload = dynamodb_census.Workload()
                    found = dynamodb_census.census(
                        dynamodb_census.run_service(endpoint or "", workload), workload
                    )
                except (ServerError, RuntimeError, OSError) as e:
                    extra_failures.append(f"dynamodb census: {e}")
                else:
                    model = dynamodb_model.build(dynamodb_model.census_from_json(found))
                    dynamodb_sections.append(dynamodb_census.markdown(found))
                    dynamodb_sections.append(dynamodb_model.section(model))
                    print("\n" + "\n\n".join(dynamodb_sections[-2:]), flush=True)
            if store == "dynamodb" and {"service", "state-based"} <= set(servers):
                latency_section, latency_problems = _latency_section(args.quick)
                if latency_section:
                    dynamodb_sections.append(latency_section)
                extra_failures.extend(latency_problems)
        print(f"\n{STORE_TITLES[store]} (medians of {args.runs} run(s))\n")
        print(text_table(results, store), "\n", flush=True)
    elapsed = time.monotonic() - started
    print(f"Total time: {elapsed / 60:.1f} min")
    problems = failures(results) + extra_failures
    if args.write is not None:
        command = "make bench" if argv is None and os.environ.get("MAKELEVEL") else None
        shown = command or "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
        settings = " ".join(
            f"{k}={os.environ[k]}"
            for k in (
                "BENCH_RUNS",
                "BENCH_QUICK",
                "BENCH_STORES",
                "BENCH_SCENARIOS",
                "BENCH_SERVERS",
            )
            if k in os.environ
        )
        shown = f"{settings} {shown}".strip()
        previous = args.write.read_text() if args.write.exists() else ""
        args.write.write_text(
            keep_sections(
                previous,
                markdown(
                    results,
                    stores,
                    sizes,
                    args.runs,
                    shown,
                    elapsed,
                    capacity_table,
                    problems,
                    load_before,
                    dynamodb_sections,
                    metrics_section(METRICS_COUNTS) if METRICS_COUNTS else None,
                ),
            )
        )
        print(f"Wrote {args.write}")
    if problems:
        print(f"\n{len(problems)} failed check(s):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
