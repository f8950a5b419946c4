"""Replacing stored events' states on DynamoDB, for ``regsvc seal-names``.

``infra/legacy_names.py`` decides the new states (a user's stream with the
name sealed and its digests recomputed); this writes them, one user's stream
per call, in ONE TransactWriteItems: the items of the events table holding
those events (a packed item's further events are in its ``e``,
:mod:`infra.dynamodb.packing`) and, where the log still serves them from the
copies older deployments wrote (``p="log"``, ids up to ``L``), those copies.
One transaction makes the rewrite all or nothing: a crash cannot leave a
stream with the name sealed but its later digests stale, which a second run
would no longer find (it looks for names not sealed). A stream whose rewrite
does not fit in one transaction is refused before anything is written
(TransactionTooLargeError); a user's stream holds a handful of events.

Index pages hold references ``(oid, ver)`` only, so they need no rewrite. The
rewritten items reach the events table's stream as MODIFY records, which the
indexer does not index (:func:`infra.dynamodb.commits.image_of`: only an
INSERT is a new event).

Run with the service stopped, as on SQLite: the log's reads fetch events
eventually consistent first, since an event item otherwise never changes; a
reader still running could see an item's earlier image for about a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import IntegrityError

from infra.dynamodb.errors import (
    HistoryChangedError,
    TooManyEventsError,
    TransactionTooLargeError,
    translate_errors,
)
from infra.dynamodb.layout import (
    EVENT_PK,
    EVENT_SK,
    EVENTS,
    LOG_PARTITION,
    LOG_PK,
    LOG_SK,
    MAX_ITEM_BYTES,
    MAX_TRANSACT_ITEMS,
    MAX_TRANSACTION_BYTES,
    STATE,
    item_size,
    n_,
    s_,
)
from infra.dynamodb.packing import item_holding, last_version
from infra.dynamodb.pages import read_legacy_head

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import StoredEvent
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

Key = tuple[str, int]
Item = dict[str, Any]


class HistoryRewriter:
    """``infra.legacy_names.Rewrite`` over one events table and its index table."""

    def __init__(self, client: DynamoDBClient, events_table: str, index_table: str) -> None:
        self.client = client
        self.events_table = events_table
        self.index_table = index_table
        self._copies: dict[Key, int] | None = None

    def __call__(self, stored_events: Sequence[StoredEvent]) -> None:
        """Replaces the states of ``stored_events`` (already stored), in one transaction."""
        states = {(str(s.originator_id), s.originator_version): s.state for s in stored_events}
        if not states:
            return
        if len(states) > MAX_TRANSACT_ITEMS:
            msg = f"{len(states)} events to rewrite in one transaction (at most 100)"
            raise TooManyEventsError(msg)
        writes = [
            *(self._put(self.events_table, old, new) for old, new in self._event_items(states)),
            *(self._put(self.index_table, old, new) for old, new in self._copies_of(states)),
        ]
        if len(writes) > MAX_TRANSACT_ITEMS:
            msg = f"{len(writes)} items to rewrite in one transaction (at most 100)"
            raise TooManyEventsError(msg)
        total = sum(item_size(write["Put"]["Item"]) for write in writes)
        if total > MAX_TRANSACTION_BYTES:
            msg = f"{total} bytes to rewrite in one transaction"
            raise TransactionTooLargeError(msg)
        try:
            with translate_errors():
                self.client.transact_write_items(TransactItems=writes)
        except IntegrityError as error:
            msg = "An item changed since it was read; run regsvc seal-names again"
            raise HistoryChangedError(msg) from error

    def _event_items(self, states: dict[Key, bytes]) -> list[tuple[Item, Item]]:
        """Each events-table item holding one of the events, as read and rewritten."""
        rewritten: list[tuple[Item, Item]] = []
        pending = sorted(states)
        while pending:
            oid, ver = pending[0]
            # The decision (the new states and digests) was taken on a consistent
            # read; the item it rewrites must be read the same way.
            old = item_holding(self.client, self.events_table, (oid, ver), consistent=True)
            if old is None:
                msg = f"Event {oid} v{ver} is not in the events table"
                raise HistoryChangedError(msg)
            first, last = int(old[EVENT_SK]["N"]), last_version(old)
            new = dict(old)
            if (oid, first) in states:
                new[STATE] = {"B": states[oid, first]}
            if EVENTS in old:
                further = [dict(entry) for entry in old[EVENTS]["L"]]
                for offset, entry in enumerate(further, start=1):
                    if (oid, first + offset) in states:
                        topic = entry["L"][0]
                        entry["L"] = [topic, {"B": states[oid, first + offset]}]
                new[EVENTS] = {"L": further}
            if item_size(new) > MAX_ITEM_BYTES:
                msg = f"Event item {oid} v{first} would exceed one item's size"
                raise TransactionTooLargeError(msg)
            rewritten.append((old, new))
            pending = [key for key in pending if not (key[0] == oid and first <= key[1] <= last)]
        return rewritten

    def _copies_of(self, states: dict[Key, bytes]) -> list[tuple[Item, Item]]:
        """Each copy of one of the events that older deployments wrote to the
        log, as read and rewritten (none where the log is pages only)."""
        ids = self._copy_ids()
        rewritten: list[tuple[Item, Item]] = []
        for key, state in sorted(states.items()):
            if key not in ids:
                continue
            with translate_errors():
                found = self.client.get_item(
                    TableName=self.index_table,
                    Key={LOG_PK: s_(LOG_PARTITION), LOG_SK: n_(ids[key])},
                    # Rewritten on a condition on what this read saw.
                    ConsistentRead=True,
                )
            old = found.get("Item")
            if old is None:
                continue
            rewritten.append((dict(old), {**old, STATE: {"B": state}}))
        return rewritten

    def _copy_ids(self) -> dict[Key, int]:
        """Where each event's copy is in the log (ids up to ``L``), read once."""
        if self._copies is not None:
            return self._copies
        copies: dict[Key, int] = {}
        legacy = read_legacy_head(self.client, self.index_table)
        query: dict[str, Any] = {
            "TableName": self.index_table,
            "KeyConditionExpression": "#p = :p AND #id <= :hi",
            "ProjectionExpression": "#id, #oid, #ver",
            "ExpressionAttributeNames": {
                "#p": LOG_PK,
                "#id": LOG_SK,
                "#oid": EVENT_PK,
                "#ver": EVENT_SK,
            },
            "ExpressionAttributeValues": {":p": s_(LOG_PARTITION), ":hi": n_(legacy)},
            # Every copy written: one left out would keep its plaintext.
            "ConsistentRead": True,
        }
        with translate_errors():
            while legacy:
                response = self.client.query(**query)
                for item in response.get("Items", []):
                    key = (str(item[EVENT_PK]["S"]), int(item[EVENT_SK]["N"]))
                    copies[key] = int(item[LOG_SK]["N"])
                last_key = response.get("LastEvaluatedKey")
                if not last_key:
                    break
                query["ExclusiveStartKey"] = last_key
        self._copies = copies
        return copies

    @staticmethod
    def _put(table: str, old: Item, new: Item) -> TransactWriteItemTypeDef:
        """A Put of ``new`` on the condition that the item is still ``old``'s
        states. WHY: the new states and the stream's recomputed digests were
        derived from what was read; an item changed since (a second seal-names
        run, a process that was not stopped) would otherwise be overwritten with
        states chained to a history that no longer exists, breaking verify."""
        names = {"#s": STATE}
        values: dict[str, Any] = {":s": old[STATE]}
        condition = "#s = :s"
        if EVENTS in old:  # a packed item: its further events' states too
            names["#e"] = EVENTS
            values[":e"] = old[EVENTS]
            condition += " AND #e = :e"
        return {
            "Put": {
                "TableName": table,
                "Item": new,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }
