"""``python -m bench.soak`` (``make soak``): the service under a steady load for a long time.

Starts the service as ``make bench`` does (``bench.servers``: one process,
SQLite in a fresh directory, or DynamoDB Local started here with
``SOAK_STORE=dynamodb``), creates users and events (untimed), then:

1. measures the maximum rate: a closed-loop burst of the same mix from
   ``SOAK_CLIENTS`` clients (32) for ``SOAK_PROBE_SECONDS`` (20); skipped when
   ``SOAK_RATE`` gives the rate;
2. drives the service open-loop (requests sent on a fixed schedule, whether or
   not earlier ones were answered; a latency runs from when its request was
   due) at half that maximum for ``SOAK_MINUTES`` (30), a mix of 60% reads
   (``GET /events/{id}`` 40%, ``GET /events?status=active&limit=20`` 10%,
   ``GET /users/{id}/registrations`` 10%) and 40% writes (a registration for a
   pair not registered, else leaving it: the events' lists stay bounded, their
   histories grow; ``SOAK_EVENTS`` x ``SOAK_USERS`` pairs, 40 x 400 on SQLite,
   20 x 200 on DynamoDB);
3. every ``SOAK_INTERVAL_SECONDS`` (60) records the server's RSS (VmRSS of its
   process group, from /proc), p50/p99 latency, 5xx answers, unexpected
   answers and requests without an answer;
4. judges the series (``bench.soak_report``: RSS flat after warm-up, p99 stable,
   no 5xx, every request answered, the rate held), writes
   ``<out>/soak-<store>.json``, ``.md`` and ``.png`` (``SOAK_OUT``, default
   ``bench/results``) and exits 1 when a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench.report import code_version, machine
from bench.servers import SERVICE, Server, ServerError, store_endpoint
from bench.soak_report import Minute, SoakRun, judge, write

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


@dataclass(frozen=True)
class Shape:
    """The data the soak works on."""

    events: int = 40
    users: int = 400
    capacity: int = 20


SHAPES = {"sqlite": Shape(), "dynamodb": Shape(events=20, users=200)}


@dataclass(frozen=True)
class Op:
    kind: str
    method: str
    path: str
    body: Any = None
    pair: tuple[str, str] | None = None


class Workload:
    """Chooses the next request and knows which answers to expect: it tracks
    which (user, event) pairs hold a registration, and never has two requests
    on one pair in flight."""

    def __init__(self, run_id: str, shape: Shape, seed: int = 11) -> None:
        self.rng = random.Random(seed)
        self.shape = shape
        self.users = [f"{run_id}-u{i}" for i in range(shape.users)]
        self.events = [f"{run_id}-e{j}" for j in range(shape.events)]
        self.held: set[tuple[str, str]] = set()
        self.busy: set[tuple[str, str]] = set()

    def next_op(self) -> Op:
        x = self.rng.random()
        if x < 0.4:
            return Op("read event", "GET", f"/events/{self.rng.choice(self.events)}")
        if x < 0.5:
            return Op("list events", "GET", "/events?status=active&limit=20")
        if x < 0.6:
            user = self.rng.choice(self.users)
            return Op("read user", "GET", f"/users/{user}/registrations")
        while True:
            pair = (self.rng.choice(self.users), self.rng.choice(self.events))
            if pair not in self.busy:
                break
        self.busy.add(pair)
        user, event = pair
        if pair in self.held:
            return Op("leave", "DELETE", f"/users/{user}/registrations/{event}", pair=pair)
        body = {"eventId": event}
        return Op("register", "POST", f"/users/{user}/registrations", body, pair)

    def answered(self, op: Op, status: int) -> str:
        """Settles ``op``: ``ok``, ``unexpected`` (a 4xx it does not expect),
        ``5xx`` or ``no answer`` (status 0)."""
        if op.pair is not None:
            self.busy.discard(op.pair)
            if op.method == "POST" and status in (201, 409):
                self.held.add(op.pair)  # 409: it already held one
            elif op.method == "DELETE" and status in (204, 404):
                self.held.discard(op.pair)
        if status == 0:
            return "no answer"
        if status >= 500:
            return "5xx"
        expected = {"GET": (200,), "POST": (201,), "DELETE": (204,)}[op.method]
        return "ok" if status in expected else "unexpected"


@dataclass
class Sample:
    latency: float
    outcome: str


@dataclass
class Series:
    """Samples by interval, and the server's RSS at each interval's end."""

    interval_s: float
    samples: dict[int, list[Sample]] = field(default_factory=dict)
    """By the interval in which each request was due."""
    answers: Counter[int] = field(default_factory=Counter)
    """Answers by the interval in which they came."""
    rss_mb: dict[int, float] = field(default_factory=dict)
    unanswered: Counter[str] = field(default_factory=Counter)
    """Why requests got no answer: the client's exception, by type."""

    def add(self, due_in: int, answered_in: int, sample: Sample) -> None:
        self.samples.setdefault(due_in, []).append(sample)
        if sample.outcome != "no answer":
            self.answers[answered_in] += 1

    def minute(self, i: int) -> Minute:
        """The figures of interval ``i`` (0-based)."""
        here = self.samples.get(i, [])
        answered = sorted(s.latency for s in here if s.outcome != "no answer")
        outcomes = Counter(s.outcome for s in here)
        return Minute(
            index=i + 1,
            requests=len(here),
            answered_per_s=self.answers[i] / self.interval_s,
            p50_ms=percentile_ms(answered, 50),
            p99_ms=percentile_ms(answered, 99),
            rss_mb=self.rss_mb.get(i, 0.0),
            unexpected=outcomes["unexpected"],
            server_errors=outcomes["5xx"],
            no_answer=outcomes["no answer"],
        )

    def minutes(self, count: int) -> list[Minute]:
        return [self.minute(i) for i in range(count)]


