"""The load generator: asyncio + httpx clients against one server's REST API.

Three scenarios; only the registration phase is timed (setup and checks are not):

- ``spread``: N users register for M events with ample capacity (twice what
  each event gets), no waitlist. Checks: every POST answers 201 ``confirmed``;
  each event's ``registeredCount`` equals what was sent to it.
- ``hot``: K users race for one event of capacity C with a waitlist. Checks:
  exactly C confirmed and K - C waitlisted replies, ``registeredCount == C``,
  no errors, the event's waitlist has no duplicates and equals the waitlisted
  replies, and FIFO holds in real time: a user answered before another's
  request was sent is never queued behind it (nor waitlisted while the other
  got a seat); a sample of users' own registration lists agree.
- ``churn``: a random mix of registrations and leaves on a few small events
  with waitlists, so leaves promote people. Checks: only the expected answers
  (201, 204, 409 ALREADY_REGISTERED / ALREADY_ON_WAITLIST, 404
  REGISTRATION_NOT_FOUND); then per event: ``registeredCount <= capacity``, no
  free seat while someone waits, ``registeredCount`` and the waitlist agree with
  every user's registration list; then everyone leaves (untimed) and every
  event must drain to zero.
- ``reads``: a registration site's read-heavy day: on events prefilled with
  registrations (some full, with waitlists), a mix of 60% ``GET
  /events/{id}``, 15% ``GET /events?status=active&limit=20``, 15% ``GET
  /users/{id}/registrations`` and 10% new registrations. Checks: every read
  answers 200, every registration 201; afterwards each event's
  ``registeredCount`` and waitlist agree with what was sent.

``bare=True`` (for the bare endpoint, which stores nothing) skips setup and
checks other than "every POST answered 201", after an untimed warm-up.

Each client is its own ``AsyncClient`` with one keep-alive connection, so
``concurrency`` requests are in flight, like as many independent clients. The
clients run on uvloop when it is installed, else on asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

JSON = Any


class SetupError(Exception):
    """The server refused the untimed setup (so nothing could be measured)."""


@dataclass(frozen=True)
class Sizes:
    """Scenario sizes; see ``bench.__main__`` for the defaults per store."""

    spread_registrations: int = 2_000
    spread_events: int = 100
    spread_clients: int = 32
    hot_capacity: int = 500
    hot_registrants: int = 2_000
    hot_clients: int = 64
    churn_ops: int = 2_000
    churn_users: int = 40
    churn_events: int = 3
    churn_capacity: int = 5
    churn_clients: int = 32
    churn_register_ratio: float = 0.55
    reads_ops: int = 4_000
    reads_events: int = 50
    reads_users: int = 400
    reads_prefill: int = 800
    reads_capacity: int = 20
    reads_clients: int = 32
    bare_warmup: int = 200
    # Clients for the untimed setup (users, events) when more than the
    # scenario's own: a one-client run need not create its users one by one.
    setup_clients: int = 0


@dataclass
class Outcome:
    """What one scenario run measured and checked."""

    scenario: str
    requests: int = 0
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    checks: dict[str, bool] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    # Consumed capacity (DynamoDB) during the timed phase, from the server's counters.
    rcu: float | None = None
    wcu: float | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def throughput(self) -> float:
        return self.requests / self.wall_s if self.wall_s > 0 else 0.0

    def percentile_ms(self, p: float) -> float | None:
        values = sorted(self.latencies)
        if not values:
            return None
        rank = max(0, min(len(values) - 1, math.ceil(p / 100.0 * len(values)) - 1))
        return 1000.0 * values[rank]

    def check(self, name: str, ok: bool, detail: Any = None) -> None:
        self.checks[name] = ok
        if not ok:
            self.failures.append({"check": name, "detail": detail})


# Reads a server's consumed capacity so far as (RCU, WCU), or None off DynamoDB.
CapacityProbe = Callable[[httpx.AsyncClient], Awaitable[tuple[float, float] | None]]


# httpx's event hooks ("request", "response") for the load's clients.
EventHooks = Mapping[str, list[Callable[[Any], Any]]]


async def no_capacity(_: httpx.AsyncClient) -> tuple[float, float] | None:
    return None


async def _pool(clients: Sequence[httpx.AsyncClient], items: Iterable[Any], fn: Any) -> None:
    """Runs ``await fn(client, item)`` for every item, one worker per client."""
    it = iter(items)

    async def worker(client: httpx.AsyncClient) -> None:
        for item in it:
            await fn(client, item)

    await asyncio.gather(*(worker(c) for c in clients))


async def _request(
    client: httpx.AsyncClient, method: str, path: str, body: JSON = None
) -> tuple[int, JSON, float]:
    started = time.perf_counter()
    try:
        response = await client.request(method, path, json=body)
    except httpx.HTTPError as e:
        return 0, f"{type(e).__name__}: {e}", time.perf_counter() - started
    elapsed = time.perf_counter() - started
    try:
        data = response.json() if response.content else None
    except ValueError:
        data = response.text
    return response.status_code, data, elapsed


def _error_code(status: int, body: JSON) -> str | None:
    if status >= 400 and isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            return str(code) if code is not None else None
    return None


class Runner:
    """One scenario against one server."""

    def __init__(
        self,
        url: str,
        sizes: Sizes,
        run_id: str,
        *,
        seed: int = 7,
        bare: bool = False,
        capacity_probe: CapacityProbe = no_capacity,
        timeout: float = 120.0,
        event_hooks: EventHooks | None = None,
    ) -> None:
        """``event_hooks``: httpx's, for every client (``bench.metrics_check``
        counts the requests sent with them)."""
        self.url = url.rstrip("/")
        self.event_hooks = event_hooks
        self.sizes = sizes
        self.run_id = run_id
        self.seed = seed
        self.bare = bare
        self.capacity_probe = capacity_probe
        self.timeout = timeout
        self.clients: list[httpx.AsyncClient] = []
        self.concurrency = 0  # the first ``concurrency`` clients send the timed requests
        self.spans: dict[str, tuple[float, float]] = {}

    def _open(self, concurrency: int) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.clients = [
            httpx.AsyncClient(
                base_url=self.url,
                trust_env=False,
                timeout=httpx.Timeout(self.timeout),
                limits=limits,
                event_hooks=self.event_hooks,
            )
            for _ in range(concurrency)
        ]

    async def run(self, scenario: str) -> Outcome:
        concurrency = {
            "spread": self.sizes.spread_clients,
            "hot": self.sizes.hot_clients,
            "churn": self.sizes.churn_clients,
            "reads": self.sizes.reads_clients,
        }[scenario]
        self.concurrency = concurrency
        self._open(max(concurrency, self.sizes.setup_clients))
        try:
            if scenario == "spread":
                return await self.spread()
            if scenario == "hot":
                return await self.hot()
            if scenario == "reads":
                return await self.reads()
            return await self.churn()
        finally:
            await asyncio.gather(*(c.aclose() for c in self.clients))

    @property
    def client(self) -> httpx.AsyncClient:
        return self.clients[0]

    # -- setup (untimed) --

    async def make_users(self, user_ids: Sequence[str]) -> None:
        async def one(client: httpx.AsyncClient, user_id: str) -> None:
            body = {"userId": user_id, "name": f"Bench {user_id}"}
            status, reply, _ = await _request(client, "POST", "/users", body)
            if status != 201:
                msg = f"POST /users -> {status} {str(reply)[:300]}"
                raise SetupError(msg)

        await _pool(self.clients, user_ids, one)

    async def make_event(self, event_id: str, capacity: int, waitlist: bool) -> None:
        body = {
            "eventId": event_id,
            "title": f"Bench {event_id}",
            "description": "load test",
            "date": "2027-06-01",
            "location": "Bench hall",
            "capacity": capacity,
            "organizer": "bench",
            "status": "active",
            "waitlistEnabled": waitlist,
        }
        status, reply, _ = await _request(self.client, "POST", "/events", body)
        if status != 201:
            msg = f"POST /events -> {status} {str(reply)[:300]}"
            raise SetupError(msg)

    async def make_waitlisted(
        self, tag: str, n_users: int, n_events: int, capacity: int
    ) -> tuple[list[str], list[str]]:
        """``n_users`` users and ``n_events`` events of ``capacity`` seats with a
        waitlist, their ids tagged ``tag`` (untimed setup)."""
        users = [f"{self.run_id}-{tag}{i}" for i in range(n_users)]
        events = [f"{self.run_id}-{tag}e{j}" for j in range(n_events)]
        for event_id in events:
            await self.make_event(event_id, capacity, waitlist=True)
        await self.make_users(users)
        return users, events

    async def get_event(self, event_id: str) -> dict[str, Any]:
        status, reply, _ = await _request(self.client, "GET", f"/events/{event_id}")
        if status != 200 or not isinstance(reply, dict):
            msg = f"GET /events/{event_id} -> {status} {str(reply)[:300]}"
            raise SetupError(msg)
        return reply

    async def user_registrations(self, user_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """userId -> {eventId: status}, from each user's own registration list."""
        out: dict[str, dict[str, str]] = {}

        async def one(client: httpx.AsyncClient, user_id: str) -> None:
            path = f"/users/{user_id}/registrations?limit=500"
            status, reply, _ = await _request(client, "GET", path)
            if status != 200 or not isinstance(reply, dict):
                msg = f"GET {path} -> {status} {str(reply)[:300]}"
                raise SetupError(msg)
            out[user_id] = {r["eventId"]: r["status"] for r in reply.get("registrations", [])}

        await _pool(self.clients, user_ids, one)
        return out

    # -- the timed phase --

    async def _timed(
        self, outcome: Outcome, ops: Sequence[tuple[str, str, str]], record: Any
    ) -> None:
        """ops: (method, userId, eventId); ``record(op, status, body)`` after each reply."""

        async def one(client: httpx.AsyncClient, op: tuple[str, str, str]) -> None:
            method, user_id, event_id = op
            sent = time.perf_counter()
            if method == "POST":
                path, body = f"/users/{user_id}/registrations", {"eventId": event_id}
            else:
                path, body = f"/users/{user_id}/registrations/{event_id}", None
            status, reply, elapsed = await _request(client, method, path, body)
            outcome.latencies.append(elapsed)
            self.spans[user_id] = (sent, sent + elapsed)
            code = _error_code(status, reply)
            kind = "register" if method == "POST" else "leave"
            outcome.statuses[f"{kind} {status}{' ' + code if code else ''}"] += 1
            record(op, status, reply)

        await self._measure(outcome, ops, one)

    async def _measure(self, outcome: Outcome, ops: Sequence[Any], one: Any) -> None:
        """Sends ``ops`` through ``one(client, op)`` from the scenario's clients,
        timing the whole and taking the server's consumed capacity around it."""
        before = await self.capacity_probe(self.client)
        started = time.perf_counter()
        await _pool(self.clients[: self.concurrency], ops, one)
        outcome.wall_s = time.perf_counter() - started
        after = await self.capacity_probe(self.client)
        outcome.requests = len(ops)
        if before is not None and after is not None:
            outcome.rcu = after[0] - before[0]
            outcome.wcu = after[1] - before[1]

    async def _warm_up(self, event_id: str) -> None:
        warm = [("POST", f"{self.run_id}-w{i}", event_id) for i in range(self.sizes.bare_warmup)]
        await self._timed(Outcome("warm-up"), warm, lambda *_: None)

    # -- scenarios --

    async def spread(self) -> Outcome:
        n, m = self.sizes.spread_registrations, self.sizes.spread_events
        users = [f"{self.run_id}-u{i}" for i in range(n)]
        events = [f"{self.run_id}-e{j}" for j in range(m)]
        if self.bare:
            await self._warm_up(events[0])
        else:
            capacity = max(1, -(-n // m)) * 2
            for event_id in events:
                await self.make_event(event_id, capacity, waitlist=False)
            await self.make_users(users)
        ops = [("POST", users[i], events[i % m]) for i in range(n)]
        random.Random(self.seed).shuffle(ops)
        replies: list[tuple[str, str, int, JSON]] = []
        outcome = Outcome("spread")
        await self._timed(
            outcome, ops, lambda op, st, body: replies.append((op[1], op[2], st, body))
        )
        created = sum(1 for *_, st, _ in replies if st == 201)
        outcome.check("all_201", created == n, dict(outcome.statuses))
        if self.bare:
            return outcome
        confirmed = sum(
            1
            for *_, st, body in replies
            if st == 201 and isinstance(body, dict) and body.get("status") == "confirmed"
        )
        outcome.check("all_confirmed", confirmed == n, {"confirmed": confirmed, "sent": n})
        per_event = Counter(e for _, e, st, _ in replies if st == 201)
        wrong = []
        for event_id in events:
            event = await self.get_event(event_id)
            if event.get("registeredCount") != per_event[event_id] or event.get("waitlist"):
                wrong.append(
                    {
                        "eventId": event_id,
                        "registeredCount": event.get("registeredCount"),
                        "expected": per_event[event_id],
                    }
                )
        outcome.check("event_counts_match", not wrong, wrong[:5])
        return outcome

    async def hot(self) -> Outcome:
        c, k = self.sizes.hot_capacity, self.sizes.hot_registrants
        event_id = f"{self.run_id}-hot"
        users = [f"{self.run_id}-h{i}" for i in range(k)]
        if self.bare:
            await self._warm_up(event_id)
        else:
            await self.make_event(event_id, c, waitlist=True)
            await self.make_users(users)
        order = list(users)
        random.Random(self.seed).shuffle(order)
        replies: list[tuple[str, int, JSON]] = []
        outcome = Outcome("hot")
        ops = [("POST", u, event_id) for u in order]
        await self._timed(outcome, ops, lambda op, st, body: replies.append((op[1], st, body)))
        created = sum(1 for _, st, _ in replies if st == 201)
        outcome.check("all_201", created == k, dict(outcome.statuses))
        if self.bare:
            return outcome

        def with_status(status: str) -> set[str]:
            return {
                u
                for u, st, body in replies
                if st == 201 and isinstance(body, dict) and body.get("status") == status
            }

        confirmed, waiting = with_status("confirmed"), with_status("waitlist")
        outcome.check("exactly_C_confirmed", len(confirmed) == c, {"confirmed": len(confirmed)})
        outcome.check(
            "K_minus_C_waitlisted",
            len(waiting) == k - c,
            {"waitlisted": len(waiting), "K-C": k - c},
        )
        event = await self.get_event(event_id)
        waitlist: list[str] = event.get("waitlist") or []
        outcome.check(
            "registeredCount_eq_C",
            event.get("registeredCount") == c,
            {"registeredCount": event.get("registeredCount")},
        )
        outcome.check(
            "waitlist_no_duplicates",
            len(waitlist) == len(set(waitlist)),
            {"length": len(waitlist), "distinct": len(set(waitlist))},
        )
        outcome.check(
            "waitlist_equals_waitlisted_replies",
            set(waitlist) == waiting and event.get("waitlistCount") == len(waitlist),
            {
                "waitlist": len(waitlist),
                "waitlistCount": event.get("waitlistCount"),
                "replies": len(waiting),
            },
        )
        self._check_fifo(outcome, waitlist, confirmed)
        everyone = sorted(confirmed | waiting)
        sample = random.Random(self.seed + 1).sample(everyone, min(40, len(everyone)))
        views = await self.user_registrations(sample)
        wrong = [
            {"userId": u, "got": views[u].get(event_id)}
            for u in sample
            if views[u].get(event_id) != ("confirmed" if u in confirmed else "waitlist")
        ]
        outcome.check("user_views_match_sample", not wrong, wrong[:5])
        return outcome

    async def reads(self) -> Outcome:
        s = self.sizes
        users, events = await self.make_waitlisted(
            "r", s.reads_users, s.reads_events, s.reads_capacity
        )
        rng = random.Random(self.seed)
        pairs = [(u, e) for u in users for e in events]
        rng.shuffle(pairs)
        n_writes = s.reads_ops // 10
        prefill, writes = pairs[: s.reads_prefill], pairs[s.reads_prefill :][:n_writes]
        sent: Counter[str] = Counter()

        async def register(client: httpx.AsyncClient, pair: tuple[str, str]) -> None:
            path = f"/users/{pair[0]}/registrations"
            status, reply, _ = await _request(client, "POST", path, {"eventId": pair[1]})
            if status != 201:
                msg = f"POST {path} -> {status} {str(reply)[:300]}"
                raise SetupError(msg)
            sent[pair[1]] += 1

        await _pool(self.clients, prefill, register)
        ops: list[tuple[str, str]] = [("POST", f"{u} {e}") for u, e in writes]
        n_reads = s.reads_ops - len(ops)
        for _ in range(n_reads):
            x = rng.random()
            if x < 0.6 / 0.9:
                ops.append(("GET", f"/events/{rng.choice(events)}"))
            elif x < 0.75 / 0.9:
                ops.append(("GET", "/events?status=active&limit=20"))
            else:
                ops.append(("GET", f"/users/{rng.choice(users)}/registrations"))
        rng.shuffle(ops)
        outcome = Outcome("reads")
        refused: list[dict[str, Any]] = []

        async def one(client: httpx.AsyncClient, op: tuple[str, str]) -> None:
            method, target = op
            if method == "POST":
                user_id, event_id = target.split(" ")
                path, body = f"/users/{user_id}/registrations", {"eventId": event_id}
            else:
                path, body = target, None
            status, reply, elapsed = await _request(client, method, path, body)
            outcome.latencies.append(elapsed)
            kind = "register" if method == "POST" else "read"
            outcome.statuses[f"{kind} {status}"] += 1
            if status != (201 if method == "POST" else 200):
                refused.append({"op": op, "status": status, "body": str(reply)[:200]})
            elif method == "POST":
                sent[target.split(" ")[1]] += 1

        await self._measure(outcome, ops, one)
        outcome.check("only_expected_answers", not refused, refused[:5])
        wrong = []
        for event_id in events:
            event = await self.get_event(event_id)
            held = event.get("registeredCount", 0) + len(event.get("waitlist") or [])
            if held != sent[event_id] or event.get("registeredCount", 0) > s.reads_capacity:
                wrong.append({"eventId": event_id, "held": held, "sent": sent[event_id]})
        outcome.check("event_counts_match", not wrong, wrong[:5])
        return outcome

    def _check_fifo(self, outcome: Outcome, waitlist: list[str], confirmed: set[str]) -> None:
        """Real-time FIFO: if A's reply came before B's request was sent, A is not behind B.

        In the waitlist: everyone queued after B was answered no earlier than B
        was sent. Across the lists: no confirmed request was sent after a
        waitlisted one had been answered.
        """
        spans = self.spans
        behind: list[str] = []
        earliest_answer_after = math.inf
        for user_id in reversed([w for w in waitlist if w in spans]):
            sent, answered = spans[user_id]
            if sent > earliest_answer_after:
                behind.append(user_id)
            earliest_answer_after = min(earliest_answer_after, answered)
        outcome.check(
            "fifo_waitlist_order", not behind, {"violations": len(behind), "examples": behind[:5]}
        )
        first_wait_answer = min((spans[w][1] for w in waitlist if w in spans), default=math.inf)
        last_seat_request = max((spans[u][0] for u in confirmed if u in spans), default=-math.inf)
        outcome.check(
            "fifo_no_queue_jumping",
            last_seat_request <= first_wait_answer,
            {"seat request after a waitlist reply by (s)": last_seat_request - first_wait_answer},
        )

    async def churn(self) -> Outcome:
        s = self.sizes
        users, events = await self.make_waitlisted(
            "c", s.churn_users, s.churn_events, s.churn_capacity
        )
        rng = random.Random(self.seed)
        ops = [
            (
                "POST" if rng.random() < s.churn_register_ratio else "DELETE",
                rng.choice(users),
                rng.choice(events),
            )
            for _ in range(s.churn_ops)
        ]
        allowed = {
            "POST": {(201, None), (409, "ALREADY_REGISTERED"), (409, "ALREADY_ON_WAITLIST")},
            "DELETE": {(204, None), (404, "REGISTRATION_NOT_FOUND")},
        }
        unexpected: list[dict[str, Any]] = []

        def record(op: tuple[str, str, str], status: int, body: JSON) -> None:
            if (status, _error_code(status, body)) not in allowed[op[0]]:
                unexpected.append({"op": op, "status": status, "body": str(body)[:200]})

        outcome = Outcome("churn")
        await self._timed(outcome, ops, record)
        outcome.check("only_expected_answers", not unexpected, unexpected[:5])
        await self._check_invariants(outcome, events, users)
        # Everyone leaves at once: promotions must keep the books right down to zero.
        held = await self.user_registrations(users)
        drain = [(u, e) for u, regs in held.items() for e in regs]
        refused: list[dict[str, Any]] = []

        async def leave(client: httpx.AsyncClient, pair: tuple[str, str]) -> None:
            path = f"/users/{pair[0]}/registrations/{pair[1]}"
            status, body, _ = await _request(client, "DELETE", path)
            if status != 204:
                refused.append({"pair": pair, "status": status, "body": str(body)[:200]})

        await _pool(self.clients, drain, leave)
        outcome.check("drain_all_204", not refused, refused[:5])
        left_over = []
        for event_id in events:
            event = await self.get_event(event_id)
            if event.get("registeredCount") != 0 or event.get("waitlist"):
                left_over.append({"eventId": event_id, "registeredCount": event["registeredCount"]})
        outcome.check("drained_to_zero", not left_over, left_over[:5])
        return outcome

    async def _check_invariants(
        self, outcome: Outcome, events: Sequence[str], users: Sequence[str]
    ) -> None:
        held = await self.user_registrations(users)
        bad = []
        for event_id in events:
            event = await self.get_event(event_id)
            waitlist: list[str] = event.get("waitlist") or []
            count, capacity = event["registeredCount"], event["capacity"]
            confirmed = {u for u, regs in held.items() if regs.get(event_id) == "confirmed"}
            waiting = {u for u, regs in held.items() if regs.get(event_id) == "waitlist"}
            problems = []
            if not 0 <= count <= capacity:
                problems.append(f"registeredCount {count} outside 0..{capacity}")
            if event.get("availableSpots") != capacity - count:
                problems.append("availableSpots != capacity - registeredCount")
            if event.get("waitlistCount") != len(waitlist) or len(waitlist) != len(set(waitlist)):
                problems.append("waitlistCount or duplicates")
            if waitlist and count < capacity:
                problems.append("a free seat while users wait")
            if count != len(confirmed):
                problems.append(f"registeredCount {count} != {len(confirmed)} users confirmed")
            if set(waitlist) != waiting:
                problems.append("waitlist != users whose registration says waitlist")
            if problems:
                bad.append({"eventId": event_id, "problems": problems})
        outcome.check("invariants_after_churn", not bad, bad[:5])


def _run_loop(main: Coroutine[Any, Any, Outcome]) -> Outcome:
    """Runs on uvloop when it is installed (as the servers do), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def run_scenario(
    url: str,
    scenario: str,
    sizes: Sizes,
    run_id: str,
    *,
    bare: bool = False,
    capacity_probe: CapacityProbe = no_capacity,
    event_hooks: EventHooks | None = None,
) -> Outcome:
    """Runs one scenario to completion; a refused setup becomes a failed outcome."""
    runner = Runner(
        url, sizes, run_id, bare=bare, capacity_probe=capacity_probe, event_hooks=event_hooks
    )
    try:
        return _run_loop(runner.run(scenario))
    except SetupError as e:
        outcome = Outcome(scenario)
        outcome.check("setup", False, str(e))
        return outcome
