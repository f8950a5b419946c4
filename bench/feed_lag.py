"""Watches the service's ordered feed (``GET /health``'s ``feed``) during a run.

On DynamoDB the stream indexer gives events their positions after the writes;
this samples how far behind it is while the load runs, and how long after the
last answered request the feed holds every event (the drain).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx


def caught_up_at(feed: Mapping[str, Any]) -> float | None:
    """When (``time.monotonic``) the indexer last read the stream to its tip
    with nothing pending, from ``GET /health``'s ``feed``; None while records
    are pending or before it ever caught up."""
    since = feed.get("secondsSinceCaughtUp")
    if feed.get("pendingRecords") or since is None:
        return None
    return time.monotonic() - float(since)


class FeedWatch:
    """Samples ``/health`` in a thread from :meth:`start` until :meth:`finish`."""

    def __init__(
        self,
        url: str,
        interval: float = 0.1,
        drain_timeout: float = 60.0,
        event_hooks: Mapping[str, list[Callable[[Any], Any]]] | None = None,
    ) -> None:
        """``event_hooks``: httpx's, for its clients (``bench.metrics_check``)."""
        self.url = url
        self.event_hooks = event_hooks
        self.interval = interval
        self.drain_timeout = drain_timeout
        self.max_pending = 0.0
        self.max_oldest_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _feed(self, http: httpx.Client) -> dict[str, float | None] | None:
        feed = http.get("/health").json().get("feed")
        return feed if isinstance(feed, dict) else None

    def _sample(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10, event_hooks=self.event_hooks) as http:
            while not self._stop.is_set():
                try:
                    feed = self._feed(http)
                except httpx.HTTPError:
                    feed = None
                if feed is not None:
                    self.max_pending = max(self.max_pending, float(feed["pendingRecords"] or 0))
                    self.max_oldest_s = max(
                        self.max_oldest_s, float(feed["oldestPendingSeconds"] or 0.0)
                    )
                self._stop.wait(self.interval)

    def finish(self) -> dict[str, float]:
        """Stops sampling; waits until the indexer was at the stream's tip with
        nothing pending after the load ended; returns the figures."""
        ended = time.monotonic()
        self._stop.set()
        self._thread.join()
        drain = float("nan")
        with httpx.Client(base_url=self.url, timeout=10, event_hooks=self.event_hooks) as http:
            while time.monotonic() - ended < self.drain_timeout:
                feed = self._feed(http)
                at = None if feed is None else caught_up_at(feed)
                if at is not None and at >= ended:  # caught up after the load ended
                    drain = at - ended
                    break
                time.sleep(0.05)
        return {
            "max_pending": self.max_pending,
            "max_oldest_s": self.max_oldest_s,
            "drain_s": drain,
        }