def percentile_ms(sorted_seconds: Sequence[float], p: float) -> float | None:
    if not sorted_seconds:
        return None
    rank = max(0, min(len(sorted_seconds) - 1, math.ceil(p / 100 * len(sorted_seconds)) - 1))
    return 1000.0 * sorted_seconds[rank]


async def _send(client: httpx.AsyncClient, op: Op, failures: Counter[str] | None = None) -> int:
    """The answer's status, or 0 for none (its exception's type counted in ``failures``)."""
    try:
        response = await client.request(op.method, op.path, json=op.body)
    except httpx.HTTPError as e:
        if failures is not None:
            failures[type(e).__name__] += 1
        return 0
    return response.status_code


def _client(url: str, connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url,
        trust_env=False,
        timeout=httpx.Timeout(30.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


async def setup(url: str, workload: Workload) -> None:
    """Creates the events (with waitlists) and the users; raises on a refusal."""
    async with _client(url, 8) as client:

        async def create(path: str, body: dict[str, Any]) -> None:
            response = await client.post(path, json=body)
            if response.status_code != 201:
                msg = f"POST {path} -> {response.status_code} {response.text[:300]}"
                raise RuntimeError(msg)

        await asyncio.gather(
            *(
                create(
                    "/events",
                    {
                        "eventId": event,
                        "title": f"Soak {event}",
                        "description": "soak test",
                        "date": "2027-06-01",
                        "location": "Soak hall",
                        "capacity": workload.shape.capacity,
                        "organizer": "soak",
                        "status": "active",
                        "waitlistEnabled": True,
                    },
                )
                for event in workload.events
            )
        )
        users = iter(workload.users)

        async def worker() -> None:
            for user in users:
                await create("/users", {"userId": user, "name": f"Soak {user}"})

        await asyncio.gather(*(worker() for _ in range(8)))


async def max_rate(url: str, workload: Workload, clients: int, seconds: float) -> float:
    """Answers per second of a closed-loop burst: ``clients`` each send the next
    request as soon as the last one is answered."""
    async with _client(url, clients) as client:
        deadline = time.monotonic() + seconds
        answered = 0

        async def worker() -> None:
            nonlocal answered
            while time.monotonic() < deadline:
                op = workload.next_op()
                status = await _send(client, op)
                workload.answered(op, status)
                answered += status != 0

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return answered / (time.monotonic() - started)


async def open_loop(
    url: str,
    workload: Workload,
    rate: float,
    seconds: float,
    interval_s: float,
    rss_mb: Callable[[], float],
    alive: Callable[[], bool],
    *,
    max_in_flight: int = 2_000,
) -> Series:
    """Sends ``rate`` requests a second for ``seconds``, each at its due time."""
    series = Series(interval_s)
    intervals = max(1, round(seconds / interval_s))
    connections = 64
    # Requests beyond the connections wait here, in FIFO order, not in httpx's
    # pool: its queue costs CPU per waiter on every hand-over, so a backlog of
    # a few thousand (after the generator lost its core for a few seconds)
    # kept it at 100% CPU and behind for good while the server idled.
    gate = asyncio.Semaphore(connections)
    async with _client(url, connections) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()
        # uvloop's clock has whole milliseconds: latencies are taken on perf_counter's.
        started = time.perf_counter()
        tasks: set[asyncio.Task[None]] = set()

        async def one(op: Op, due: float, bucket: int) -> None:
            try:
                async with gate:
                    status = await _send(client, op, series.unanswered)
            except asyncio.CancelledError:  # still unanswered a minute after the end
                series.unanswered["still unanswered 60 s after the end"] += 1
                series.add(bucket, bucket, Sample(0.0, workload.answered(op, 0)))
                raise
            outcome = workload.answered(op, status)
            now = time.perf_counter() - started
            answered_in = int(now / interval_s)
            series.add(bucket, answered_in, Sample(now - (due - start), outcome))

        async def sample_rss() -> None:
            for i in range(intervals):
                await asyncio.sleep(max(0.0, start + (i + 1) * interval_s - loop.time()))
                series.rss_mb[i] = rss_mb()
                done = series.minute(i)
                print(
                    f"  minute {i + 1}/{intervals}: {done.answered_per_s:7.1f} answers/s  "
                    f"p50 {done.p50_ms or 0:7.1f} ms  p99 {done.p99_ms or 0:7.1f} ms  "
                    f"RSS {series.rss_mb[i]:6.1f} MB  5xx {done.server_errors}  "
                    f"unexpected {done.unexpected}  no answer {done.no_answer}",
                    flush=True,
                )

        sampler = asyncio.create_task(sample_rss())
        total = round(intervals * interval_s * rate)
        for n in range(total):
            due = start + n / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            bucket = min(intervals - 1, int((due - start) / interval_s))
            if len(tasks) >= max_in_flight or not alive():
                series.unanswered["not sent"] += 1
                series.add(bucket, bucket, Sample(0.0, "no answer"))
                continue
            task = asyncio.create_task(one(workload.next_op(), due, bucket))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await sampler
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=60)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
    return series


def _run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Runs on uvloop when it is installed (as the server does), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _env_float(name: str, default: float | None) -> float | None:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=(__doc__ or "").split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--store",
        choices=("sqlite", "dynamodb"),
        default=os.environ.get("SOAK_STORE", "sqlite"),
        help="env SOAK_STORE (sqlite)",
    )
    parser.add_argument(
        "--minutes", type=float, default=_env_float("SOAK_MINUTES", 30.0), help="env SOAK_MINUTES"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=_env_float("SOAK_RATE", None),
        help="requests/s (env SOAK_RATE; default: half the measured maximum)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=_env_float("SOAK_INTERVAL_SECONDS", 60.0),
        help="seconds per recorded interval (env SOAK_INTERVAL_SECONDS; 60)",
    )
    parser.add_argument(
        "--probe-seconds",
        type=float,
        default=_env_float("SOAK_PROBE_SECONDS", 20.0),
        help="length of the closed-loop burst that measures the maximum (20)",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=int(os.environ.get("SOAK_EVENTS", "0")),
        help="events (env SOAK_EVENTS; 40 on SQLite, 20 on DynamoDB)",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=int(os.environ.get("SOAK_USERS", "0")),
        help="users (env SOAK_USERS; 400 on SQLite, 200 on DynamoDB); the registration "
        "aggregates the service caches (up to 10,000) are events x users",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=int(os.environ.get("SOAK_CLIENTS", "32")),
        help="clients of that burst (env SOAK_CLIENTS; 32)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("SOAK_OUT", str(ROOT / "bench" / "results"))),
        help="where the report goes (env SOAK_OUT; bench/results)",
    )
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.interval <= 0 or (args.rate is not None and args.rate <= 0):
        parser.error("--minutes, --interval and --rate must be positive")
    return args


