"""A census of every DynamoDB write a workload makes, per partition key.

The workload runs through the real service (the application container of
``infra.wiring`` behind the FastAPI app, in-process) on DynamoDB Local: users,
G gatherings (every fifth with a few seats, so people wait), registrations
spread round-robin over the gatherings, leaves with and without a promotion,
and a capacity raise on each small gathering. The in-process indexer is off
while the commands run; at the end the feed's indexer runs to completion.

botocore hooks on the service's clients record every write call (PutItem,
UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems; the indexer's
too), each attributed to the command that was being answered (or to the
indexer). Before each call the written items are read (``ConsistentRead``, on
a client of our own that nothing records), and after it the updated ones, so
every item write is costed by AWS's rule (``infra.dynamodb.capacity.write_cost``)
on its true images, and its partition keys are known: the base table's, the
GSI partitions its index entries land in, and the index table's.

    python -m bench.dynamodb_census [--json PATH] [--gatherings 50] [--registrations 1000]

The JSON's format is the census interface (``gatherings``, ``commands``,
``by_command``, ``events``, ``registrations``, ``partitions``, ``indexer``);
see the README's "Cost".
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.devtools.dynamodb_local import LOCAL_CREDENTIALS, DynamoDBLocal, install
from infra.dynamodb import make_client
from infra.dynamodb.capacity import (
    PROCESS_TOTALS,
    ItemWrite,
    TableShape,
    item_writes,
    key_text,
    learn_shapes,
    request_cost,
    write_cost,
    write_hooks,
)
from infra.dynamodb.layout import item_size
from infra.dynamodb.packing import event_count

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

INDEXER = -1  # the command index the indexer's writes are attributed to
READ_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
EVENTS_TABLE = "registrations_events"  # the event store's events table (logical name)


@dataclass
class Command:
    """One command sent, and what its writes cost."""

    kind: str  # create user | create event | register | leave | raise capacity | get event
    label: str  # kind with its outcome, e.g. "register (waitlisted)"
    gathering: str | None = None
    user: str | None = None
    events: int = 0  # domain events it appended (in the event items it wrote)
    wcu: float = 0.0  # request path, by the rule, GSI writes included
    rcu: float = 0.0  # as DynamoDB reports its reads
    promoted: int = 0  # people a leave or capacity raise promoted
    items: list[ItemCost] = field(default_factory=list)  # each item write, costed


@dataclass(frozen=True)
class ItemCost:
    """One item a command wrote, and what it cost by the rule."""

    table: str  # logical name
    operation: str  # PutItem, UpdateItem, TransactWriteItems...
    action: str  # Put | Update | Delete | ConditionCheck
    before: int  # the item's size in bytes before the write (0: absent)
    after: int  # and after it
    units: float  # the base table's WCU
    indexes: tuple[tuple[str, str, float], ...]  # (GSI, put/delete/update, WCU)

    @property
    def total(self) -> float:
        return self.units + sum(units for _, _, units in self.indexes)


@dataclass
class Partition:
    table: str
    index: str | None
    key: str
    path: str  # "request" | "indexer"
    commands: set[int] = field(default_factory=set)
    writes: int = 0
    wcu: float = 0.0


class WriteRecorder:
    """Records, costs and attributes every write call of the clients it is attached to.

    ``current`` is the index of the command being answered (``INDEXER`` while
    the indexer runs; None: writes of no command, such as start-up, which are
    counted in ``unattributed`` only).
    """

    def __init__(self, images: DynamoDBClient, prefix: str) -> None:
        self.images = images
        self.prefix = prefix
        self.shapes: dict[str, TableShape] = {}
        self.current: int | None = None
        self.commands: list[Command] = []
        self.partitions: dict[tuple[str, str, str | None, str], Partition] = {}
        self.unattributed = 0.0
        # What the process meter (the rule on the requests' own images) counted
        # for the same writes, beside the rule on the true images: (meter, exact).
        self.metered = {"request": [0.0, 0.0], "indexer": [0.0, 0.0], "none": [0.0, 0.0]}
        # The service's own meter (``PROCESS_TOTALS``) over the same span: equal
        # to what was recorded when no client of the service escaped the census.
        self.process_writes = 0.0
        self.refused_calls = 0
        self.indexer_calls = 0

    def learn(self, client: DynamoDBClient) -> None:
        names = [
            name
            for page in client.get_paginator("list_tables").paginate()
            for name in page.get("TableNames", [])
            if name.startswith(self.prefix)
        ]
        self.shapes.update({s.name: s for s in learn_shapes(client, names)})

    def attach(self, client: DynamoDBClient) -> None:
        write_hooks(client, self._before, self._after)
        client.meta.events.register("after-call.dynamodb.*", self._read)

    def logical(self, table: str) -> str:
        return table.removeprefix(self.prefix)

    # ----- images -----

    def _read_items(self, table_keys: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """The items at these keys now (None where absent), consistently read."""
        wanted: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for table, key in table_keys:
            if key not in wanted[table]:
                wanted[table].append(key)
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        request: Any = {t: {"Keys": keys, "ConsistentRead": True} for t, keys in wanted.items()}
        while request:
            response = self.images.batch_get_item(RequestItems=request)
            for table, items in response.get("Responses", {}).items():
                found[table] += items
            request = response.get("UnprocessedKeys") or None

        def match(table: str, key: dict[str, Any]) -> Any:
            return next(
                (item for item in found[table] if all(item.get(k) == v for k, v in key.items())),
                None,
            )

        return [match(table, key) for table, key in table_keys]

    def _keys(self, writes: list[ItemWrite]) -> list[tuple[str, dict[str, Any]]]:
        return [
            (w.table, w.key_of(self.shapes.get(w.table) or TableShape(w.table))) for w in writes
        ]

    def _before(self, operation: str, params: dict[str, Any]) -> Any:
        writes = item_writes(operation, params)
        return writes, self._read_items(self._keys(writes)) if writes else []

    def _after(self, operation: str, params: dict[str, Any], token: Any, parsed: Any) -> None:
        writes, befores = token
        if parsed.get("ResponseMetadata", {}).get("HTTPStatusCode", 200) != 200:
            self.refused_calls += 1
            return
        unprocessed = parsed.get("UnprocessedItems") or {}
        updated = [w for w in writes if w.action == "Update"]
        now = iter(self._read_items(self._keys(updated)) if updated else [])
        if self.current == INDEXER:
            self.indexer_calls += 1
        for write, before in zip(writes, befores, strict=True):
            if any(
                write.request in (r.get("PutRequest"), r.get("DeleteRequest"))
                for r in unprocessed.get(write.table, ())
            ):
                continue
            after = {
                "Put": write.key,
                "Update": next(now) if write.action == "Update" else None,
                "Delete": None,
                "ConditionCheck": before,
            }[write.action]
            self._count(write, before, after)

    def _count(self, write: ItemWrite, before: Any, after: Any) -> None:
        shape = self.shapes.get(write.table) or TableShape(write.table)
        cost = write_cost(
            shape,
            before,
            after,
            transactional=write.transactional,
            check=write.action == "ConditionCheck",
        )
        path = (
            "none" if self.current is None else "indexer" if self.current == INDEXER else "request"
        )
        self.metered[path][0] += request_cost(write).total
        self.metered[path][1] += cost.total
        if self.current is None:
            self.unattributed += cost.total
            return
        table = self.logical(write.table)
        key = write.key_of(shape)
        pk = key_text(key.get(shape.keys[0])) if shape.keys else "?"
        self._add(path, table, None, pk, cost.units)
        for index_write in cost.indexes:
            self._add(path, table, index_write.index, index_write.key, index_write.units)
        if self.current != INDEXER:
            command = self.commands[self.current]
            command.wcu += cost.total
            command.items.append(
                ItemCost(
                    table,
                    write.operation,
                    write.action,
                    item_size(before or {}),
                    item_size(after or {}),
                    cost.units,
                    tuple((w.index, w.kind, w.units) for w in cost.indexes),
                )
            )
            if table == EVENTS_TABLE and write.action == "Put":
                command.events += event_count(write.key)  # a stream's events of the commit

    def _add(self, path: str, table: str, index: str | None, key: str, units: float) -> None:
        slot = (path, table, index, key)
        partition = self.partitions.get(slot) or Partition(table, index, key, path)
        self.partitions[slot] = partition
        partition.commands.add(self.current if self.current is not None else INDEXER)
        partition.writes += 1
        partition.wcu += units

    def _read(self, parsed: Any, model: Any, **_: Any) -> None:
        if model.name not in READ_OPERATIONS or self.current is None or self.current == INDEXER:
            return
        consumed = parsed.get("ConsumedCapacity") or []
        for entry in consumed if isinstance(consumed, list) else [consumed]:
            self.commands[self.current].rcu += float(entry.get("CapacityUnits", 0.0))

    @contextmanager
    def command(self, command: Command) -> Iterator[Command]:
        self.commands.append(command)
        self.current = len(self.commands) - 1
        try:
            yield command
        finally:
            self.current = None

    @contextmanager
    def indexing(self) -> Iterator[None]:
        self.current = INDEXER
        try:
            yield
        finally:
            self.current = None


# ----- the workload -----


@dataclass(frozen=True)
class Workload:
    """``registrations`` spread round-robin over ``gatherings``; every fifth gathering
    has ``small_capacity`` seats (people wait), the others room for everyone."""

    gatherings: int = 50
    registrations: int = 1000
    users_per_registration: float = 0.4
    small_capacity: int = 3
    leave_share: float = 0.15
    raise_by: int = 2

    @property
    def users(self) -> int:
        return max(self.gatherings, round(self.registrations * self.users_per_registration))

    def small(self, gathering: int) -> bool:
        return gathering % 5 == 0

    def pairs(self) -> list[tuple[int, int]]:
        """(user, gathering) of every registration, in the order they are sent: the
        users in turn, each user's r-th registration at gathering ``u * k + r`` (mod G)
        for a ``k`` prime to G, so that consecutive users go to different gatherings
        and no user registers twice for one."""
        k = next(
            k
            for k in range(self.gatherings // 3 + 1, 2 * self.gatherings + 2)
            if gcd(k, self.gatherings) == 1
        )
        if self.registrations > self.users * self.gatherings:
            msg = "more registrations than (user, gathering) pairs"
            raise ValueError(msg)
        return [
            (i % self.users, (i % self.users * k + i // self.users) % self.gatherings)
            for i in range(self.registrations)
        ]


def _user(i: int) -> str:
    return f"u-{i}"


def _gathering(i: int) -> str:
    return f"e-{i}"


Send = Callable[[str, str, Any], Any]  # (method, path, body) -> the JSON answer


def run_commands(
    workload: Workload, recorder: WriteRecorder, send: Send, get_event: bool = False
) -> None:
    """Sends the workload's commands, each recorded as one :class:`Command`."""
    w = workload
    for u in range(w.users):
        with recorder.command(Command("create user", "create user", user=_user(u))):
            send("POST", "/users", {"userId": _user(u), "name": f"User {u}"})
    for g in range(w.gatherings):
        body = {
            "eventId": _gathering(g),
            "title": f"Gathering {g}",
            "date": "2027-06-01",
            "capacity": w.small_capacity if w.small(g) else w.registrations,
            "waitlistEnabled": True,
        }
        with recorder.command(Command("create event", "create event", gathering=_gathering(g))):
            send("POST", "/events", body)
    statuses: dict[tuple[int, int], str] = {}
    for u, g in w.pairs():
        command = Command("register", "register", gathering=_gathering(g), user=_user(u))
        with recorder.command(command):
            answer = send("POST", f"/users/{_user(u)}/registrations", {"eventId": _gathering(g)})
        statuses[u, g] = str(answer["status"])
        command.label = (
            "register (confirmed)" if answer["status"] == "confirmed" else ("register (waitlisted)")
        )
    # Leaves: spread over the gatherings; on a small gathering a confirmed
    # person's leave promotes the head of its waitlist.
    leaves = round(w.registrations * w.leave_share)
    waiting = {
        g: [p for p in statuses if p[1] == g and statuses[p] != "confirmed"]
        for g in range(w.gatherings)
    }
    chosen = [p for i, p in enumerate(statuses) if i % max(1, len(statuses) // leaves) == 0]
    for u, g in chosen[:leaves]:
        promotes = statuses[u, g] == "confirmed" and bool(waiting[g])
        label = (
            "leave (waitlisted)"
            if statuses[u, g] != "confirmed"
            else "leave (with promotion)"
            if promotes
            else "leave (without promotion)"
        )
        command = Command("leave", label, gathering=_gathering(g), user=_user(u))
        with recorder.command(command):
            send("DELETE", f"/users/{_user(u)}/registrations/{_gathering(g)}", None)
        if statuses[u, g] != "confirmed":
            waiting[g].remove((u, g))
        elif promotes:
            command.promoted = 1
            statuses[waiting[g].pop(0)] = "confirmed"
        del statuses[u, g]
    for g in range(w.gatherings):
        if not w.small(g):
            continue
        event = send("GET", f"/events/{_gathering(g)}", None)
        promoted = min(w.raise_by, len(waiting[g]))
        label = "capacity raise" if promoted else "capacity raise (nobody waits)"
        command = Command("raise capacity", label, gathering=_gathering(g), promoted=promoted)
        with recorder.command(command):
            send("PUT", f"/events/{_gathering(g)}", {"capacity": event["capacity"] + w.raise_by})
        del waiting[g][:promoted]
    if get_event:
        for g in range(w.gatherings):
            with recorder.command(Command("get event", "get event", gathering=_gathering(g))):
                send("GET", f"/events/{_gathering(g)}", None)


def raw_client(endpoint: str) -> DynamoDBClient:
    return make_client(
        endpoint_url=endpoint,
        region_name=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


#: Sends commands to a running service: (its container, the recorder, send).
Drive = Callable[[Any, WriteRecorder, Send], None]


def run_service(
    endpoint: str, workload: Workload, *, get_event: bool = False, drive: Drive | None = None
) -> WriteRecorder:
    """Runs ``workload`` through the service on fresh tables (or ``drive``,
    when given, sends what it likes); returns the recorder."""
    from fastapi.testclient import TestClient

    from api.main import create_app
    from infra.dynamodb.recorders import DynamoDBApplicationRecorder
    from infra.settings import Settings
    from infra.wiring import build_container

    prefix = f"census-{uuid.uuid4().hex[:8]}-"
    with tempfile.TemporaryDirectory(prefix="census-") as scratch:
        settings = Settings(
            store="dynamodb",
            dynamodb_endpoint_url=endpoint,
            dynamodb_table_prefix=prefix,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_region=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
            data_dir=Path(scratch) / "data",
            environment="test",
            dynamodb_indexer=False,  # indexed at the end, as a whole
        )
        container = build_container(settings)
        recorder = WriteRecorder(raw_client(endpoint), prefix)
        recorder.learn(container.read_model.client)  # type: ignore[attr-defined]
        clients = {
            id(c): c
            for c in (
                container.read_model.client,  # type: ignore[attr-defined]
                container.service.factory.datastore.client,  # type: ignore[attr-defined]
            )
        }
        for client in clients.values():
            recorder.attach(client)
        container.start()
        try:
            with TestClient(create_app(container=container)) as http:

                def send(method: str, path: str, body: Any) -> Any:
                    response = http.request(method, path, json=body)
                    if response.status_code >= 300:
                        msg = f"{method} {path} -> {response.status_code}: {response.text[:300]}"
                        raise RuntimeError(msg)
                    return response.json() if response.content else None

                metered = PROCESS_TOTALS.totals()["writeUnits"]
                if drive is None:
                    run_commands(workload, recorder, send, get_event=get_event)
                else:
                    drive(container, recorder, send)
            log = container.service.recorder
            assert isinstance(log, DynamoDBApplicationRecorder)
            # The poller was off while the commands ran; this process indexes
            # the whole feed now (off, wait_until_indexed would only wait for
            # another indexer, as on the API Lambda).
            log.index_in_process = True
            with recorder.indexing():
                log.wait_until_indexed(timeout=600)
            recorder.process_writes = PROCESS_TOTALS.totals()["writeUnits"] - metered
        finally:
            container.close()
    return recorder


# ----- the census -----


def _scope(partition: Partition, commands: list[Command], ids: tuple[set[str], set[str]]) -> str:
    """What a key belongs to: by its value when it is a user's or a gathering's id
    (a user's registrations row is also written by the leave that promotes them),
    else by the commands that wrote it."""
    if partition.path == "indexer":
        return "indexer"
    if partition.key in ids[0]:
        return "user"
    if partition.key in ids[1]:
        return "gathering"
    gatherings = {commands[i].gathering for i in partition.commands} - {None}
    users = {commands[i].user for i in partition.commands} - {None}
    if len(gatherings) == 1 and len(users) == 1:
        return "registration"
    if len(gatherings) == 1 and all(commands[i].gathering for i in partition.commands):
        return "gathering"
    if len(users) == 1 and all(commands[i].user for i in partition.commands):
        return "user"
    if len(gatherings) > 1 and len(users) > 1:
        return "global"
    return "other"


def census(recorder: WriteRecorder, workload: Workload) -> dict[str, Any]:
    """The census JSON (the interface the capacity model reads)."""
    commands = [c for c in recorder.commands if c.kind != "get event"]
    events = sum(c.events for c in commands)
    index = [p for p in recorder.partitions.values() if p.path == "indexer"]
    indexer_wcu = sum(p.wcu for p in index)
    indexer_writes = sum(p.writes for p in index)
    ids = (
        {c.user for c in commands if c.user is not None},
        {c.gathering for c in commands if c.gathering is not None},
    )
    partitions = sorted(
        recorder.partitions.values(), key=lambda p: (p.path != "request", -len(p.commands), -p.wcu)
    )
    return {
        "gatherings": workload.gatherings,
        "commands": len(commands),
        "by_command": dict(Counter(c.kind for c in commands)),
        "events": events,
        "registrations": sum(c.kind == "register" for c in commands),
        "partitions": [
            {
                "table": p.table,
                "index": p.index,
                "key": p.key,
                "scope": _scope(p, recorder.commands, ids),
                "path": p.path,
                "commands": 0 if p.path == "indexer" else len(p.commands),
                "writes": p.writes,
                "wcu": round(p.wcu, 2),
            }
            for p in partitions
        ],
        "indexer": {
            "events": events,
            "writes": indexer_writes,
            "wcu": round(indexer_wcu, 2),
            "wcu_per_event": round(indexer_wcu / events, 4) if events else 0.0,
            "events_per_write": round(events / indexer_writes, 2) if indexer_writes else 0.0,
        },
    }


def shared_keys(result: Mapping[str, Any], limit: float) -> list[Mapping[str, Any]]:
    """Request-path partitions written by more than ``limit`` (a share) of the commands."""
    return [
        p
        for p in result["partitions"]
        if p["path"] == "request" and p["commands"] > limit * result["commands"]
    ]


def index_costs(result: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The index's partition keys (grouped by kind: ``log``, ``$head``, ``c#…``)
    with their WCU per indexed event, costliest first."""
    groups: dict[str, float] = defaultdict(float)
    for p in result["partitions"]:
        if p["path"] == "indexer":
            kind = p["key"].split("#", 1)[0] + "#…" if "#" in p["key"] else p["key"]
            groups[f"{p['table']}{'/' + p['index'] if p['index'] else ''} p={kind}"] += p["wcu"]
    events = max(1, result["events"])
    return sorted(((k, v / events) for k, v in groups.items()), key=lambda kv: -kv[1])


def table(result: Mapping[str, Any], top: int = 15) -> str:
    """The census as text: the most shared keys, then the index's costs."""
    n = result["commands"]
    lines = [
        f"{n} commands ({', '.join(f'{k} {v}' for k, v in result['by_command'].items())})"
        f" over {result['gatherings']} gatherings; {result['events']} events",
        "",
        f"{'path':8} {'table':22} {'index':24} {'key':14} {'scope':12} {'cmds':>6} {'share':>7}"
        f" {'writes':>7} {'WCU':>8}",
    ]
    request = [p for p in result["partitions"] if p["path"] == "request"]
    index = sorted(
        (p for p in result["partitions"] if p["path"] == "indexer"), key=lambda p: -p["wcu"]
    )
    for p in request[:top] + index[:5]:
        share = f"{p['commands'] / n:.1%}" if p["path"] == "request" else "-"
        lines.append(
            f"{p['path']:8} {p['table']:22} {p['index'] or '-':24} {p['key'][:14]:14}"
            f" {p['scope']:12} {p['commands']:>6} {share:>7} {p['writes']:>7} {p['wcu']:>8.1f}"
        )
    i = result["indexer"]
    lines += [
        "",
        f"indexer: {i['events']} events, {i['writes']} item writes, {i['wcu']} WCU, "
        f"{i['wcu_per_event']} WCU per event",
        "index partitions, WCU per indexed event: "
        + ", ".join(f"{k} {v:.3f}" for k, v in index_costs(result)),
    ]
    return "\n".join(lines)


def markdown(result: Mapping[str, Any], top: int = 6) -> str:
    """The census for BENCHMARKS.md: the busiest request-path keys, then the index's."""
    n = result["commands"]
    limit = 2 / result["gatherings"]
    lines = [
        "### Census: the partition keys one workload writes",
        "",
        f"`python -m bench.dynamodb_census` (asserted by `tests/dynamodb/test_census.py`): "
        f"{n} commands ({', '.join(f'{k} {v}' for k, v in result['by_command'].items())}) "
        f"over {result['gatherings']} gatherings, {result['events']} events, through the "
        "service on DynamoDB Local; every write call recorded and costed by AWS's rule. "
        f"The busiest request-path keys (the test's bound: 2/G = {limit:.1%} of the "
        "commands) and every key of the index:",
        "",
        "| path | table | index | key | scope | commands | share | writes | WCU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    request = [p for p in result["partitions"] if p["path"] == "request"]
    index = sorted(
        (p for p in result["partitions"] if p["path"] == "indexer"), key=lambda p: -p["wcu"]
    )
    for p in request[:top] + index:
        share = f"{p['commands'] / n:.1%}" if p["path"] == "request" else "-"
        lines.append(
            f"| {p['path']} | {p['table']} | {p['index'] or '-'} | `{p['key'][:14]}` | "
            f"{p['scope']} | {p['commands']} | {share} | {p['writes']} | {p['wcu']:.1f} |"
        )
    i = result["indexer"]
    lines += [
        "",
        f"The indexer: {i['events']} events in {i['writes']} item writes, {i['wcu']} WCU, "
        f"{i['wcu_per_event']} WCU per event (budget 0.1).",
    ]
    return "\n".join(lines)


@contextmanager
def endpoint() -> Iterator[str]:
    """``AWS_ENDPOINT_URL_DYNAMODB`` if set, else a fresh DynamoDB Local."""
    url = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    if url:
        yield url
        return
    install()
    with DynamoDBLocal() as local:
        yield local.endpoint_url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the census JSON here")
    parser.add_argument("--gatherings", type=int, default=Workload.gatherings)
    parser.add_argument("--registrations", type=int, default=Workload.registrations)
    args = parser.parse_args(argv)
    workload = Workload(gatherings=args.gatherings, registrations=args.registrations)
    started = time.monotonic()
    with endpoint() as url:
        recorder = run_service(url, workload)
    result = census(recorder, workload)
    print(table(result))
    for path, (metered, exact) in list(recorder.metered.items())[:2]:
        print(f"{path}: the process meter counts {metered:.1f} WCU, on true images {exact:.1f}")
    print(f"({time.monotonic() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
