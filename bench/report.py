"""Medians tables (text for the terminal, Markdown for BENCHMARKS.md)."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.load import Outcome, Sizes

STORE_TITLES = {"sqlite": "SQLite", "dynamodb": "DynamoDB Local"}
SCENARIO_ORDER = ("spread", "hot", "churn", "reads")
SERVER_ORDER = ("service", "state-based", "bare")
HEAD = (
    "scenario",
    "server",
    "req/s",
    "req/s range",
    "vs state-based",
    "p50 ms",
    "p99 ms",
    "peak RSS MB",
    "WCU/req",
    "RCU/req",
    "checks",
)


@dataclass
class Result:
    store: str
    scenario: str
    server: str
    run: int
    outcome: Outcome
    rss_kb: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome.ok


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def rows(results: Sequence[Result], store: str) -> list[list[str]]:
    mine = [r for r in results if r.store == store]
    out = []
    for scenario in SCENARIO_ORDER:
        here = [r for r in mine if r.scenario == scenario]
        measured = {
            server: [r for r in here if r.server == server and r.outcome.requests]
            for server in SERVER_ORDER
        }
        baseline_rps = _median([r.outcome.throughput for r in measured["state-based"]])
        for server in SERVER_ORDER:
            runs = [r for r in here if r.server == server]
            if not runs:
                continue
            good = measured[server]
            rps = _median([r.outcome.throughput for r in good])
            passed = sum(r.ok for r in runs)
            low = min((r.outcome.throughput for r in good), default=None)
            high = max((r.outcome.throughput for r in good), default=None)
            ratio = rps / baseline_rps if rps is not None and baseline_rps else None
            wcu = _median(
                [r.outcome.wcu / r.outcome.requests for r in good if r.outcome.wcu is not None]
            )
            rcu = _median(
                [r.outcome.rcu / r.outcome.requests for r in good if r.outcome.rcu is not None]
            )
            out.append(
                [
                    scenario,
                    server,
                    _fmt(rps),
                    f"{_fmt(low, 0)}-{_fmt(high, 0)}" if len(good) > 1 else "-",
                    "-" if ratio is None else f"x{ratio:.2f}",
                    _fmt(_median([r.outcome.percentile_ms(50) for r in good])),
                    _fmt(_median([r.outcome.percentile_ms(99) for r in good])),
                    _fmt(_median([r.rss_kb / 1024 for r in runs if r.rss_kb]), 0),
                    _fmt(wcu, 2),
                    _fmt(rcu, 2),
                    f"{'pass' if passed == len(runs) else 'FAIL'} {passed}/{len(runs)}",
                ]
            )
    return out


def text_table(results: Sequence[Result], store: str) -> str:
    body = rows(results, store)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(HEAD)]
    right = {2, 3, 4, 5, 6, 7, 8, 9}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    lines = [line(HEAD), line(["-" * w for w in widths]), *(line(r) for r in body)]
    return "\n".join(lines)


def markdown_table(results: Sequence[Result], store: str) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "|".join("---" for _ in HEAD) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows(results, store)]
    return "\n".join(lines)


def failures(results: Sequence[Result]) -> list[str]:
    out = []
    for r in results:
        for f in r.outcome.failures:
            detail = str(f.get("detail"))[:300]
            out.append(f"{r.store} {r.scenario} {r.server} run {r.run}: {f['check']}: {detail}")
    return out


def machine(load_before: Sequence[float]) -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    before = " ".join(f"{x:.2f}" for x in load_before)
    after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()} ({event_loops()}); "
        f"load average (1, 5, 15 min) before the run {before}, after {after}"
    )


def event_loops() -> str:
    """Whether uvloop and httptools are installed (uvicorn and the load generator use them)."""
    found = []
    for name in ("uvloop", "httptools"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"no {name}")
    return ", ".join(found)


def code_version() -> str:
    """The measured tree: its commit, and whether it had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False, timeout=30
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown (not a git checkout)"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!BENCHMARKS.md")
    return f"commit {commit}" + (" with uncommitted changes" if dirty else "")


