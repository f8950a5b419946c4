"""DynamoDB capacity: AWS's write-capacity rule, and what each call consumed.

**The rule** (:func:`write_cost`, the one function every count in this project
goes through: the service's meter, the state-based baseline's, the census and
``bench.dynamodb_capacity``), as AWS prices on-demand and provisioned writes:

- an item written costs 1 WCU per started KB of the larger of its size before
  and after the write (a put of a new item: its size; a delete: the old size);
- written in a transaction (``TransactWriteItems``, a ``ConditionCheck``
  included) it costs twice that;
- each global secondary index whose entry the write changes costs 1 WCU per
  started KB of the projected entry (table key, index key and the projected
  attributes: ``ALL``, ``KEYS_ONLY`` or ``INCLUDE``): a put of an item that
  has the index's key is one index write, a delete one, a change of the index
  key two (the old entry deleted, the new one put), a change of a projected
  attribute one; a change of an attribute the index does not project, none.
  Index writes are not doubled by a transaction.

**Table shapes** (keys and GSIs with their projections) come from DynamoDB's
own descriptions (``DescribeTable`` / ``CreateTable`` answers): an
instrumented client learns the shape of every table it describes or creates
(the service and the baseline both describe their tables at start-up), and
:func:`learn_shapes` describes tables explicitly. A table never described is
taken as having no GSIs.

**Item images.** The rule needs each written item as it was before and after
the write. :func:`item_writes` expands a write request into item writes from
images that a caller supplies (the census reads them around every call); the
process meter (:func:`instrument`) has only the request, so it takes the
request's images: a ``Put`` writes its item over nothing, an ``Update`` is
sized from its key and the values it sets and is taken to change an existing
item that is in every GSI of its table (so setting a GSI's key attribute is a
key change, two index writes; changing an attribute an ``ALL`` index projects,
one), a ``Delete`` removes an item in every GSI. That is exact for this
service's writes (puts of new items, updates of rows under 1 KB that are in
their indexes) and undercounts an update of a stored item over 1 KB, whose
size the request does not show.

botocore event hooks add ``ReturnConsumedCapacity=TOTAL`` to every operation
that takes it; reads are counted as DynamoDB reports them, writes by the rule
(DynamoDB Local reports only one item's units per table of a transaction and no
GSI writes). Totals are kept per table; the request middleware logs each
request's share and ``GET /health`` shows the totals. A write DynamoDB refused
(a failed condition, a cancelled transaction) is not counted.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import Context, ContextVar
from dataclasses import dataclass, field
from math import ceil
from typing import TYPE_CHECKING, Any

from infra.dynamodb.errors import THROTTLING_CODES
from infra.dynamodb.layout import item_size

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from infra.kit import StoreCallListener

WRITE_OPERATIONS = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
)
KB = 1024

#: An item as the low-level client writes it: attribute name -> typed value.
Item = Mapping[str, Any]


# ----- table shapes -----


@dataclass(frozen=True)
class IndexShape:
    """A global secondary index: its key attributes and what it projects."""

    name: str
    keys: tuple[str, ...]  # partition key, then the sort key if any
    projection: str = "ALL"  # "ALL" | "KEYS_ONLY" | "INCLUDE"
    non_key: frozenset[str] = frozenset()  # INCLUDE's attributes

    def entry(self, item: Item | None, table_keys: Sequence[str]) -> dict[str, Any] | None:
        """The index entry ``item`` has (None: the item is not in this index)."""
        if item is None or any(key not in item for key in self.keys):
            return None
        if self.projection == "ALL":
            return dict(item)
        kept = {*table_keys, *self.keys}
        if self.projection == "INCLUDE":
            kept |= self.non_key
        return {name: value for name, value in item.items() if name in kept}


@dataclass(frozen=True)
class TableShape:
    """A table's key attributes (partition key first) and its GSIs."""

    name: str
    keys: tuple[str, ...] = ()
    indexes: tuple[IndexShape, ...] = ()

    @classmethod
    def from_description(cls, table: Mapping[str, Any]) -> TableShape:
        """From a ``DescribeTable`` / ``CreateTable`` ``Table(Description)``."""

        def keys(schema: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
            ordered = sorted(schema, key=lambda k: 0 if k["KeyType"] == "HASH" else 1)
            return tuple(str(k["AttributeName"]) for k in ordered)

        indexes = tuple(
            IndexShape(
                str(index["IndexName"]),
                keys(index["KeySchema"]),
                str(index.get("Projection", {}).get("ProjectionType", "ALL")),
                frozenset(index.get("Projection", {}).get("NonKeyAttributes", ())),
            )
            for index in table.get("GlobalSecondaryIndexes", ())
        )
        return cls(str(table["TableName"]), keys(table.get("KeySchema", ())), indexes)


_SHAPES: dict[str, TableShape] = {}
_SHAPES_LOCK = threading.Lock()


def register_shape(shape: TableShape) -> None:
    with _SHAPES_LOCK:
        _SHAPES[shape.name] = shape


def shape_of(table: str) -> TableShape:
    """The shape learnt for ``table`` (no keys, no GSIs if it was never described)."""
    with _SHAPES_LOCK:
        return _SHAPES.get(table) or TableShape(table)


def learn_shapes(client: DynamoDBClient, tables: Sequence[str]) -> list[TableShape]:
    """Describes ``tables`` and remembers their shapes."""
    shapes = []
    for name in tables:
        shape = TableShape.from_description(client.describe_table(TableName=name)["Table"])
        register_shape(shape)
        shapes.append(shape)
    return shapes


# ----- the rule -----


def started_kb(size: int) -> int:
    """Started kilobytes: what a write is charged per (at least one)."""
    return max(1, ceil(size / KB))


@dataclass(frozen=True)
class IndexWrite:
    """One GSI write: a ``put`` or ``delete`` of an entry, or an ``update`` in place."""

    index: str
    key: str  # the entry's partition key value, as text
    kind: str
    units: float


@dataclass(frozen=True)
class WriteCost:
    """What one item write costs: the base table's units and its GSI writes."""

    table: str
    units: float
    indexes: tuple[IndexWrite, ...] = ()

    @property
    def total(self) -> float:
        return self.units + sum(w.units for w in self.indexes)


def key_text(value: Mapping[str, Any] | None) -> str:
    """A key attribute's value as text (``S``, ``N`` or ``B``)."""
    if not value:
        return "?"
    (text,) = (str(v) for v in value.values())
    return text


def write_cost(
    shape: TableShape,
    before: Item | None,
    after: Item | None,
    *,
    transactional: bool = False,
    check: bool = False,
) -> WriteCost:
    """AWS's write-capacity rule for one item written (see the module's docstring).

    ``before`` / ``after``: the item before and after the write (None: absent).
    ``check``: a transaction's ``ConditionCheck`` of ``before`` (it writes
    nothing, but is charged as a transactional write of the item).
    """
    size = max(item_size(before or {}), item_size(after or {}))
    units = float(started_kb(size) * (2 if transactional or check else 1))
    if check:
        return WriteCost(shape.name, units)
    writes: list[IndexWrite] = []
    for index in shape.indexes:
        old, new = index.entry(before, shape.keys), index.entry(after, shape.keys)
        if old == new:
            continue
        if old is None or new is None:
            entry = new if new is not None else old
            assert entry is not None
            kind = "put" if new is not None else "delete"
            writes.append(
                IndexWrite(
                    index.name, key_text(entry[index.keys[0]]), kind, started_kb(item_size(entry))
                )
            )
        elif any(old[k] != new[k] for k in index.keys):
            writes.append(
                IndexWrite(
                    index.name, key_text(old[index.keys[0]]), "delete", started_kb(item_size(old))
                )
            )
            writes.append(
                IndexWrite(
                    index.name, key_text(new[index.keys[0]]), "put", started_kb(item_size(new))
                )
            )
        else:
            big = max(item_size(old), item_size(new))
            writes.append(
                IndexWrite(index.name, key_text(new[index.keys[0]]), "update", started_kb(big))
            )
    return WriteCost(shape.name, units, tuple(writes))


# ----- write requests as item writes -----


@dataclass(frozen=True)
class ItemWrite:
    """One item a write request writes (or checks), before the images are known."""

    operation: str  # PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems
    action: str  # Put | Update | Delete | ConditionCheck
    table: str
    key: Item  # the item's key (a Put's: its whole item)
    request: Mapping[str, Any]  # the action's parameters

    @property
    def transactional(self) -> bool:
        return self.operation == "TransactWriteItems"

    def key_of(self, shape: TableShape) -> dict[str, Any]:
        """The item's primary key (a Put names only its item)."""
        if self.action != "Put" or not shape.keys:
            return dict(self.key)
        return {k: self.key[k] for k in shape.keys if k in self.key}


def item_writes(operation: str, params: Mapping[str, Any]) -> list[ItemWrite]:
    """The items a write request writes (a transaction's checks included)."""
    if operation == "TransactWriteItems":
        found = []
        for entry in params.get("TransactItems", ()):
            ((action, body),) = entry.items()
            key = body["Item"] if action == "Put" else body["Key"]
            found.append(ItemWrite(operation, action, body["TableName"], key, body))
        return found
    if operation == "BatchWriteItem":
        found = []
        for table, requests in params.get("RequestItems", {}).items():
            for request in requests:
                if "PutRequest" in request:
                    body = request["PutRequest"]
                    found.append(ItemWrite(operation, "Put", table, body["Item"], body))
                else:
                    body = request["DeleteRequest"]
                    found.append(ItemWrite(operation, "Delete", table, body["Key"], body))
        return found
    action = {"PutItem": "Put", "UpdateItem": "Update", "DeleteItem": "Delete"}.get(operation)
    if action is None:
        return []
    key = params["Item"] if action == "Put" else params["Key"]
    return [ItemWrite(operation, action, params["TableName"], key, params)]


_CLAUSE = re.compile(r"\b(SET|REMOVE|ADD|DELETE)\b", re.IGNORECASE)


def _split(text: str) -> list[str]:
    """Splits on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def update_changes(
    expression: str, names: Mapping[str, str], values: Mapping[str, Any]
) -> tuple[dict[str, Any], set[str]]:
    """What an ``UpdateExpression`` does to the top-level attributes: the ones it
    sets (to the value, when it is one placeholder; else to None: computed by
    DynamoDB) and the ones it removes."""
    set_to: dict[str, Any] = {}
    removed: set[str] = set()

    def attribute(path: str) -> tuple[str, bool]:
        head = re.split(r"[.\[]", path.strip(), maxsplit=1)[0]
        return names.get(head, head), head != path.strip()

    pieces = _CLAUSE.split(expression)
    for clause, body in zip(pieces[1::2], pieces[2::2], strict=True):
        verb = clause.upper()
        for part in _split(body):
            if verb == "SET":
                path, _, value = part.partition("=")
                name, nested = attribute(path)
                value = value.strip()
                set_to[name] = None if nested or value not in values else values[value]
            elif verb == "REMOVE":
                name, nested = attribute(part)
                if nested:
                    set_to[name] = None
                else:
                    removed.add(name)
            else:  # ADD / DELETE: "path value"
                name, _ = attribute(part.split()[0])
                set_to[name] = None
    return set_to, removed


_UNKNOWN = {"S": "?"}  # a value the request does not show
_OLD = {"S": "old"}  # a stored value the request does not show, other than any new one


def request_images(write: ItemWrite, shape: TableShape) -> tuple[Item | None, Item | None]:
    """Before and after images from the request alone (see the module's docstring)."""
    if write.action == "Put":
        return None, write.key
    key = dict(write.key)
    stored = {k: _OLD for index in shape.indexes for k in index.keys if k not in key} | key
    if write.action == "ConditionCheck":
        return key, key
    if write.action == "Delete":
        return stored, None
    body = write.request
    set_to, removed = update_changes(
        str(body.get("UpdateExpression", "")),
        body.get("ExpressionAttributeNames", {}),
        body.get("ExpressionAttributeValues", {}),
    )
    before = stored | dict.fromkeys(set_to | dict.fromkeys(removed), _OLD)
    after = {n: v for n, v in before.items() if n not in removed}
    after |= {name: _UNKNOWN if value is None else value for name, value in set_to.items()}
    return before, after


def request_cost(write: ItemWrite) -> WriteCost:
    """The rule, on the request's own images (the process meter's view)."""
    shape = shape_of(write.table)
    before, after = request_images(write, shape)
    return write_cost(
        shape,
        before,
        after,
        transactional=write.transactional,
        check=write.action == "ConditionCheck",
    )


def write_units(operation: str, params: Mapping[str, Any]) -> dict[str, float]:
    """WCU per table (GSI writes counted to their table) that AWS charges for a
    write request, by the rule on the request's images."""
    units: dict[str, float] = defaultdict(float)
    for write in item_writes(operation, params):
        units[write.table] += request_cost(write).total
    return dict(units)


def transaction_write_units(items: list[dict[str, Any]]) -> dict[str, float]:
    """Write units per table that AWS charges for these ``TransactItems``."""
    return write_units("TransactWriteItems", {"TransactItems": items})


# ----- the process's and each request's meters -----


@dataclass
class Capacity:
    """Read and write capacity units, per table."""

    read: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    write: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, operation: str, consumed: dict[str, Any]) -> None:
        table, reads, writes = units_of(operation, consumed)
        with self.lock:
            self.read[table] += reads
            self.write[table] += writes

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


def units_of(operation: str, consumed: Mapping[str, Any]) -> tuple[str, float, float]:
    """A ``ConsumedCapacity`` entry as (table, read units, write units)."""
    reads = consumed.get("ReadCapacityUnits")
    writes = consumed.get("WriteCapacityUnits")
    if reads is None and writes is None:
        units = float(consumed.get("CapacityUnits", 0.0))
        reads, writes = (0.0, units) if operation in WRITE_OPERATIONS else (units, 0.0)
    return str(consumed.get("TableName", "?")), float(reads or 0.0), float(writes or 0.0)


PROCESS_TOTALS = Capacity()
_LISTENERS: list[StoreCallListener] = []


def add_listener(listener: StoreCallListener) -> None:
    """``listener`` is told of every call's units, retries and throttling (metrics)."""
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)


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


