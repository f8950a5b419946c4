"""``python -m bench.latency``: the servers over HTTP on DynamoDB Local, every
DynamoDB call delayed as a network round trip would delay it.

DynamoDB Local answers from the same cores as its clients, so there a request
costs CPU but no waiting, and adding clients cannot show scaling. With every
DynamoDB call first sleeping ``DYNAMODB_SIMULATED_LATENCY_MS``
(``infra.devtools.simulated_latency``; the service's setting of that name, and
the same variable for the state-based baseline), a request waits as on AWS and
designs separate by how many round trips their requests take in turn:

- **spread** at 20 ms per call: registrations over 40 events, by 1 client and by
  16 clients, for the service and the state-based baseline. Target: the
  service's 16 clients reach at least 4x the req/s of its one client.
- **hot** at 10 ms per call: one event with a waitlist, more registrants than
  seats (exact FIFO checked by ``bench.load``), for both servers. Target: the
  service at least 2x the baseline's req/s (its group commit pays one round trip
  for many commands; the baseline pays one or more per request).

With ``--without-delay``, also spread (16 clients) and hot with no simulated
delay, both servers (target: the service at least 1x the baseline's req/s).

Every server run gets a fresh DynamoDB Local, warmed up untimed by a small run
of the baseline without delay. Options: ``--runs N`` (medians; default 1),
``--quick`` (smaller sizes), ``--write PATH`` (replace this command's section of
the Markdown file PATH, e.g. BENCHMARKS.md, keeping the rest). Exit status 1
when a check failed or a server did not start; a target not reached is
reported, not a failure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.load import Outcome, Sizes, run_scenario
from bench.report import code_version, machine
from bench.servers import BASELINE, SERVICE, Server, ServerError, ServerKind
from infra.devtools.dynamodb_local import DynamoDBLocal, install
from infra.devtools.simulated_latency import ENV_VAR

HEADING = "## DynamoDB Local under a simulated network round trip"

SPREAD_LATENCY_MS = 20.0
HOT_LATENCY_MS = 10.0
SPREAD_CLIENTS = (1, 16)
SPREAD_TARGET = 4.0  # the service's 16 clients over its 1 client
HOT_TARGET = 2.0  # the service over the state-based baseline
UNDELAYED_TARGET = 1.0  # without delay, the service over the baseline (spread and hot)

SIZES = Sizes(
    spread_registrations=320,
    spread_events=40,
    hot_capacity=150,
    hot_registrants=600,
    hot_clients=64,
    setup_clients=16,
)
QUICK_SIZES = replace(
    SIZES, spread_registrations=120, hot_capacity=50, hot_registrants=200, hot_clients=32
)
WARM_UP = Sizes(spread_registrations=200, spread_events=10, hot_capacity=50, hot_registrants=200)


@dataclass(frozen=True)
class Case:
    scenario: str
    latency_ms: float
    server: ServerKind
    clients: int

    @property
    def label(self) -> str:
        return f"{self.scenario} {self.latency_ms:g} ms {self.server.name} c={self.clients}"


@dataclass
class Measured:
    case: Case
    outcome: Outcome
    # CPU seconds per timed request: DynamoDB Local's JVM and the server process.
    engine_cpu: float | None = None
    server_cpu: float | None = None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuProbe:
    """Reads the CPU time of the engine and the server when ``bench.load`` starts
    and ends its timed phase (it calls a capacity probe exactly then)."""

    def __init__(self, engine_pid: int | None, server_pid: int) -> None:
        self.pids = (engine_pid, server_pid)
        self.readings: list[tuple[float | None, float | None]] = []

    async def __call__(self, _: httpx.AsyncClient) -> tuple[float, float] | None:
        engine, server = self.pids
        self.readings.append((cpu_seconds(engine) if engine else None, cpu_seconds(server)))
        return None  # no capacity units: this probe only times the CPU

    def per_request(self, requests: int) -> tuple[float | None, float | None]:
        if len(self.readings) != 2 or not requests:
            return None, None
        (e0, s0), (e1, s1) = self.readings
        engine = (e1 - e0) / requests if e0 is not None and e1 is not None else None
        server = (s1 - s0) / requests if s0 is not None and s1 is not None else None
        return engine, server


def cases(sizes: Sizes, *, without_delay: bool = False) -> list[Case]:
    """The cases under delay; ``without_delay``: also spread (16 clients) and hot
    with no simulated round trip, for both servers."""
    spread = [
        Case("spread", SPREAD_LATENCY_MS, server, clients)
        for server in (SERVICE, BASELINE)
        for clients in SPREAD_CLIENTS
    ]
    hot = [Case("hot", HOT_LATENCY_MS, server, sizes.hot_clients) for server in (SERVICE, BASELINE)]
    undelayed = [
        Case("spread", 0.0, server, SPREAD_CLIENTS[-1]) for server in (SERVICE, BASELINE)
    ] + [Case("hot", 0.0, server, sizes.hot_clients) for server in (SERVICE, BASELINE)]
    return spread + hot + (undelayed if without_delay else [])


def _sizes(case: Case, sizes: Sizes) -> Sizes:
    if case.scenario == "spread":
        return replace(sizes, spread_clients=case.clients)
    return sizes


def _warm_up(endpoint_url: str, scratch: Path) -> None:
    """Warms DynamoDB Local's JVM with a small untimed baseline run, no delay."""
    for scenario in ("spread", "hot"):
        server = Server(
            BASELINE, "dynamodb", scratch, endpoint_url=endpoint_url, table_prefix="warm-"
        )
        try:
            run_scenario(server.url, scenario, WARM_UP, f"w{uuid.uuid4().hex[:6]}")
        finally:
            server.stop()


