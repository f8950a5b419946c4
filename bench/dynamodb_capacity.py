"""DynamoDB capacity units per command: the service beside the state-based baseline.

Both servers run on DynamoDB (``AWS_ENDPOINT_URL_DYNAMODB`` if set, with the
dummy credentials of ``infra.devtools.dynamodb_local``; else a DynamoDB Local
this command starts), each with fresh tables. Each command is sent over HTTP
on its own and costed as the difference of the server's consumed-capacity
counters around it (the service's ``GET /health`` ``consumedCapacity``, the
baseline's ``GET /_stats``), less what one reading of those counters costs
(reading the service's health reads DynamoDB too). The service's WCU include
its read tables (written in the command's transaction) and the index its stream
indexer writes for the command: the counters are read once the feed has
drained (``bench.servers``); each command
is repeated and the median is shown.

    python -m bench.dynamodb_capacity
"""

from __future__ import annotations

import os
import statistics
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from itertools import pairwise
from pathlib import Path

import httpx

from bench.servers import BASELINE, SERVICE, Server, ServerKind
from infra.devtools.dynamodb_local import DynamoDBLocal, install

COMMANDS = (
    "create user",
    "create event",
    "register (confirmed)",
    "register (waitlisted)",
    "leave (with promotion)",
    "leave (waitlisted)",
    "get event",
)
Units = tuple[float, float]  # (RCU, WCU)


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        msg = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
        raise RuntimeError(f"{msg}: {response.text[:300]}")


def measure(
    kind: ServerKind, endpoint_url: str, scratch: Path, repeats: int = 5
) -> dict[str, Units]:
    """Median (RCU, WCU) per command for one server."""
    prefix = f"bench-cap-{uuid.uuid4().hex[:6]}-{kind.name}-"
    server = Server(kind, "dynamodb", scratch, endpoint_url=endpoint_url, table_prefix=prefix)
    samples: dict[str, list[Units]] = {c: [] for c in COMMANDS}
    try:
        with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as http:

            def reading() -> Units:
                return kind.consumed(server.url)

            # What reading the counters costs, measured back to back.
            readings = [reading() for _ in range(6)]
            overhead = (
                statistics.median(b[0] - a[0] for a, b in pairwise(readings)),
                statistics.median(b[1] - a[1] for a, b in pairwise(readings)),
            )

            def cost(command: str, call: Callable[[], httpx.Response], status: int) -> None:
                before = reading()
                _expect(call(), status)
                after = reading()
                samples[command].append(
                    (
                        max(0.0, after[0] - before[0] - overhead[0]),
                        max(0.0, after[1] - before[1] - overhead[1]),
                    )
                )

            for i in range(repeats):
                event = f"cap-e{i}"
                first, second, third = f"cap-a{i}", f"cap-b{i}", f"cap-c{i}"
                event_body = {
                    "eventId": event,
                    "title": "Capacity",
                    "date": "2027-06-01",
                    "capacity": 1,
                    "waitlistEnabled": True,
                }
                cost("create event", partial(http.post, "/events", json=event_body), 201)
                for user in (first, second, third):
                    body = {"userId": user, "name": user}
                    cost("create user", partial(http.post, "/users", json=body), 201)
                registrations = "/users/{}/registrations"
                body = {"eventId": event}
                register = {
                    u: partial(http.post, registrations.format(u), json=body)
                    for u in (first, second, third)
                }
                leave = {
                    u: partial(http.delete, f"{registrations.format(u)}/{event}")
                    for u in (first, third)
                }
                cost("register (confirmed)", register[first], 201)
                cost("register (waitlisted)", register[second], 201)
                _expect(register[third](), 201)  # a second person waiting
                cost("leave (with promotion)", leave[first], 204)
                cost("leave (waitlisted)", leave[third], 204)
                cost("get event", partial(http.get, f"/events/{event}"), 200)
    finally:
        server.stop()
    return {
        command: (
            statistics.median(s[0] for s in samples[command]),
            statistics.median(s[1] for s in samples[command]),
        )
        for command in COMMANDS
    }


def measure_both(endpoint_url: str, scratch: Path) -> dict[str, dict[str, Units]]:
    return {kind.name: measure(kind, endpoint_url, scratch) for kind in (SERVICE, BASELINE)}


def table(measured: dict[str, dict[str, Units]], markdown: bool = False) -> str:
    servers = list(measured)
    head = ["command", *(f"{s} WCU / RCU" for s in servers)]
    body = [
        [
            command,
            *(f"{measured[s][command][1]:.1f} / {measured[s][command][0]:.1f}" for s in servers),
        ]
        for command in COMMANDS
    ]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]
    rows = [head, ["-" * w for w in widths], *body]
    return "\n".join(
        "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
        for r in rows
    )


@contextmanager
def _endpoint() -> Iterator[str]:
    url = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    if url:
        yield url
        return
    install()
    with DynamoDBLocal() as local:
        yield local.endpoint_url


def main() -> None:
    with _endpoint() as url, tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        measured = measure_both(url, Path(scratch))
    print("DynamoDB capacity units per command (WCU / RCU, median of 5)")
    print(table(measured))


if __name__ == "__main__":
    main()