def sizes_lines(sizes: dict[str, Sizes]) -> list[str]:
    out = []
    for store, s in sizes.items():
        out.append(
            f"- {STORE_TITLES[store]}: spread {s.spread_registrations:,} registrations over "
            f"{s.spread_events} events, {s.spread_clients} clients; hot {s.hot_registrants:,} "
            f"registrants for {s.hot_capacity} seats (waitlist on), {s.hot_clients} clients; "
            f"churn {s.churn_ops:,} operations ({s.churn_register_ratio:.0%} registrations, the "
            f"rest leaves) by {s.churn_users} users on {s.churn_events} events of "
            f"{s.churn_capacity} seats, {s.churn_clients} clients; reads {s.reads_ops:,} "
            f"requests (60% event, 15% event list, 15% a user's registrations, 10% new "
            f"registrations) on {s.reads_events} events of {s.reads_capacity} seats prefilled "
            f"with {s.reads_prefill:,} registrations by {s.reads_users} users, "
            f"{s.reads_clients} clients."
        )
    return out


EXPLANATION = """\
Each table compares, in the same run on the same machine:

- **service**: this repository's event-sourced service, `python -m api` (what
  `make run` serves), one uvicorn worker, `LOG_LEVEL=WARNING`,
  `ENVIRONMENT=production`;
- **state-based**: `bench/baseline/`, the same REST API on current-state rows
  with conditional updates and no events, written as a good team would: SQLite in
  WAL mode with `synchronous=FULL` and `BEGIN IMMEDIATE` write transactions; on
  DynamoDB, Users / Events / Registrations tables with one conditional
  `TransactWriteItems` per change (the event item holds the count and the waitlist);
- **bare**: `bench/bare.py`, a FastAPI endpoint that validates the same
  registration body and answers a constant 201 (no storage): the ceiling of the
  framework and the load generator on this machine.

One server process each (uvicorn, 1 worker, its defaults: uvloop and httptools
only if installed, for all servers alike), started fresh (new SQLite directory or
new DynamoDB tables) for every run, on a free loopback port. The load generator
(`bench/load.py`, asyncio + httpx, on uvloop when installed, one keep-alive
connection per client) runs on the same cores. Runs are interleaved (run 1 of
every scenario and server, then run 2, ...), the server order rotating per run;
the tables give medians.

Scenarios (only the registration phase is timed; creating users and events, and
the checks, are not):

- **spread**: registrations spread over many events with ample seats. Checks:
  every POST answers 201 `confirmed`; each event's `registeredCount` equals what
  was sent to it.
- **hot**: one event with a waitlist, more registrants than seats. Checks:
  exactly as many confirmed as seats and the rest waitlisted, `registeredCount`
  equals the seats, no errors, the event's waitlist has no duplicates and equals
  the waitlisted replies, FIFO in real time (a user answered before another's
  request was sent is never queued behind it), a sample of users' own lists agree.
- **churn**: random registrations and leaves on a few small events, so leaves
  promote people from the waitlist. Checks: only expected answers; at the end, per
  event, `registeredCount <= capacity`, no free seat while someone waits, and the
  counts and waitlist agree with every user's registration list; then everyone
  leaves and every event must drain to zero. (The bare endpoint has no state to churn.)
- **reads**: a registration site's read-heavy mix on events prefilled with
  registrations (some full, with waitlists): 60% `GET /events/{id}`, 15% `GET
  /events?status=active&limit=20`, 15% `GET /users/{id}/registrations`, 10% new
  registrations; the whole mix is timed. Checks: every read 200, every
  registration 201, and each event's confirmed count plus waitlist equals what was
  sent to it. (The bare endpoint has nothing to read.)

Columns: req/s = timed requests / wall time of the timed phase (median, and
range over runs); vs state-based = median req/s over the state-based server's;
p50 / p99 = latency of the timed requests as the client saw it; peak RSS = the
server process's VmHWM at the end of the run (from /proc; DynamoDB Local's own
JVM is not counted); WCU / RCU per request = the capacity units of the timed
requests divided by their number, from the service's `GET /health`
(`consumedCapacity`) and the state-based server's `GET /_stats`: WCU by AWS's
write rule (`infra.dynamodb.capacity`: 1 per started KB per item, twice in a
transaction, plus 1 per started KB of every GSI entry a write changes), the same
function on both servers, applied to each write request (exact for items under 1
KB: an update of a larger stored item is counted as of 1 KB, see README "Cost");
RCU as DynamoDB reports them (`ReturnConsumedCapacity`). The service's WCU
include the index its stream indexer writes for those requests: its counters are
read once the feed has drained, before and after the timed phase, so index
writes are counted with the requests that caused them however far the indexer
lags (RCU are read without waiting, so as not to count the waiting's own `GET
/health` reads). DynamoDB Local is far slower than AWS, and serialises
conflicting transactions where AWS would cancel them with `TransactionConflict`."""


