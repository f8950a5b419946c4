"""The event store's appends and stream reads on DynamoDB: one item per stream
and commit (:mod:`infra.dynamodb.packing`; snapshots, and events appended
before packing, one per event), keyed by (oid, ver), each put on its own key's
absence (see the package docstring for the table design)."""

from __future__ import annotations

import random
import time
import uuid
from typing import TYPE_CHECKING, Any
from uuid import UUID

from botocore.exceptions import BotoCoreError, ClientError
from eventsourcing.persistence import (
    AggregateRecorder,
    DataError,
    IntegrityError,
    OperationalError,
    Recorder,
    StoredEvent,
)

from infra.dynamodb.datastore import DynamoDBDatastore, TableSpec, batch_get
from infra.dynamodb.errors import (
    CONDITION_FAILED_CODES,
    THROTTLING_CODES,
    AppendContentionError,
    EventTooLargeError,
    TooManyEventsError,
    TransactionTooLargeError,
    cancellation_reasons,
    error_code,
    translate,
    translate_errors,
)
from infra.dynamodb.layout import (
    EVENT_PK,
    EVENT_SK,
    MAX_ITEM_BYTES,
    MAX_TRANSACT_ITEMS,
    MAX_TRANSACTION_BYTES,
    STATE,
    TOPIC,
    item_size,
    n_,
    s_,
)
from infra.dynamodb.packing import expand, item_holding

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        QueryInputTypeDef,
        TransactWriteItemTypeDef,
    )

    Item = dict[str, AttributeValueTypeDef]
    ItemOut = Mapping[str, Any]


_s = s_
_n = n_


def _describe(item: TransactWriteItemTypeDef) -> str:
    for operation in item.values():
        if isinstance(operation, dict):
            key = operation.get("Key") or operation.get("Item") or {}
            return f"{operation.get('TableName')} {sorted(key.items())[:2]}"
    return "?"


def _was_retried(error: BaseException) -> bool:
    """Whether botocore retried the request that failed with ``error`` (the
    ClientError in its chain of causes says)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ClientError):
            metadata: Any = cause.response.get("ResponseMetadata", {})
            return int(metadata.get("RetryAttempts", 0)) > 0
        cause = cause.__cause__
    return False


class _RetryAppendError(Exception):
    """Internal: the transaction was cancelled for a reason worth retrying."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _RowsBehindError(Exception):
    """Internal: an append's read-table rows were refused because the live
    generation does not hold every earlier commit of these streams (hex ids):
    one landed in the generation a rebuild replaced. Nothing was written."""

    def __init__(self, streams: list[str]) -> None:
        super().__init__(", ".join(streams))
        self.streams = streams


