"""DynamoDB capacity units per command: the service beside the state-based baseline.

Both run in this process on DynamoDB (``AWS_ENDPOINT_URL_DYNAMODB`` if set, else
a DynamoDB Local this command starts), each on fresh tables, through the same
loaded workload (``bench.dynamodb_census``: registrations spread over
gatherings, some with a waitlist, leaves with and without a promotion,
capacity raises): the service through its application container and HTTP app,
the baseline through its ``DynamoStore``. Every write call is recorded, its
items read before and after it, and costed by AWS's rule
(``infra.dynamodb.capacity.write_cost``, GSI writes included) on both sides.

Per command the table shows the median of its instances: the WCU of its own
writes (the request path), the indexer's WCU amortised to it (the indexer's
WCU over the whole run divided by the events it indexed, times the command's
events), their total, and the baseline's WCU; and for ``get event`` the RCU
DynamoDB reports. A capacity raise is shown per person it promoted.

``--items`` also prints, per command, the item writes of one instance: each
item's size before and after against the 1 KB steps, its WCU and its GSI
writes (where a command's cost comes from).

    python -m bench.dynamodb_capacity [--gatherings 10] [--registrations 200] [--hot-clients 32]
                                      [--items]
"""

from __future__ import annotations

import argparse
import os
import statistics
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.dynamodb_census import (
    Command,
    Workload,
    WriteRecorder,
    endpoint,
    raw_client,
    run_commands,
    run_service,
)
from infra.devtools.dynamodb_local import LOCAL_CREDENTIALS

#: The rows of the table: (label, the census commands it is measured on).
COMMANDS = (
    "create user",
    "create event",
    "register (confirmed)",
    "register (waitlisted)",
    "leave (without promotion)",
    "leave (with promotion)",
    "leave (waitlisted)",
    "capacity raise, per person promoted",
    "get event (RCU)",
)
LABELS = {
    "capacity raise, per person promoted": "capacity raise",
    "get event (RCU)": "get event",
}
WORKLOAD = Workload(gatherings=10, registrations=200)
#: One hot gathering: 600 people for 150 seats, so 450 wait; then leaves
#: (promotions) and a capacity raise, as in the spread workload.
HOT = Workload(gatherings=1, registrations=600, users_per_registration=1.0, small_capacity=150)


@dataclass(frozen=True)
class Row:
    """One command's median cost on one server."""

    request: float  # WCU of the command's own writes (RCU for get event)
    indexer: float = 0.0  # the indexer's WCU amortised to it
    samples: int = 0

    @property
    def total(self) -> float:
        return self.request + self.indexer


def rows(recorder: WriteRecorder) -> dict[str, Row]:
    """Median cost per command from a recorded run (see the module's docstring)."""
    commands = [c for c in recorder.commands if c.kind != "get event"]
    events = sum(c.events for c in commands)
    indexer_wcu = sum(p.wcu for p in recorder.partitions.values() if p.path == "indexer")
    per_event = indexer_wcu / events if events else 0.0
    found: dict[str, Row] = {}
    for name in COMMANDS:
        label = LABELS.get(name, name)
        picked = [c for c in recorder.commands if c.label == label]
        if not picked:
            continue
        if label == "get event":
            found[name] = Row(statistics.median(c.rcu for c in picked), 0.0, len(picked))
            continue
        weight = [max(1, c.promoted) if label == "capacity raise" else 1 for c in picked]
        found[name] = Row(
            statistics.median(c.wcu / n for c, n in zip(picked, weight, strict=True)),
            statistics.median(
                c.events * per_event / n for c, n in zip(picked, weight, strict=True)
            ),
            len(picked),
        )
    return found


def per_registration(recorder: WriteRecorder) -> Row:
    """The mean cost of a registration of the run (confirmed and waitlisted
    alike). A mean, not a median: on the state-based side a registration
    rewrites the event item, which grows with its waitlist, so the cost climbs
    through the run."""
    commands = [c for c in recorder.commands if c.kind != "get event"]
    events = sum(c.events for c in commands)
    indexer_wcu = sum(p.wcu for p in recorder.partitions.values() if p.path == "indexer")
    per_event = indexer_wcu / events if events else 0.0
    picked = [c for c in commands if c.kind == "register"]
    return Row(
        statistics.fmean(c.wcu for c in picked),
        statistics.fmean(c.events * per_event for c in picked),
        len(picked),
    )


def measure_hot(
    url: str, workload: Workload = HOT, recorders: dict[str, WriteRecorder] | None = None
) -> dict[str, Row]:
    """A hot gathering's mean registration cost on both sides (``recorders``,
    when given, gets both runs' recorders)."""
    runs = {
        "service": run_service(url, workload),
        "state-based": run_baseline(url, workload, get_event=False),
    }
    if recorders is not None:
        recorders.update(runs)
    return {side: per_registration(recorder) for side, recorder in runs.items()}


