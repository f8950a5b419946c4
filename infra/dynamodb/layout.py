"""Attribute names, keys and item shapes shared by the recorders and the indexer.

Names are short because DynamoDB counts attribute names in every item's size,
and so in the capacity units of every read and write.

Events table (``<app>_events``; a DynamoDB Stream of new images feeds the
indexer), one item per stream a commit touches (older items: one per event):

==========  ====  ==========================================================
``oid``     S     originator id: partition key
``ver``     N     the stream's first version in the commit: sort key
``topic``   S     of the item's first event
``state``   B     of the item's first event
``e``       L     the ``[topic, state]`` of the stream's further events of the
                  commit, versions ``ver + 1, ..`` (absent: one event; see
                  :mod:`infra.dynamodb.packing`)
``m``       L     on a commit's first (*lead*) item only: the manifest, the
                  ``[oid, ver]`` of every event of the commit in append order
``l``       L     on every other item of a commit: ``[oid, ver]`` of the lead
``h``       N     on every item of a commit: the end of an index page its
                  writer read before the append (0: none seen), a lower bound
                  of the index's head at append time
``g``       S     on every event of a commit that wrote read-table rows: the
                  generation (blue, green) they went to (``repair.py``)
==========  ====  ==========================================================

Index table (``<app>_notifications``, no stream), key ``p`` (S) + ``id`` (N):

=====================  ========================================================
``p="page", id=n``     a page: the notifications ``n ..`` as references, ``n``
                       their number, ``r`` the packed ``(oid, ver)`` of each,
                       grouped by commit (:mod:`infra.dynamodb.pages`)
``p="log", id=n``      (written before pages, read up to ``L``) notification
                       ``n``: ``oid``, ``ver``, ``topic``, ``state``, and
                       ``end`` on the last event of each commit
``p="$head", id=0``    (before pages) ``last`` = ``L``, the highest id of the copies
``p="c#<oid>", id=v``  (before pages) marker of the commit led by (oid, v):
                       ``f`` its first notification id, ``n`` its number of events
``p="k#<shard>",id=0`` the in-process indexer's checkpoint in one stream shard:
                       ``q`` the last indexed sequence number (zero-padded),
                       ``d`` = 1 once the (closed) shard is fully indexed;
                       its lease: ``o`` the poller holding it, ``x`` until
                       when (epoch milliseconds)
=====================  ========================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]

EVENT_PK = "oid"  # originator id (S): partition key of events/snapshots tables
EVENT_SK = "ver"  # originator version (N): sort key of events/snapshots tables
TOPIC = "topic"  # (S)
STATE = "state"  # (B)
EVENTS = "e"  # (L of [S, B]) a stream's further events of the commit (packing.py)
COMMIT_MANIFEST = "m"  # (L of [S, N]) on a commit's lead event item
COMMIT_LEAD = "l"  # ([S, N]) on the other event items of a commit: the lead's key
HEAD_HINT = "h"  # (N) on every event item of a commit: a lower bound of the index's head
GENERATION = "g"  # (S) on every event item of a commit with read-table rows: their generation
NID = "nid"  # notification id (N), on tracking items
LOG_PK = "p"  # (S) partition key of the index table
LOG_SK = "id"  # (N) sort key of the index table: the notification id
LOG_PARTITION = "log"  # partition holding the notification items
HEAD_PARTITION = "$head"  # partition holding the head item
HEAD_LAST = "last"  # (N) last assigned notification id
COMMIT_END = "end"  # (N) on the last notification of each commit
MARKER_PREFIX = "c#"  # commit markers: p = "c#<lead oid>", id = lead version
MARKER_FIRST = "f"  # (N) first notification id of the commit
MARKER_COUNT = "n"  # (N) number of events in the commit
CHECKPOINT_PREFIX = "k#"  # shard checkpoints: p = "k#<shard id>", id = 0
CHECKPOINT_SEQUENCE = "q"  # (S) last indexed sequence number, zero-padded
CHECKPOINT_DONE = "d"  # (N) 1: the closed shard is fully indexed
LEASE_OWNER = "o"  # (S) on a checkpoint item: the poller leasing the shard
LEASE_EXPIRY = "x"  # (N) on a checkpoint item: the lease's end, epoch milliseconds
TRACKING_PK = "app"  # (S) upstream application name (tracking table)

# DynamoDB limits (https://docs.aws.amazon.com/amazondynamodb/latest/
# developerguide/ServiceQuotas.html): 100 items and 4 MB per transaction,
# 400 KB per item. We refuse items above a safety margin below the hard limit,
# because our size estimate (names + values) is close to but not exactly
# DynamoDB's accounting.
MAX_TRANSACT_ITEMS = 100
MAX_ITEM_BYTES = 350 * 1024
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024 - 128 * 1024


def s_(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def n_(value: int) -> AttributeValueTypeDef:
    return {"N": str(value)}


def _number_size(value: str) -> int:
    digits = len(value.lstrip("-").replace(".", "").strip("0")) or 1
    return (digits + 1) // 2 + 1


def value_size(value: Mapping[str, Any]) -> int:
    """Estimates one attribute value's size as DynamoDB counts it."""
    if "S" in value:
        return len(str(value["S"]).encode())
    if "N" in value:
        return _number_size(str(value["N"]))
    if "B" in value:
        b = value["B"]
        return len(b) if isinstance(b, (bytes, bytearray)) else len(str(b)) * 3 // 4
    if "L" in value:
        return 3 + sum(1 + value_size(v) for v in value["L"])
    if "M" in value:
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in value["M"].items())
    return 8  # pragma: no cover (BOOL, NULL, sets: not used here)


def item_size(item: Mapping[str, Any]) -> int:
    """Estimates an item's size as DynamoDB counts it (names plus values)."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def head_key() -> Item:
    return {LOG_PK: s_(HEAD_PARTITION), LOG_SK: n_(0)}


def marker_key(oid: str, ver: int) -> Item:
    return {LOG_PK: s_(MARKER_PREFIX + oid), LOG_SK: n_(ver)}


def checkpoint_key(shard_id: str) -> Item:
    return {LOG_PK: s_(CHECKPOINT_PREFIX + shard_id), LOG_SK: n_(0)}


def index_item(event_item: Mapping[str, Any], log_position: int, *, end: bool) -> Item:
    """The copy of an event item at ``log_position``, as deployments before pages
    wrote the log (kept to read and to test the old format)."""
    item: Item = {
        LOG_PK: s_(LOG_PARTITION),
        LOG_SK: n_(log_position),
        EVENT_PK: event_item[EVENT_PK],
        EVENT_SK: event_item[EVENT_SK],
        TOPIC: event_item[TOPIC],
        STATE: event_item[STATE],
    }
    if end:
        # Where this commit ends: catch-up cuts its batches only here.
        item[COMMIT_END] = n_(1)
    return item