class DynamoDBRecorder(Recorder):
    def __init__(self, datastore: DynamoDBDatastore) -> None:
        assert isinstance(datastore, DynamoDBDatastore)
        self.datastore = datastore
        self.client = datastore.client

    def table_specs(self) -> list[TableSpec]:
        return []

    def create_table(self) -> None:
        for spec in self.table_specs():
            self.datastore.ensure_table(spec)

    def encode_originator_id(self, originator_id: UUID | str) -> str:
        if self.datastore.originator_id_type == "uuid":
            if isinstance(originator_id, UUID):
                return str(originator_id)
            try:
                # Normalise, so that hex and hyphenated forms are one stream.
                return str(UUID(originator_id))
            except ValueError:
                msg = f"Originator ID is not a UUID: {originator_id!r}"
                raise DataError(msg) from None
        return str(originator_id)

    def decode_originator_id(self, value: str) -> UUID | str:
        if self.datastore.originator_id_type == "uuid":
            return UUID(value)
        return value

    def _transact(
        self,
        items: list[TransactWriteItemTypeDef],
        kinds: list[tuple[str, str]],
    ) -> None:
        """Runs one TransactWriteItems and interprets a cancellation.

        ``kinds`` has one (kind, label) per item, kind being one of "event",
        "tracking", "read" or "guard" (a read-table row conditioned on its
        stream's version; label: the stream). Raises IntegrityError, DataError,
        OperationalError, _RowsBehindError, or _RetryAppendError for transient
        contention.
        """
        try:
            self.client.transact_write_items(
                TransactItems=items,
                # One token per logical attempt: botocore's own retries of this
                # request reuse it, so a commit whose response was lost is not
                # applied twice (DynamoDB answers the retry with success).
                ClientRequestToken=uuid.uuid4().hex,
            )
        except ClientError as e:
            if error_code(e) != "TransactionCanceledException":
                raise translate(e) from e
            self._raise_for_cancellation(e, kinds)
        except BotoCoreError as e:
            raise translate(e) from e

    @staticmethod
    def _raise_for_cancellation(e: ClientError, kinds: list[tuple[str, str]]) -> None:
        reasons = cancellation_reasons(e)
        conflicts: list[str] = []
        behind: list[str] = []
        transient = False
        for (kind, label), reason in zip(kinds, reasons, strict=False):
            code = reason.get("Code") or "None"
            if code == "None":
                continue
            if code in CONDITION_FAILED_CODES:
                if kind in ("event", "tracking"):
                    conflicts.append(label)
                elif kind == "guard":
                    behind.append(label)
                elif kind == "read":
                    msg = (
                        f"Read table row {label} is not as the log says it should be; "
                        "rebuild the read tables (nothing was written)"
                    )
                    raise DataError(msg) from e
            elif code == "TransactionConflict" or code in THROTTLING_CODES:
                transient = True
            elif code == "ValidationError":
                msg = f"DynamoDB rejected {kind} {label}: {reason.get('Message')}"
                raise DataError(msg) from e
            else:
                msg = f"DynamoDB cancelled the transaction ({code}): {e}"
                raise OperationalError(msg) from e
        if conflicts:
            msg = "Conflicting records already exist: " + ", ".join(conflicts)
            raise IntegrityError(msg) from e
        if behind:
            raise _RowsBehindError(behind) from e
        if transient or not reasons:
            raise _RetryAppendError("transaction conflict") from e
        msg = f"DynamoDB cancelled the transaction: {e}"  # pragma: no cover
        raise OperationalError(msg) from e  # pragma: no cover

    def _retry_sleep(self, attempt: int) -> None:
        # Full jitter, capped: spreads competing writers apart.
        time.sleep(random.uniform(0, min(0.05, 0.002 * 2**attempt)))  # noqa: S311


