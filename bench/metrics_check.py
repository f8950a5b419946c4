"""Does the service's ``GET /metrics`` count the requests the bench sent?

Around each scenario run against the service, ``python -m bench`` scrapes
``regsvc_http_requests_total`` before and after, and compares the difference,
by route template, method and status, with what its own clients sent and were
answered (:class:`Tally`, fed by httpx's event hooks; paths are mapped to the
templates of the service's OpenAPI document as the service's router would). A
difference fails the run (check ``metrics_count_the_requests_sent``).

The scrapes themselves are requests too: each is counted by the next one, so
the tally records a scrape once its answer has been read. Right after the load
the last requests may still be on their way into the counter (the service
counts a request once its answer is sent), so the final scrape is repeated a
few times while the counts fall short.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, str, str]
"""(route template, method, status)."""

REQUESTS = "regsvc_http_requests_total"
UNMATCHED = "unmatched"


def counted(metrics_text: str) -> Counter[Key]:
    """``regsvc_http_requests_total`` by (route, method, status), from a scrape."""
    out: Counter[Key] = Counter()
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == REQUESTS:
                labels = sample.labels
                key = (labels["route"], labels["method"], labels["status"])
                out[key] += int(sample.value)
    return out


class Templates:
    """Maps a request's path to its route template, from an OpenAPI document's
    paths (in the document's order, which is the router's)."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.patterns = [
            (re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(p)) + "$"), p)
            for p in paths
        ]

    @classmethod
    def of(cls, openapi: Mapping[str, Any]) -> Templates:
        return cls(list(openapi.get("paths", {})))

    def route(self, path: str) -> str:
        path = path.split("?", 1)[0]
        for pattern, template in self.patterns:
            if pattern.match(path):
                return template
        return UNMATCHED


class Tally:
    """What the bench's clients sent to one server and the answers they got
    (thread-safe: the feed watcher sends from its own thread)."""

    def __init__(self, templates: Templates) -> None:
        self.templates = templates
        self.answered: Counter[Key] = Counter()
        self.sent = 0
        self._lock = threading.Lock()

    def record(self, method: str, path: str, status: int) -> None:
        key = (self.templates.route(path), method, str(status))
        with self._lock:
            self.answered[key] += 1

    def scraped(self) -> None:
        """Records a ``GET /metrics`` sent outside the hooked clients."""
        with self._lock:
            self.sent += 1
        self.record("GET", "/metrics", 200)

    def _on_request(self, request: httpx.Request) -> None:
        with self._lock:
            self.sent += 1

    def _on_response(self, response: httpx.Response) -> None:
        self.record(response.request.method, response.request.url.path, response.status_code)

    @property
    def unanswered(self) -> int:
        return self.sent - sum(self.answered.values())

    def hooks(self) -> dict[str, list[Callable[[Any], Any]]]:
        """httpx event hooks for a ``Client``."""
        return {"request": [self._on_request], "response": [self._on_response]}

    def async_hooks(self) -> dict[str, list[Callable[[Any], Any]]]:
        """httpx event hooks for an ``AsyncClient``."""

        async def on_request(request: httpx.Request) -> None:
            self._on_request(request)

        async def on_response(response: httpx.Response) -> None:
            self._on_response(response)

        return {"request": [on_request], "response": [on_response]}


@dataclass(frozen=True)
class Comparison:
    sent: Counter[Key]
    """What the bench's clients were answered between the two scrapes."""
    metered: Counter[Key]
    """The difference of ``regsvc_http_requests_total`` between them."""
    unanswered: int = 0

    @property
    def differences(self) -> dict[Key, tuple[int, int]]:
        """(sent, metered) for every key on which they differ."""
        keys = set(self.sent) | set(self.metered)
        return {
            k: (self.sent[k], self.metered[k])
            for k in sorted(keys)
            if self.sent[k] != self.metered[k]
        }

    @property
    def ok(self) -> bool:
        return not self.differences and self.unanswered == 0

    def total_sent(self) -> int:
        return sum(self.sent.values()) + self.unanswered

    def total_metered(self) -> int:
        return sum(self.metered.values())

    def summary(self) -> str:
        line = (
            f"sent {self.total_sent():,} requests, /metrics counted {self.total_metered():,} "
            f"over {len(self.sent | self.metered)} (route, method, status)"
        )
        if self.ok:
            return line + ": equal"
        parts = [
            f"{m} {r} {s}: sent {a}, counted {b}" for (r, m, s), (a, b) in self.differences.items()
        ]
        if self.unanswered:
            parts.append(f"{self.unanswered} sent without an answer")
        return line + ": DIFFERENT: " + "; ".join(parts)


def compare(before: Counter[Key], after: Counter[Key], tally: Tally) -> Comparison:
    metered = Counter({k: after[k] - before[k] for k in after if after[k] != before[k]})
    return Comparison(+tally.answered, metered, tally.unanswered)


class MetricsWatch:
    """Scrapes a server's /metrics before and after a run, and compares."""

    def __init__(self, url: str, *, settle_tries: int = 10, settle_pause: float = 0.1) -> None:
        self.url = url
        self.settle_tries = settle_tries
        self.settle_pause = settle_pause
        self._http = httpx.Client(base_url=url, timeout=30, trust_env=False)
        try:
            openapi = self._http.get("/openapi.json")
            openapi.raise_for_status()
            self.tally = Tally(Templates.of(openapi.json()))
            self.before = self._scrape()
            self.tally.scraped()
        except BaseException:
            self._http.close()
            raise

    def _scrape(self) -> Counter[Key]:
        """The counts now; the scrape itself is counted by the next one, so the
        caller records it in the tally once it has compared."""
        response = self._http.get("/metrics")
        response.raise_for_status()
        return counted(response.text)

    def finish(self) -> Comparison:
        """Scrapes again (a few times while the counts still fall short) and compares."""
        try:
            for _ in range(self.settle_tries):
                comparison = compare(self.before, self._scrape(), self.tally)
                self.tally.scraped()
                short = any(metered < sent for sent, metered in comparison.differences.values())
                if comparison.ok or not short:
                    return comparison
                time.sleep(self.settle_pause)
            return comparison
        finally:
            self.close()

    def close(self) -> None:
        self._http.close()


def section(rows: Sequence[tuple[str, str, int, Comparison]]) -> str:
    """BENCHMARKS.md's table: one row per service run."""
    lines = [
        "Around each service run, `GET /metrics` was scraped before and after, and "
        f"`{REQUESTS}` (by route template, method and status) compared with what the "
        "bench's own clients sent and were answered in between (setup, timed load, checks, "
        "probes and the scrapes; `bench/metrics_check.py`); any difference fails the run:",
        "",
        "| store | scenario | run | requests sent | counted by /metrics "
        "| (route, method, status) | equal |",
        "|---|---|---|---|---|---|---|",
    ]
    for store, scenario, run, c in rows:
        lines.append(
            f"| {store} | {scenario} | {run} | {c.total_sent():,} | {c.total_metered():,} | "
            f"{len(c.sent | c.metered)} | {'yes' if c.ok else 'NO'} |"
        )
    return "\n".join(lines)
