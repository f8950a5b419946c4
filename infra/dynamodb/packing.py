"""Each stream's events of one commit in one item, and reading events back.

A commit writes one item per stream it touches (Equinox packs a stream's
events into one item the same way), keyed by that stream's FIRST version in
the commit: ``topic`` and ``state`` of that event, and ``e`` (``EVENTS``), the
``[topic, state]`` of the stream's further events of the commit, versions
``ver + 1, ver + 2, ..`` (dense). An item without ``e`` is one event (every
item written before packing is). A stream's events of a commit that would
make an item too large go on in a second item, keyed by its own first version.

**Why the per-stream condition stays exact.** Each item is put on
``attribute_not_exists(oid)`` of its key. Invariant: a stream's items tile its
versions ``1 .. last`` (each version in exactly one item, no gap). A writer
appends version ``v + 1`` only after reading the stream up to ``v`` as its last
version (ConsistentRead), i.e. ``v`` is the end of the item that was then the
stream's last, and it writes ``v + 1`` as its item's key. In a tiling, the
version after an item's end is either the key of the next item (the put fails:
someone appended since the read) or ``last + 1`` (the put succeeds, the tiling
grows). So two writers that read ``v`` both write key ``v + 1`` and exactly one
wins; a writer cannot write ``v + 2`` without having read ``v + 1``'s item. The
same argument as the index's pages (:mod:`infra.dynamodb.indexer`). The
condition is exact iff every writer keys its item by its first new version:
an insert of a version that some item holds in ``e`` without having read it
(never done by an application, whose versions follow what it loaded) is not
refused by DynamoDB (``tests/dynamodb/test_packing.py`` shows the race and
this precondition).

**Reading.** A stream's Query expands each item into its events. A version
that is not a key lies in the item keyed below it: a Query of ``ver <= v``,
newest first, ``Limit=1`` finds it. :func:`fetch_events` gets events by
``(oid, ver)`` (the index's references are per event): BatchGetItem of the keys
the caller expects to be item keys, then of the first version of every run of
versions still missing, then a Query per version inside an item keyed below it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from infra.dynamodb.datastore import batch_get
from infra.dynamodb.errors import translate_errors
from infra.dynamodb.layout import (
    COMMIT_LEAD,
    EVENT_PK,
    EVENT_SK,
    EVENTS,
    HEAD_HINT,
    MAX_ITEM_BYTES,
    STATE,
    TOPIC,
    item_size,
    n_,
    s_,
    value_size,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from mypy_boto3_dynamodb import DynamoDBClient

Key = tuple[str, int]
Item = dict[str, Any]

# A packed item holds at most this many bytes (DynamoDB's bound is 400 KB;
# MAX_ITEM_BYTES keeps a margin for our size estimate). A stream's events of
# one commit beyond it go on in a further item.
PACK_MAX_BYTES = MAX_ITEM_BYTES


def pack(items: Sequence[Item], max_bytes: int = PACK_MAX_BYTES) -> list[tuple[Item, int]]:
    """The items to write for one commit's per-event ``items`` (in append order,
    each with ``oid``, ``ver``, ``topic``, ``state`` and the commit's links):
    one per stream (or more, when one would exceed ``max_bytes``), in the order
    the streams first appear, each with the index in ``items`` of its first
    event. Consecutive versions of a stream are packed; the first item is the
    first event's (the commit's lead, with its manifest)."""
    by_stream: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        by_stream[str(item[EVENT_PK]["S"])].append(index)
    packed: list[tuple[Item, int]] = []
    for indexes in by_stream.values():
        current: Item | None = None
        size = 0
        previous = -1
        for index in indexes:
            item = items[index]
            version = int(item[EVENT_SK]["N"])
            entry = {"L": [item[TOPIC], item[STATE]]}
            entry_size = 1 + value_size(entry)
            if (
                current is None
                or version != previous + 1
                or size + entry_size + 4 > max_bytes  # + the name and list header
            ):
                current = dict(item)
                size = item_size(current)
                packed.append((current, index))
            else:
                if EVENTS not in current:
                    current[EVENTS] = {"L": []}
                current[EVENTS]["L"].append(entry)
                size += entry_size
            previous = version
    packed.sort(key=lambda pair: pair[1])
    return packed


def expand(item: Mapping[str, Any]) -> list[Item]:
    """The events an item holds, each as an item of one event: the first with
    the item's attributes, the others with ``l``, the key of their commit's lead
    (the item's own key when it leads), and the item's ``h``."""
    first = {name: value for name, value in item.items() if name != EVENTS}
    further = item.get(EVENTS, {}).get("L")
    if not further:
        return [first]
    oid = item[EVENT_PK]
    ver = int(item[EVENT_SK]["N"])
    lead = item.get(COMMIT_LEAD) or {"L": [oid, item[EVENT_SK]]}
    shared = {name: first[name] for name in (EVENT_PK, HEAD_HINT) if name in first}
    events = [first]
    for offset, entry in enumerate(further, start=1):
        topic, state = entry["L"]
        events.append(
            {**shared, EVENT_SK: n_(ver + offset), TOPIC: topic, STATE: state, COMMIT_LEAD: lead}
        )
    return events


def event_count(item: Mapping[str, Any]) -> int:
    """The number of events an item holds."""
    return 1 + len(item.get(EVENTS, {}).get("L", []))


def last_version(item: Mapping[str, Any]) -> int:
    """The highest version an item holds."""
    return int(item[EVENT_SK]["N"]) + event_count(item) - 1


def versions_held(item: Mapping[str, Any]) -> list[Key]:
    """The key of every event an item holds (its own key first)."""
    oid, ver = str(item[EVENT_PK]["S"]), int(item[EVENT_SK]["N"])
    return [(oid, ver + offset) for offset in range(event_count(item))]


def _projection(attributes: Sequence[str]) -> dict[str, Any]:
    """A read's projection of ``attributes`` (none: every attribute), always with
    what expanding an item needs."""
    if not attributes:
        return {}
    names = list(dict.fromkeys([EVENT_PK, EVENT_SK, EVENTS, *attributes]))
    return {
        "ProjectionExpression": ", ".join(f"#a{i}" for i in range(len(names))),
        "ExpressionAttributeNames": {f"#a{i}": name for i, name in enumerate(names)},
    }


def item_holding(
    client: DynamoDBClient,
    table: str,
    key: Key,
    *,
    consistent: bool,
    attributes: Sequence[str] = (),
) -> Item | None:
    """The item holding version ``key[1]`` of stream ``key[0]`` (None: none does):
    the stream's newest item keyed at or below it, if it reaches the version."""
    oid, ver = key
    projection = _projection(attributes)
    query: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "#oid = :oid AND #ver <= :v",
        "ExpressionAttributeValues": {":oid": s_(oid), ":v": n_(ver)},
        "ScanIndexForward": False,
        "Limit": 1,
        "ConsistentRead": consistent,
        **projection,
    }
    query["ExpressionAttributeNames"] = {
        "#oid": EVENT_PK,
        "#ver": EVENT_SK,
        **projection.get("ExpressionAttributeNames", {}),
    }
    with translate_errors():
        response = client.query(**query)
    items = response.get("Items", [])
    if not items or last_version(items[0]) < ver:
        return None
    return dict(items[0])