def run_case(case: Case, sizes: Sizes, scratch: Path) -> Measured:
    """One server run of ``case`` on a fresh, warmed-up DynamoDB Local."""
    run_id = f"l{uuid.uuid4().hex[:6]}"
    with DynamoDBLocal() as local:
        try:
            _warm_up(local.endpoint_url, scratch)
            server = Server(
                case.server,
                "dynamodb",
                scratch,
                endpoint_url=local.endpoint_url,
                table_prefix=f"lat-{run_id}-",
                extra_env={ENV_VAR: f"{case.latency_ms:g}"},
            )
        except ServerError as e:
            outcome = Outcome(case.scenario)
            outcome.check("server_started", False, str(e))
            return Measured(case, outcome)
        try:
            engine = local.process.pid if local.process is not None else None
            probe = CpuProbe(engine, server.process.pid)
            outcome = run_scenario(
                server.url, case.scenario, _sizes(case, sizes), run_id, capacity_probe=probe
            )
            if server.process.poll() is not None:
                outcome.check("server_survived", False, server.log_tail())
        finally:
            server.stop()
    return Measured(case, outcome, *probe.per_request(outcome.requests))


def measure(
    sizes: Sizes, runs: int = 1, *, progress: bool = True, without_delay: bool = False
) -> list[Measured]:
    """Every case ``runs`` times, interleaved (run 1 of every case, then run 2...)."""
    install()
    measured: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        for run in range(1, runs + 1):
            for case in cases(sizes, without_delay=without_delay):
                done = run_case(case, sizes, Path(tmp))
                measured.append(done)
                if progress:
                    print(f"  [run {run}/{runs}] {_line(done)}", flush=True)
    return measured


def _line(m: Measured) -> str:
    o = m.outcome
    p50, p99 = o.percentile_ms(50), o.percentile_ms(99)
    timing = (
        f"{o.throughput:7.1f} req/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"
        if p50 is not None and p99 is not None
        else "no measurement"
    )
    cpu = f"  CPU ms/req engine {_ms(m.engine_cpu)} server {_ms(m.server_cpu)}"
    verdict = "ok" if o.ok else "FAILED: " + ", ".join(f["check"] for f in o.failures)
    return f"{m.case.label:<36} {timing}{cpu}  {verdict}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.1f}"


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _rps(measured: Sequence[Measured], case: Case) -> float | None:
    return _median([m.outcome.throughput for m in measured if m.case == case and m.outcome.ok])


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom else None


def _x(value: float | None) -> str:
    return "-" if value is None else f"x{value:.2f}"