def hot_items(
    recorder: WriteRecorder, side: str, picks: tuple[int, ...] = (1, 150, 151, 600)
) -> str:
    """The item writes of the hot gathering's registrations number ``picks``
    (1-based, in the order sent): how the cost moves as seats fill and the
    waitlist grows."""
    registrations = [c for c in recorder.commands if c.kind == "register"]
    lines = [f"{side}: the hot gathering's registrations"]
    for n in picks:
        if n > len(registrations):
            continue
        command = registrations[n - 1]
        lines.append(f"  #{n} {command.label}: {command.wcu:.1f} WCU")
        lines += _item_lines(command)
    return "\n".join(lines)


def measure_hot_concurrent(url: str, clients: int, workload: Workload = HOT) -> Row:
    """The service's mean registration cost on one hot gathering when
    ``clients`` send the registrations at once (the command batcher then
    commits several in one transaction, the gathering's events of a commit in
    one item): one command recorded over all of them."""
    users = [f"hot-{i:04d}" for i in range(workload.registrations)]

    def drive(container: Any, recorder: WriteRecorder, send: Any) -> None:
        send(
            "POST",
            "/events",
            {
                "eventId": "hot",
                "title": "Hot",
                "date": "2027-06-01",
                "capacity": workload.small_capacity,
                "waitlistEnabled": True,
            },
        )
        for user in users:
            send("POST", "/users", {"userId": user, "name": user})
        with (
            recorder.command(Command("register", "register (concurrent)")),
            ThreadPoolExecutor(clients) as pool,
        ):
            list(pool.map(lambda user: container.service.register(user, "hot"), users))

    recorder = run_service(url, workload, drive=drive)
    (command,) = [c for c in recorder.commands if c.kind == "register"]
    indexer_wcu = sum(p.wcu for p in recorder.partitions.values() if p.path == "indexer")
    events = sum(c.events for c in recorder.commands)
    per_event = indexer_wcu / events if events else 0.0
    return Row(command.wcu / len(users), command.events * per_event / len(users), len(users))