def _run_starts(keys: Iterable[Key]) -> list[Key]:
    """The first key of every run of consecutive versions of one stream."""
    ordered = sorted(keys)
    return [
        key
        for i, key in enumerate(ordered)
        if i == 0 or ordered[i - 1][0] != key[0] or ordered[i - 1][1] != key[1] - 1
    ]


def fetch_events(
    client: DynamoDBClient,
    table: str,
    keys: Iterable[Key],
    *,
    consistent: bool,
    likely: Iterable[Key] = (),
    attributes: Sequence[str] = (),
) -> dict[Key, Item]:
    """The events of ``keys`` that exist, each as an item of one event (with
    ``attributes`` only, when given).

    ``likely``: keys the caller expects to be item keys (a commit's first
    version of each stream), asked first; then the first version of every run
    still missing (BatchGetItem), then, for a version that is no key, the item
    keyed below it (a Query)."""
    wanted = set(keys)
    pending = set(wanted)
    found: dict[Key, Item] = {}
    probed: set[Key] = set()
    read: dict[str, Any] = {"ConsistentRead": consistent, **_projection(attributes)}

    def absorb(item: Mapping[str, Any]) -> None:
        for event in expand(item):
            key = (str(event[EVENT_PK]["S"]), int(event[EVENT_SK]["N"]))
            if key in pending:
                found[key] = event
                pending.discard(key)

    first_round = [key for key in dict.fromkeys(likely) if key in wanted]
    while pending:
        fresh = first_round or [key for key in _run_starts(pending) if key not in probed]
        first_round = []
        if fresh:
            probed.update(fresh)
            for item in batch_get(
                client,
                table,
                [{EVENT_PK: s_(oid), EVENT_SK: n_(ver)} for oid, ver in fresh],
                **read,
            ):
                absorb(item)
            continue
        # Every run left starts inside an item keyed below it (or is missing).
        for key in _run_starts(pending):
            if key not in pending:
                continue
            holder = item_holding(client, table, key, consistent=consistent, attributes=attributes)
            if holder is not None:
                absorb(holder)
            pending.discard(key)  # found, or missing
    return found