def verdicts(measured: Sequence[Measured]) -> list[str]:
    """The targets, each as a sentence with its measured ratio."""

    def rps(
        scenario: str,
        server: ServerKind,
        clients: int | None = None,
        latency_ms: float | None = None,
    ) -> float | None:
        latency = SPREAD_LATENCY_MS if scenario == "spread" else HOT_LATENCY_MS
        latency = latency if latency_ms is None else latency_ms
        return _median(
            [
                m.outcome.throughput
                for m in measured
                if m.case.scenario == scenario
                and m.case.server is server
                and m.case.latency_ms == latency
                and (clients is None or m.case.clients == clients)
                and m.outcome.ok
            ]
        )

    def reached(ratio: float | None, target: float) -> str:
        return f"target >= x{target:g}: {'reached' if (ratio or 0) >= target else 'NOT reached'}"

    spread = {
        server: _ratio(rps("spread", server, 16), rps("spread", server, 1))
        for server in (SERVICE, BASELINE)
    }
    hot = _ratio(rps("hot", SERVICE), rps("hot", BASELINE))
    lines = [
        f"spread, {SPREAD_LATENCY_MS:g} ms per call: the service's 16 clients "
        f"{_x(spread[SERVICE])} its one client ({reached(spread[SERVICE], SPREAD_TARGET)}); "
        f"the state-based baseline's {_x(spread[BASELINE])}",
        f"hot, {HOT_LATENCY_MS:g} ms per call: the service {_x(hot)} the state-based "
        f"baseline's req/s ({reached(hot, HOT_TARGET)})",
    ]
    if any(m.case.latency_ms == 0 for m in measured):
        clients = SPREAD_CLIENTS[-1]
        for scenario, many in (("spread", clients), ("hot", None)):
            ratio = _ratio(
                rps(scenario, SERVICE, many, latency_ms=0.0),
                rps(scenario, BASELINE, many, latency_ms=0.0),
            )
            who = f"{clients} clients, " if many else ""
            lines.append(
                f"{scenario}, no simulated delay ({who}DynamoDB Local as it is): the service "
                f"{_x(ratio)} the state-based baseline's req/s ({reached(ratio, UNDELAYED_TARGET)})"
            )
    return lines