def soak(args: argparse.Namespace, scratch: Path, endpoint_url: str | None) -> SoakRun:
    run_id = f"soak{uuid.uuid4().hex[:6]}"
    server = Server(
        SERVICE, args.store, scratch, endpoint_url=endpoint_url, table_prefix=f"{run_id}-"
    )
    try:
        shape = SHAPES[args.store]
        shape = Shape(
            events=args.events or shape.events,
            users=args.users or shape.users,
            capacity=shape.capacity,
        )
        workload = Workload(run_id, shape)
        print(f"Service at {server.url} (pid {server.process.pid}); setting up", flush=True)
        _run_loop(setup(server.url, workload))
        measured: float | None = None
        rate = args.rate
        if rate is None:
            measured = _run_loop(max_rate(server.url, workload, args.clients, args.probe_seconds))
            rate = measured / 2
            print(
                f"Maximum (closed loop, {args.clients} clients): {measured:.1f} req/s", flush=True
            )
        print(f"Soak: {args.minutes:g} min open-loop at {rate:.1f} req/s", flush=True)
        load_before = os.getloadavg()
        code = code_version()  # as it was when the load began
        series = _run_loop(
            open_loop(
                server.url,
                workload,
                rate,
                args.minutes * 60.0,
                args.interval,
                lambda: server.rss_kb() / 1024.0,
                lambda: server.process.poll() is None,
            )
        )
        intervals = max(1, round(args.minutes * 60.0 / args.interval))
        minutes = series.minutes(intervals)
        survived = server.process.poll() is None
        if not survived:
            print(f"The service exited: {server.log_tail()}", file=sys.stderr)
        settings = {
            "Command": "make soak" if os.environ.get("MAKELEVEL") else "python -m bench.soak",
            "Code": code,
            "Machine": machine(load_before),
            "Data": f"{shape.events} events of {shape.capacity} seats with waitlists, "
            f"{shape.users} users",
            "Mix": "60% reads (GET /events/{id} 40%, GET /events?status=active&limit=20 10%, "
            "GET /users/{id}/registrations 10%), 40% writes (register, or leave a held one)",
            "No answer": ", ".join(f"{k} x{v}" for k, v in series.unanswered.items()) or "none",
            "Maximum burst": f"{args.clients} clients, closed loop, {args.probe_seconds:g} s"
            if measured is not None
            else "not measured (rate given)",
        }
        return SoakRun(args.store, minutes, rate, args.interval, measured, settings)
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, store_endpoint(args.store) as url:
        try:
            run = soak(args, Path(tmp), url)
        except (ServerError, RuntimeError) as e:
            print(f"soak: {e}", file=sys.stderr)
            return 1
    verdict = judge(run.minutes, run.target_rate)
    paths = write(run, verdict, args.out, f"soak-{args.store}")
    for check in verdict.checks:
        print(f"  {'pass' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    print(f"{'PASSED' if verdict.ok else 'FAILED'}; wrote {', '.join(map(str, paths.values()))}")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
