"""DynamoDB consumed capacity: asked for on every call, totalled per process and per request.

botocore event hooks add ``ReturnConsumedCapacity=TOTAL`` to every operation
that takes it and read ``ConsumedCapacity`` from every response, so no
storage code has to remember to. Totals are kept per table; the request
middleware logs each request's share and ``GET /health`` shows the totals.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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


def _ask_for_capacity(params: dict[str, Any], model: Any, **_: Any) -> None:
    if "ReturnConsumedCapacity" in model.input_shape.members:
        params.setdefault("ReturnConsumedCapacity", "TOTAL")


def _record(parsed: dict[str, Any], model: Any, **_: Any) -> None:
    consumed = parsed.get("ConsumedCapacity")
    if not consumed:
        return
    entries = consumed if isinstance(consumed, list) else [consumed]
    request = _request_capacity.get()
    for entry in entries:
        PROCESS_TOTALS.add(model.name, entry)
        if request is not None:
            request.add(model.name, entry)


def instrument(client: DynamoDBClient) -> None:
    """Makes ``client`` report the capacity each of its calls consumes."""
    client.meta.events.register("provide-client-params.dynamodb.*", _ask_for_capacity)
    client.meta.events.register("after-call.dynamodb.*", _record)