def table(measured: Sequence[Measured]) -> str:
    lines = [
        "| scenario | round trip per call | server | clients | req/s | p50 ms | p99 ms "
        "| engine CPU ms/req | server CPU ms/req | runs | checks |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    seen: list[Case] = []
    for m in measured:
        if m.case not in seen:
            seen.append(m.case)
    for case in seen:
        mine = [m for m in measured if m.case == case]
        good = [m.outcome for m in mine if m.outcome.ok]
        p50 = _median([v for o in good if (v := o.percentile_ms(50)) is not None])
        p99 = _median([v for o in good if (v := o.percentile_ms(99)) is not None])
        rps = _rps(measured, case)
        passed = sum(m.outcome.ok for m in mine)
        good_runs = [m for m in mine if m.outcome.ok]
        engine = _median([m.engine_cpu for m in good_runs if m.engine_cpu is not None])
        server = _median([m.server_cpu for m in good_runs if m.server_cpu is not None])
        lines.append(
            f"| {case.scenario} | {case.latency_ms:g} ms | {case.server.name} | {case.clients} | "
            f"{'-' if rps is None else f'{rps:.1f}'} | {'-' if p50 is None else f'{p50:.0f}'} | "
            f"{'-' if p99 is None else f'{p99:.0f}'} | {_ms(engine)} | {_ms(server)} | "
            f"{len(mine)} | "
            f"{'pass' if passed == len(mine) else 'FAIL'} {passed}/{len(mine)} |"
        )
    return "\n".join(lines)


def failures(measured: Sequence[Measured]) -> list[str]:
    return [
        f"{m.case.label}: {f['check']}: {str(f.get('detail'))[:300]}"
        for m in measured
        for f in m.outcome.failures
    ]


def section(
    measured: Sequence[Measured],
    sizes: Sizes,
    runs: int,
    appends: str | None = None,
    header: Sequence[str] = (),
) -> str:
    """This command's section of BENCHMARKS.md (``appends``: the recorder's
    table under the same delays, from ``bench.dynamodb_appends``)."""
    parts = [
        HEAD_TEXT,
        "",
        *header,
        f"- Sizes: spread {sizes.spread_registrations} registrations over "
        f"{sizes.spread_events} events (1 or 16 clients); hot {sizes.hot_registrants} "
        f"registrants for {sizes.hot_capacity} seats, {sizes.hot_clients} clients; "
        f"{runs} run(s) per case (medians), each on a fresh DynamoDB Local.",
        "",
        table(measured),
        "",
        *(f"- {line}" for line in verdicts(measured)),
        "",
    ]
    if appends:
        parts += [appends, ""]
    return "\n".join(parts).rstrip() + "\n"


HEAD_TEXT = (
    f"{HEADING}\n\n"
    "Every DynamoDB and DynamoDB Streams call of the server first sleeps the given time "
    f"(`{ENV_VAR}`, `infra/devtools/simulated_latency.py`), the same for the service and "
    "the state-based baseline, so that a request waits for the network as on AWS instead "
    "of only computing (DynamoDB Local shares the 2 cores). `python -m bench.latency`; "
    "the scenarios and their checks are those of the tables above (hot checks exact FIFO). "
    "Engine / server CPU ms per request: the CPU time of DynamoDB Local's JVM and of the "
    "server process during the timed phase, over its requests; their sum times req/s, "
    "against the 2 cores (shared with the load generator and anything else running), "
    "says whether the machine or the waiting binds."
)


APPENDS_LEAD = "Appends per second under a simulated network round trip"


def kept_appends(previous: str, heading: str = HEADING) -> str | None:
    """The recorder's appends table from ``previous``'s section, for a run made
    without ``--appends``: a run replaces what it measured, not what it did not."""
    start = previous.find(heading)
    if start < 0:
        return None
    end = previous.find("\n## ", start + len(heading))
    body = previous[start:end] if end >= 0 else previous[start:]
    at = body.find(APPENDS_LEAD)
    return body[at:].strip() if at >= 0 else None


def replace_section(previous: str, body: str, heading: str = HEADING) -> str:
    """``previous`` with its ``heading`` section (up to the next ``## ``) replaced
    by ``body``; without one, ``body`` goes before "## What is measured"."""
    start = previous.find(heading)
    if start >= 0:
        end = previous.find("\n## ", start + len(heading))
        rest = previous[end + 1 :] if end >= 0 else ""
        return previous[:start] + body + "\n" + rest
    at = previous.find("## What is measured")
    at = len(previous) if at < 0 else at
    return previous[:at] + body + "\n" + previous[at:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency",
        description=(__doc__ or "").split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--appends",
        action="store_true",
        help="also the recorder beside a global counter (python -m bench.dynamodb_appends)",
    )
    parser.add_argument(
        "--without-delay",
        action="store_true",
        help="also spread (16 clients) and hot with no simulated delay, both servers",
    )
    parser.add_argument("--write", type=Path, default=None, metavar="PATH")
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    load_before = os.getloadavg()
    started = time.monotonic()
    measured = measure(sizes, args.runs, without_delay=args.without_delay)
    appends = None
    if args.appends:
        from bench import dynamodb_appends

        with DynamoDBLocal() as local:
            rows = dynamodb_appends.latency_table(local.endpoint_url)
        appends = dynamodb_appends.latency_markdown(rows)
    elapsed = time.monotonic() - started
    print()
    print(table(measured))
    for line in verdicts(measured):
        print(line)
    if appends:
        print("\n" + appends)
    problems = failures(measured)
    if args.write is not None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = "python -m bench.latency " + " ".join(
            sys.argv[1:] if argv is None else list(argv)
        )
        header = [
            f"- Date: {stamp}, {code_version()}; `{command.strip()}` took {elapsed / 60:.1f} min",
            f"- Machine: {machine(load_before)}",
        ]
        previous = args.write.read_text() if args.write.exists() else ""
        if appends is None:
            appends = kept_appends(previous)
        args.write.write_text(
            replace_section(previous, section(measured, sizes, args.runs, appends, header))
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
