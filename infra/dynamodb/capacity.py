"""DynamoDB consumed capacity: asked for on every call, totalled per process and per request.

botocore event hooks add ``ReturnConsumedCapacity=TOTAL`` to every operation
that takes it and read ``ConsumedCapacity`` from every response, so no
storage code has to remember to. Totals are kept per table; the request
middleware logs each request's share and ``GET /health`` shows the totals.

One exception: for ``TransactWriteItems`` the write units are counted from the
request, by AWS's pricing rule (2 WCU per item per started KB), because
DynamoDB Local reports only one item's units per table however many items of
that table a transaction writes. A ``Put`` is sized from its item; an
``Update``, ``Delete`` or ``ConditionCheck`` from its key and values with a
minimum of 1 KB (the rows this service updates in place are under 1 KB; AWS
would charge a larger stored item more).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import Context, ContextVar
from dataclasses import dataclass, field
from math import ceil
from typing import TYPE_CHECKING, Any

from infra.dynamodb.layout import item_size

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

WRITE_OPERATIONS = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
)


@dataclass
class Capacity:
    """Read and write capacity units, per table."""

    read: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    write: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, operation: str, consumed: dict[str, Any]) -> None:
        table = str(consumed.get("TableName", "?"))
        reads = consumed.get("ReadCapacityUnits")
        writes = consumed.get("WriteCapacityUnits")
        if reads is None and writes is None:
            units = float(consumed.get("CapacityUnits", 0.0))
            reads, writes = (0.0, units) if operation in WRITE_OPERATIONS else (units, 0.0)
        with self.lock:
            self.read[table] += float(reads or 0.0)
            self.write[table] += float(writes or 0.0)

    def add_share(self, other: Capacity, share: float) -> None:
        """Adds ``share`` (0..1) of ``other``'s units, table by table."""
        with other.lock:
            read, write = dict(other.read), dict(other.write)
        with self.lock:
            for table, units in read.items():
                self.read[table] += units * share
            for table, units in write.items():
                self.write[table] += units * share

    def totals(self) -> dict[str, float]:
        with self.lock:
            return {
                "readUnits": round(sum(self.read.values()), 2),
                "writeUnits": round(sum(self.write.values()), 2),
            }

    def by_table(self) -> dict[str, dict[str, float]]:
        with self.lock:
            tables = sorted(set(self.read) | set(self.write))
            return {
                t: {"readUnits": round(self.read[t], 2), "writeUnits": round(self.write[t], 2)}
                for t in tables
            }


PROCESS_TOTALS = Capacity()
_request_capacity: ContextVar[Capacity | None] = ContextVar("request_capacity", default=None)


def start_request_meter() -> Capacity:
    """A fresh meter for the current request (and the threads it hands work to)."""
    meter = Capacity()
    _request_capacity.set(meter)
    return meter


@contextmanager
def shared_among(contexts: Sequence[Context | None]) -> Iterator[None]:
    """Meters what runs inside, then gives each request its share.

    A batch saves the commands of several requests in one transaction, run
    from the command thread (no request's meter is current there).
    ``contexts`` holds, per saved event, the context (request) it was decided
    in; each request gets the share of what the save consumed that its events
    are of the batch, so its log line shows its part of the transaction. With
    no contexts (a command run in its own request) the request's meter is the
    current one and counts directly.
    """
    counted: dict[int, tuple[Context, int]] = {}
    for context in contexts:
        if context is not None:
            _, n = counted.get(id(context), (context, 0))
            counted[id(context)] = (context, n + 1)
    if not counted:
        yield
        return
    batch = Capacity()
    token = _request_capacity.set(batch)
    try:
        yield
    finally:
        _request_capacity.reset(token)
        total = sum(n for _, n in counted.values())
        for context, n in counted.values():
            meter = context.get(_request_capacity)
            if meter is not None:
                meter.add_share(batch, n / total)


def _ask_for_capacity(params: dict[str, Any], model: Any, **_: Any) -> None:
    if "ReturnConsumedCapacity" in model.input_shape.members:
        params.setdefault("ReturnConsumedCapacity", "TOTAL")


def transaction_write_units(items: list[dict[str, Any]]) -> dict[str, float]:
    """Write units per table that AWS charges for these ``TransactItems``."""
    units: dict[str, float] = defaultdict(float)
    for entry in items:
        ((kind, action),) = entry.items()
        if kind == "Put":
            size = item_size(action["Item"])
        else:
            values = action.get("ExpressionAttributeValues", {})
            size = max(1024, item_size(action["Key"]) + item_size(values))
        units[action["TableName"]] += 2.0 * max(1, ceil(size / 1024))
    return units


def _count_transaction(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context["transaction_write_units"] = transaction_write_units(params.get("TransactItems", []))


def _record(parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    consumed = parsed.get("ConsumedCapacity")
    if not consumed:
        return
    entries = consumed if isinstance(consumed, list) else [consumed]
    counted = context.get("transaction_write_units")
    if counted is not None and parsed.get("ResponseMetadata", {}).get("HTTPStatusCode") == 200:
        entries = [{"TableName": t, "WriteCapacityUnits": u} for t, u in counted.items()]
    request = _request_capacity.get()
    for entry in entries:
        PROCESS_TOTALS.add(model.name, entry)
        if request is not None:
            request.add(model.name, entry)


def instrument(client: DynamoDBClient) -> None:
    """Makes ``client`` report the capacity each of its calls consumes."""
    client.meta.events.register("provide-client-params.dynamodb.*", _ask_for_capacity)
    client.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems", _count_transaction
    )
    client.meta.events.register("after-call.dynamodb.*", _record)
