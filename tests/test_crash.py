"""A server killed with SIGKILL under write load loses no acknowledged write.

After a restart on the same store, every write that was answered 2xx is in
the log and the read tables, exactly once; the invariants hold; and the
admin audit (log folded afresh vs the live read tables) finds no difference.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import assert_acknowledged_writes_kept, run_cli, server_process
from tests.support import fresh_store_settings, server_env, unique

pytestmark = [pytest.mark.slow, pytest.mark.processes, pytest.mark.xdist_group("servers")]

EVENTS = 3
CAPACITY = 5
WRITERS = 8


def _write_load(url: str, stop: threading.Event, acknowledged: list[tuple[str, str, str]]) -> None:
    """Registers fresh users for the events, and sometimes leaves; records every 2xx."""
    with httpx.Client(base_url=url, timeout=10) as http:
        n = 0
        while not stop.is_set():
            n += 1
            user, event = unique("crash"), f"crash-event-{n % EVENTS}"
            try:
                if http.post("/users", json={"userId": user, "name": "U"}).status_code != 201:
                    continue
                acknowledged.append(("user", user, ""))
                response = http.post(f"/users/{user}/registrations", json={"eventId": event})
                if response.status_code == 201:
                    acknowledged.append(("registered", user, event))
                    if n % 2 == 0:
                        # Sent: it may commit even if the server dies before answering.
                        acknowledged.append(("leaving", user, event))
                        left = http.delete(f"/users/{user}/registrations/{event}")
                        if left.status_code == 204:
                            acknowledged.append(("left", user, event))
            except httpx.TransportError:
                return  # the server is gone


def test_a_sigkilled_server_keeps_every_acknowledged_write_exactly_once(
    tmp_path: Path, store_name: str, endpoint: str | None
) -> None:
    store = server_env(fresh_store_settings(store_name, endpoint))
    data_dir = tmp_path / "data"
    acknowledged: list[tuple[str, str, str]] = []
    with server_process(data_dir, workers=1, extra_env=store) as (url, process):
        with httpx.Client(base_url=url, timeout=10) as http:
            for n in range(EVENTS):
                body = {
                    "eventId": f"crash-event-{n}",
                    "title": "Crash",
                    "date": "2030-01-01",
                    "capacity": CAPACITY,
                    "waitlistEnabled": True,
                }
                assert http.post("/events", json=body).status_code == 201
        stop = threading.Event()
        writers = [
            threading.Thread(target=_write_load, args=(url, stop, acknowledged))
            for _ in range(WRITERS)
        ]
        for writer in writers:
            writer.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)  # mid-load, no shutdown of any kind
        process.wait()
        stop.set()
        for writer in writers:
            writer.join()
    assert len(acknowledged) >= 60, "the load did not get going"

    with (
        server_process(data_dir, workers=1, extra_env=store) as (url, _),
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        events = [f"crash-event-{n}" for n in range(EVENTS)]
        assert_acknowledged_writes_kept(http, acknowledged, events, CAPACITY)
        for event_id in events:
            event = http.get(f"/events/{event_id}").json()
            assert event["waitlistCount"] == 0 or event["availableSpots"] == 0
    for command in ("check", "verify"):
        audit = run_cli(store, data_dir, command)
        assert audit.returncode == 0, audit.stdout + audit.stderr