def hot_line(hot: Mapping[str, Row], workload: Workload = HOT) -> str:
    service, baseline = hot["service"], hot["state-based"]
    ratio = service.total / baseline.total if baseline.total else float("nan")
    return (
        f"One hot gathering ({workload.registrations} registrations for "
        f"{workload.small_capacity} seats, so {workload.registrations - workload.small_capacity} "
        f"wait; the mean over its registrations): the service {service.total:.2f} WCU per "
        f"registration ({service.request:.2f} on the request path, {service.indexer:.3f} the "
        f"indexer's), the state-based design {baseline.total:.2f} (its event item holds the "
        f"waitlist and grows with it): x{ratio:.2f}."
    )


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_baseline(url: str, workload: Workload, *, get_event: bool = True) -> WriteRecorder:
    """The same workload through the state-based baseline's DynamoDB store."""
    from api.schemas import EventCreate, EventUpdate, UserCreate
    from bench.baseline import DynamoStore

    prefix = f"census-base-{uuid.uuid4().hex[:6]}-"
    with _environment(
        {
            "AWS_ENDPOINT_URL_DYNAMODB": url,
            "DYNAMODB_TABLE_PREFIX": prefix,
            "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "AWS_DEFAULT_REGION": LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        }
    ):
        store = DynamoStore()
        recorder = WriteRecorder(raw_client(url), prefix)
        recorder.learn(store.client)
        recorder.attach(store.client)

        def send(method: str, path: str, body: Any) -> Any:
            parts = path.strip("/").split("/")
            if method == "POST" and parts == ["users"]:
                return store.create_user(UserCreate(**body))
            if method == "POST" and parts == ["events"]:
                return store.create_event(EventCreate(**body))
            if method == "POST":  # /users/{u}/registrations
                return store.register(parts[1], body["eventId"])
            if method == "DELETE":  # /users/{u}/registrations/{e}
                return store.leave(parts[1], parts[3])
            if method == "PUT":
                return store.update_event(parts[1], EventUpdate(**body))
            return store.get_event(parts[1])

        try:
            run_commands(workload, recorder, send, get_event=get_event)
        finally:
            store.close()
    return recorder


def measure_both(
    url: str, workload: Workload = WORKLOAD, recorders: dict[str, WriteRecorder] | None = None
) -> dict[str, dict[str, Row]]:
    """Per command, the service's and the baseline's median costs (``recorders``,
    when given, gets both runs' recorders)."""
    runs = {
        "service": run_service(url, workload, get_event=True),
        "state-based": run_baseline(url, workload),
    }
    if recorders is not None:
        recorders.update(runs)
    return {side: rows(recorder) for side, recorder in runs.items()}


def _item_lines(command: Command) -> list[str]:
    lines = []
    for item in command.items:
        gsi = ", ".join(f"{index} {kind} {units:.0f}" for index, kind, units in item.indexes)
        lines.append(
            f"    {item.table:22} {item.operation:18} {item.action:7} "
            f"{item.before:>5} -> {item.after:>5} B  {item.units:.0f} WCU"
            + (f"  + GSI {gsi}" if gsi else "")
        )
    return lines


def items(recorder: WriteRecorder, side: str) -> str:
    """Per command, the item writes of one instance that costs its median: each
    item's table, call, action, size before and after (bytes, against the 1 KB
    steps), its WCU, and its GSI writes (what ``--items`` prints)."""
    lines = [f"{side}: the item writes of one command of each kind (its median cost)"]
    for name in COMMANDS:
        label = LABELS.get(name, name)
        picked = [c for c in recorder.commands if c.label == label]
        if not picked or label == "get event":
            continue
        median = statistics.median(c.wcu for c in picked)
        command = min(picked, key=lambda c: abs(c.wcu - median))
        lines.append(f"  {name}: {command.wcu:.1f} WCU, {command.events} events")
        lines += _item_lines(command)
    return "\n".join(lines)


def table(measured: Mapping[str, Mapping[str, Row]], markdown: bool = False) -> str:
    service, baseline = measured["service"], measured["state-based"]
    head = [
        "command",
        "service WCU (request path)",
        "service WCU (indexer, amortised)",
        "service WCU total",
        "state-based WCU",
        "service / state-based",
    ]
    body = []
    for name in COMMANDS:
        if name not in service and name not in baseline:
            continue
        mine, theirs = service.get(name), baseline.get(name)
        ratio = (
            f"{mine.total / theirs.total:.2f}x"
            if mine is not None and theirs is not None and theirs.total
            else "-"
        )
        body.append(
            [
                name,
                f"{mine.request:.1f}" if mine else "-",
                f"{mine.indexer:.2f}" if mine else "-",
                f"{mine.total:.1f}" if mine else "-",
                f"{theirs.total:.1f}" if theirs else "-",
                ratio,
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]
    grid = [head, ["-" * w for w in widths], *body]
    return "\n".join(
        "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
        for r in grid
    )


def caption(workload: Workload = WORKLOAD) -> str:
    return (
        f"Capacity units per command by AWS's rule, GSI writes included, both sides "
        f"(`python -m bench.dynamodb_capacity`: {workload.registrations} registrations over "
        f"{workload.gatherings} gatherings with waitlists, leaves and capacity raises; the "
        "median of each command; the indexer's WCU amortised per event; `get event` in RCU):"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gatherings", type=int, default=WORKLOAD.gatherings)
    parser.add_argument("--registrations", type=int, default=WORKLOAD.registrations)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument(
        "--hot-clients",
        type=int,
        default=0,
        help="also the hot gathering's registrations sent by this many clients at once",
    )
    parser.add_argument(
        "--items", action="store_true", help="also each command's item writes, sized and costed"
    )
    args = parser.parse_args(argv)
    workload = Workload(gatherings=args.gatherings, registrations=args.registrations)
    recorders: dict[str, WriteRecorder] = {}
    with endpoint() as url:
        measured = measure_both(url, workload, recorders)
        hot_recorders: dict[str, WriteRecorder] = {}
        hot = measure_hot(url, recorders=hot_recorders)
        concurrent = measure_hot_concurrent(url, args.hot_clients) if args.hot_clients else None
    print(caption(workload))
    print(table(measured, markdown=args.markdown))
    if args.items:
        for side, recorder in recorders.items():
            print()
            print(items(recorder, side))
    print()
    print(hot_line(hot))
    if args.items:
        for side, recorder in hot_recorders.items():
            print()
            print(hot_items(recorder, side))
    if concurrent is not None:
        ratio = concurrent.total / hot["state-based"].total
        print()
        print(
            f"The same {HOT.registrations} registrations sent by {args.hot_clients} clients at "
            f"once (the service only; the command batcher commits several per transaction): "
            f"{concurrent.total:.2f} WCU per registration ({concurrent.request:.2f} on the "
            f"request path, {concurrent.indexer:.3f} the indexer's), x{ratio:.2f} "
            "the state-based design's one-at-a-time figure."
        )


if __name__ == "__main__":
    main()