class DynamoDBAggregateRecorder(DynamoDBRecorder, AggregateRecorder):
    """Stores events (or snapshots) in one table keyed by (oid, ver)."""

    # Each event is one item.
    max_events_per_insert = MAX_TRANSACT_ITEMS
    # Whether the events table has a stream (the application recorder's has:
    # the indexer reads it; snapshots need none).
    events_stream = False

    def __init__(
        self,
        datastore: DynamoDBDatastore,
        events_table_name: str = "stored_events",
    ) -> None:
        super().__init__(datastore)
        self.events_table_name = datastore.table_name(events_table_name)

    def table_specs(self) -> list[TableSpec]:
        return [
            *super().table_specs(),
            TableSpec(
                self.events_table_name, EVENT_PK, "S", EVENT_SK, "N", stream=self.events_stream
            ),
        ]

    def _event_item(self, s: StoredEvent) -> Item:
        return {
            EVENT_PK: _s(self.encode_originator_id(s.originator_id)),
            EVENT_SK: _n(s.originator_version),
            TOPIC: _s(s.topic),
            STATE: {"B": bytes(s.state)},
        }

    def _event_put(self, item: Item) -> TransactWriteItemTypeDef:
        return {
            "Put": {
                "TableName": self.events_table_name,
                "Item": item,
                # WHY: (oid, ver) must be unique: an aggregate's version may be
                # recorded once only. This is the optimistic concurrency control
                # of event sourcing; failing it means another command already
                # recorded this version -> IntegrityError, and nothing in the
                # transaction is written.
                "ConditionExpression": "attribute_not_exists(#oid)",
                "ExpressionAttributeNames": {"#oid": EVENT_PK},
            }
        }

    @staticmethod
    def _label(s: StoredEvent) -> str:
        return f"event {s.originator_id} v{s.originator_version}"

    def _check_events(
        self, stored_events: Sequence[StoredEvent], items_per_event: int, extra: int
    ) -> None:
        """Refuses, before anything is written, a call that cannot be one
        transaction, or that contains the same (oid, ver) twice.
        """
        n_items = items_per_event * len(stored_events) + extra
        if n_items > MAX_TRANSACT_ITEMS:
            msg = (
                f"Cannot record {len(stored_events)} events atomically: a DynamoDB "
                f"transaction holds at most {MAX_TRANSACT_ITEMS} items and this "
                f"recorder needs {items_per_event} per event plus {extra}, so at "
                f"most {(MAX_TRANSACT_ITEMS - extra) // items_per_event} events per "
                "call. Nothing was written."
            )
            raise TooManyEventsError(msg)
        seen: set[tuple[str, int]] = set()
        for s in stored_events:
            key = (self.encode_originator_id(s.originator_id), s.originator_version)
            if key in seen:
                msg = f"Duplicate {self._label(s)} in one insert"
                raise IntegrityError(msg)
            seen.add(key)

    @staticmethod
    def _check_sizes(items: Sequence[tuple[Item, StoredEvent]]) -> None:
        total = 0
        for item, s in items:
            size = item_size(item)
            if size > MAX_ITEM_BYTES:
                msg = (
                    f"Stored event {s.originator_id} v{s.originator_version} is "
                    f"about {size} bytes; a DynamoDB item may be at most 400 KB and "
                    f"this recorder refuses items over {MAX_ITEM_BYTES} bytes. "
                    "Nothing was written. (Consider compression or snapshots.)"
                )
                raise EventTooLargeError(msg)
            total += size
        if total > MAX_TRANSACTION_BYTES:
            msg = (
                f"Events total about {total} bytes; a DynamoDB transaction may be at "
                f"most 4 MB (this recorder refuses over {MAX_TRANSACTION_BYTES}). "
                "Nothing was written."
            )
            raise TransactionTooLargeError(msg)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        self._check_events(stored_events, 1, 0)
        items = [(self._event_item(s), s) for s in stored_events]
        self._check_sizes(items)
        if len(items) == 1:
            self._put_single(items[0][0], items[0][1])
        elif items:
            kinds = [("event", self._label(s)) for _, s in items]
            transact_items = [self._event_put(i) for i, _ in items]
            deadline = time.monotonic() + self.datastore.append_timeout
            attempt = 0
            while True:
                try:
                    self._transact(transact_items, kinds)
                except _RetryAppendError as e:
                    attempt += 1
                    if attempt >= self.datastore.max_append_attempts or time.monotonic() > deadline:
                        msg = f"Gave up after {attempt} attempts ({e.reason})"
                        raise AppendContentionError(msg) from e
                    self._retry_sleep(attempt)
                else:
                    break
        return None

    def _put_single(self, item: Item, s: StoredEvent) -> None:
        put = self._event_put(item)["Put"]
        try:
            with translate_errors():
                self.client.put_item(
                    TableName=put["TableName"],
                    Item=put["Item"],
                    # WHY: same as in _event_put: one record per (oid, ver).
                    ConditionExpression=put["ConditionExpression"],
                    ExpressionAttributeNames=put["ExpressionAttributeNames"],
                )
        except IntegrityError as e:
            msg = f"Conflicting records already exist: {self._label(s)}"
            raise IntegrityError(msg) from e

    def stream_exists(self, originator_id: UUID | str) -> bool:
        """Whether any event of ``originator_id`` is recorded: one key-only Query
        of one item, where loading a missing aggregate asks for its snapshot and
        its events (two Queries)."""
        with translate_errors():
            found = self.client.query(
                TableName=self.events_table_name,
                KeyConditionExpression="#oid = :oid",
                ExpressionAttributeNames={"#oid": EVENT_PK},
                ExpressionAttributeValues={":oid": _s(self.encode_originator_id(originator_id))},
                ProjectionExpression="#oid",
                Limit=1,
                # A command decides on this: it must see every committed append.
                ConsistentRead=True,
            )
        return bool(found.get("Items"))

    def streams_advanced(self, versions: Mapping[UUID, int]) -> set[str]:
        """The originators of ``versions`` holding an event after the given
        version: one key-only, consistent BatchGetItem per 100 streams, of each
        stream's next version. A version read as a stream's current one is the
        last its item holds (a commit's events of a stream are one item, or
        more, each read whole), so the next version, if any, is an item's key
        (:mod:`infra.dynamodb.packing`)."""
        keys = [
            {EVENT_PK: _s(self.encode_originator_id(oid)), EVENT_SK: n_(version + 1)}
            for oid, version in versions.items()
        ]
        found = batch_get(
            self.client,
            self.events_table_name,
            keys,
            ProjectionExpression="#oid",
            ExpressionAttributeNames={"#oid": EVENT_PK},
            # A refusal stands on this: it must see every committed append.
            ConsistentRead=True,
        )
        return {str(item[EVENT_PK]["S"]) for item in found}

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        return [
            self._stored_event(item)
            for item in self._stream_items(originator_id, gt=gt, lte=lte, desc=desc, limit=limit)
        ]

    def _stored_event(self, item: ItemOut) -> StoredEvent:
        return StoredEvent(
            originator_id=self.decode_originator_id(item[EVENT_PK]["S"]),
            originator_version=int(item[EVENT_SK]["N"]),
            topic=item[TOPIC]["S"],
            state=bytes(item[STATE]["B"]),
        )

    def _stream_items(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> list[ItemOut]:
        """A stream's events, each as an item of one event (all attributes):
        its items expanded (:mod:`infra.dynamodb.packing`), following
        ``LastEvaluatedKey``. An item keyed at or below ``gt`` may hold events
        above it: when the events read do not start at ``gt + 1``, the item
        holding ``gt + 1`` is read too."""
        if limit is not None and limit <= 0:
            return []
        if gt is not None and lte is not None and gt + 1 > lte:
            return []
        oid = self.encode_originator_id(originator_id)
        key_condition = "#oid = :oid"
        values: dict[str, AttributeValueTypeDef] = {":oid": _s(oid)}
        names = {"#oid": EVENT_PK}
        if gt is not None and lte is not None:
            key_condition += " AND #ver BETWEEN :lo AND :hi"
            values[":lo"] = _n(gt + 1)
            values[":hi"] = _n(lte)
        elif gt is not None:
            key_condition += " AND #ver > :gt"
            values[":gt"] = _n(gt)
        elif lte is not None:
            key_condition += " AND #ver <= :lte"
            values[":lte"] = _n(lte)
        if gt is not None or lte is not None:
            names["#ver"] = EVENT_SK
        query: QueryInputTypeDef = {
            "TableName": self.events_table_name,
            "KeyConditionExpression": key_condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not desc,
            # Aggregates are rebuilt from what we read: it must include every
            # acknowledged write.
            "ConsistentRead": True,
        }

        def wanted(items: Sequence[ItemOut]) -> list[ItemOut]:
            events = [
                event
                for item in items
                for event in (reversed(expand(item)) if desc else expand(item))
            ]
            return [
                event
                for event in events
                if (gt is None or int(event[EVENT_SK]["N"]) > gt)
                and (lte is None or int(event[EVENT_SK]["N"]) <= lte)
            ]

        results: list[ItemOut] = []
        with translate_errors():
            while True:
                if limit is not None:
                    # Each item holds one event or more.
                    query["Limit"] = limit - len(results)
                response = self.client.query(**query)
                results.extend(wanted(response.get("Items", [])))
                last_key = response.get("LastEvaluatedKey")
                if not last_key or (limit is not None and len(results) >= limit):
                    break
                query["ExclusiveStartKey"] = last_key
        lowest = min((int(event[EVENT_SK]["N"]) for event in results), default=None)
        enough = desc and limit is not None and len(results) >= limit
        if gt is not None and lowest != gt + 1 and not enough:
            holder = item_holding(
                self.client, self.events_table_name, (oid, gt + 1), consistent=True
            )
            if holder is not None:
                earlier = wanted([holder])
                results = results + earlier if desc else earlier + results
        return results if limit is None else results[:limit]