def markdown(
    results: Sequence[Result],
    stores: Sequence[str],
    sizes: dict[str, Sizes],
    runs: int,
    command: str,
    elapsed_s: float,
    capacity_table: str | None,
    problems: Sequence[str],
    load_before: Sequence[float],
    dynamodb_sections: Sequence[str] = (),
    metrics_section: str | None = None,
) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench --write BENCHMARKS.md`); "
        "see README.md, section Benchmarks.",
        "",
        f"- Date: {stamp}",
        f"- Machine: {machine(load_before)}",
        f"- Command: `{command}`, on {code_version()}",
        f"- Runs: {runs} per scenario and server (medians below); "
        f"the whole command took {elapsed_s / 60:.1f} min",
        "- Sizes:",
        *(f"  {line}" for line in sizes_lines({s: sizes[s] for s in stores})),
        "",
    ]
    for store in stores:
        parts += [f"## {STORE_TITLES[store]}", "", markdown_table(results, store), ""]
        if store == "dynamodb" and capacity_table:
            parts += [
                capacity_table,
                "",
            ]
        if store == "dynamodb":
            for section in dynamodb_sections:
                parts += [section, ""]
    if metrics_section:
        parts += ["## The service's /metrics against the requests sent", "", metrics_section, ""]
    if problems:
        parts += ["## Failed checks", "", *(f"- {p}" for p in problems), ""]
    parts += ["## What is measured", "", EXPLANATION, ""]
    return "\n".join(parts)


#: Sections measured by other commands (``python -m bench.audit``) and written
#: into BENCHMARKS.md by hand: a rewrite by ``make bench`` keeps them.
KEPT_SECTIONS = (
    # Written by hand from runs of ``python -m bench --scenarios reads ...``.
    "## A read-heavy mix",
    # Written by hand from ``python -m bench.dynamodb_capacity --items``.
    "## Where the capacity units go",
    "## Auditors and admins",
    # ``python -m bench.latency --write``; rewritten by a ``make bench`` on DynamoDB.
    "## DynamoDB Local under a simulated network round trip",
    # ``make soak`` (``python -m bench.soak``), its reports pasted from bench/results/.
    "## Soak",
)


def keep_sections(previous: str, written: str, headings: Sequence[str] = KEPT_SECTIONS) -> str:
    """``written``, with each section of ``previous`` under one of ``headings``
    (up to the next ``## `` heading) put back before "What is measured"."""
    kept: list[str] = []
    for heading in headings:
        if heading in written:
            continue  # measured again by this run
        start = previous.find(heading + " ")
        if start < 0:
            start = previous.find(heading + "\n")
        if start < 0:
            continue
        end = previous.find("\n## ", start + len(heading))
        kept.append(previous[start : end + 1 if end >= 0 else len(previous)].rstrip() + "\n\n")
    if not kept:
        return written
    marker = "## What is measured"
    at = written.find(marker)
    at = len(written) if at < 0 else at
    return written[:at] + "".join(kept) + written[at:]