def _ask_for_capacity(
    params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
) -> None:
    context["table"] = str(params.get("TableName", "several"))  # a label, for the listeners
    if "ReturnConsumedCapacity" in model.input_shape.members:
        params.setdefault("ReturnConsumedCapacity", "TOTAL")


def _count_writes(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    if model.name in WRITE_OPERATIONS:
        context["write_units"] = write_units(model.name, params)


def _unprocessed(parsed: Mapping[str, Any]) -> dict[str, float]:
    """The rule's units of the items a BatchWriteItem left unprocessed (not written)."""
    unprocessed = parsed.get("UnprocessedItems") or {}
    return write_units("BatchWriteItem", {"RequestItems": unprocessed}) if unprocessed else {}


def _record(parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    meta = parsed.get("ResponseMetadata", {})
    throttled = parsed.get("Error", {}).get("Code") in THROTTLING_CODES
    for listener in _LISTENERS:
        table = context.get("table", "several")
        listener.answered(model.name, table, int(meta.get("RetryAttempts", 0)), throttled)
    if meta.get("HTTPStatusCode", 200) != 200:
        return
    if "TableDescription" in parsed or "Table" in parsed:
        register_shape(
            TableShape.from_description(parsed.get("Table") or parsed["TableDescription"])
        )
    entries: list[dict[str, Any]]
    counted: dict[str, float] | None = context.get("write_units")
    if counted is not None:
        left = _unprocessed(parsed)
        entries = [
            {"TableName": t, "WriteCapacityUnits": u - left.get(t, 0.0)} for t, u in counted.items()
        ]
    else:
        consumed = parsed.get("ConsumedCapacity")
        if not consumed:
            return
        entries = consumed if isinstance(consumed, list) else [consumed]
    request = _request_capacity.get()
    for entry in entries:
        PROCESS_TOTALS.add(model.name, entry)
        for listener in _LISTENERS:
            listener.consumed(*units_of(model.name, entry))
        if request is not None:
            request.add(model.name, entry)


def instrument(client: DynamoDBClient) -> None:
    """Makes ``client`` report the capacity each of its calls consumes (reads as
    DynamoDB reports them, writes by the rule) and learn the shapes of the
    tables it describes or creates."""
    client.meta.events.register("provide-client-params.dynamodb.*", _ask_for_capacity)
    client.meta.events.register("provide-client-params.dynamodb.*", _count_writes)
    client.meta.events.register("after-call.dynamodb.*", _record)


def write_hooks(
    client: DynamoDBClient,
    before: Callable[[str, dict[str, Any]], Any],
    after: Callable[[str, dict[str, Any], Any, dict[str, Any]], None],
) -> None:
    """Calls ``before(operation, params)`` ahead of every write call ``client``
    sends and ``after(operation, params, token, parsed)`` once it answered
    (``token``: what ``before`` returned): the census records writes with it."""

    def ahead(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if model.name in WRITE_OPERATIONS:
            context["write_hook"] = (dict(params), before(model.name, params))

    def answered(parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        hooked = context.get("write_hook")
        if hooked is not None:
            after(model.name, hooked[0], hooked[1], parsed)

    client.meta.events.register("provide-client-params.dynamodb.*", ahead)
    client.meta.events.register("after-call.dynamodb.*", answered)
