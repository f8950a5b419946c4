"""eventsourcing recorders backed by DynamoDB (see the package docstring for the
table design and the ordering argument).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import OrderedDict
from contextvars import Context, ContextVar
from threading import Event, Lock, Thread
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from botocore.exceptions import BotoCoreError, ClientError
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DataError,
    IntegrityError,
    ListenNotifySubscription,
    Notification,
    OperationalError,
    PersistenceError,
    ProcessRecorder,
    Recorder,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)

from infra.dynamodb.capacity import shared_among
from infra.dynamodb.datastore import DynamoDBDatastore, TableSpec, batch_get
from infra.dynamodb.errors import (
    CONDITION_FAILED_CODES,
    THROTTLING_CODES,
    AppendContentionError,
    EventTooLargeError,
    NotificationLogCorruptedError,
    TooManyEventsError,
    TransactionTooLargeError,
    cancellation_reasons,
    error_code,
    translate,
    translate_errors,
)
from infra.dynamodb.feed import HeadHint, LogReader, hint_of
from infra.dynamodb.layout import (
    COMMIT_LEAD,
    COMMIT_MANIFEST,
    EVENT_PK,
    EVENT_SK,
    HEAD_HINT,
    LOG_PK,
    LOG_SK,
    MAX_ITEM_BYTES,
    MAX_TRANSACT_ITEMS,
    MAX_TRANSACTION_BYTES,
    NID,
    STATE,
    TOPIC,
    TRACKING_PK,
    item_size,
    n_,
    s_,
)
from infra.dynamodb.read_tables import DynamoDBReadModel, LivePointer, ReadTableChanges
from projections.fold import InlineChanges

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        QueryInputTypeDef,
        TransactWriteItemTypeDef,
    )

    from infra.dynamodb.shards import ShardPoller

    Item = dict[str, AttributeValueTypeDef]
    ItemOut = Mapping[str, Any]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Retries of a read that found a not-yet-visible notification below the
# head (see select_notifications).
MAX_GAP_RETRIES = 6  # sleeps 5, 10, ... 160 ms: about 0.3 s in all
# Commits this process appended and has not yet seen indexed, kept so that
# wait_until_indexed can tell they are (the newest this many).
UNSEEN_COMMITS = 10_000

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
        "tracking" or "read". Raises IntegrityError, DataError,
        OperationalError, or _RetryAppendError for transient contention.
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
        transient = False
        for (kind, label), reason in zip(kinds, reasons, strict=False):
            code = reason.get("Code") or "None"
            if code == "None":
                continue
            if code in CONDITION_FAILED_CODES:
                if kind in ("event", "tracking"):
                    conflicts.append(label)
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
        """A stream's event items (all attributes), following ``LastEvaluatedKey``."""
        if limit is not None and limit <= 0:
            return []
        key_condition = "#oid = :oid"
        values: dict[str, AttributeValueTypeDef] = {
            ":oid": _s(self.encode_originator_id(originator_id))
        }
        names = {"#oid": EVENT_PK}
        if gt is not None and lte is not None:
            key_condition += " AND #ver BETWEEN :lo AND :hi"
            values[":lo"] = _n(gt + 1)
            values[":hi"] = _n(lte)
            if gt + 1 > lte:
                return []
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
        results: list[ItemOut] = []
        with translate_errors():
            while True:
                if limit is not None:
                    query["Limit"] = limit - len(results)
                response = self.client.query(**query)
                results.extend(response.get("Items", []))
                last_key = response.get("LastEvaluatedKey")
                if not last_key or (limit is not None and len(results) >= limit):
                    break
                query["ExclusiveStartKey"] = last_key
        return results


class _PointerMovedError(Exception):
    """Raised before an append's request is sent when its read-table items are for
    a generation that is no longer live, or fenced by a rebuild's switch."""


#: The live pointer and generation of the append this thread is sending.
_SENDING: ContextVar[tuple[LivePointer, str] | None] = ContextVar("_SENDING", default=None)


def _check_live_pointer(**_: Any) -> None:
    """botocore's before-send hook: every HTTP send of an append, botocore's own
    retries included, goes out only while this process's copy of the live
    pointer is fresh and names the generation its items write."""
    sending = _SENDING.get()
    if sending is None:
        return
    pointer, generation = sending
    if not pointer.confirms(generation):
        raise _PointerMovedError(generation)


class DynamoDBApplicationRecorder(DynamoDBAggregateRecorder, ApplicationRecorder):
    """Events appended per stream, plus a totally ordered, gap-free
    notification log that the stream indexer (:mod:`infra.dynamodb.indexer`)
    builds from the events table's DynamoDB Stream.

    ``insert_events`` returns None: notification ids are assigned later, by
    the indexer. :meth:`wait_until_indexed` waits until everything written so
    far is in the log; :meth:`indexed_positions` tells where a commit went.
    """

    # A commit is one transaction of its event items (and read-table rows); the
    # indexer places it in one page of references, far below an item's bound.
    max_events_per_insert = MAX_TRANSACT_ITEMS
    events_stream = True

    def __init__(
        self,
        datastore: DynamoDBDatastore,
        events_table_name: str = "stored_events",
        notifications_table_name: str = "stored_notifications",
    ) -> None:
        super().__init__(datastore, events_table_name)
        # The index table: the notification log, its head, commit markers and
        # the in-process indexer's shard checkpoints. No stream on it.
        self.notifications_table_name = datastore.table_name(notifications_table_name)
        # Number of append attempts retried because of transient contention.
        self.append_retries = 0
        self._stats_lock = Lock()
        self._read_tables: DynamoDBReadModel | None = None
        self._poller: ShardPoller | None = None
        self._unseen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self.log = LogReader(
            self.client,
            self.events_table_name,
            self.notifications_table_name,
            self.decode_originator_id,
        )
        # h of each append: a lower bound of the index's head (see feed.HeadHint).
        self.head_hint = HeadHint(self.client, self.notifications_table_name)

    def table_specs(self) -> list[TableSpec]:
        return [
            *super().table_specs(),
            TableSpec(self.notifications_table_name, LOG_PK, "S", LOG_SK, "N"),
        ]

    # ----- writing -----

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        inline: InlineChanges | None = None,
        contexts: Sequence[Context | None] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        """``contexts``: the request each event was decided in (a batch mixes
        requests), so each request's log line gets its share of the capacity."""
        with shared_among(contexts):
            self._append(stored_events, None, inline)
        self._appended(stored_events)
        return None

    def _appended(self, stored_events: Sequence[StoredEvent]) -> None:
        """Notes a committed append, for wait_until_indexed."""
        if not stored_events:
            return
        lead = stored_events[0]
        key = (self.encode_originator_id(lead.originator_id), lead.originator_version)
        with self._stats_lock:
            self._unseen[key] = None
            while len(self._unseen) > UNSEEN_COMMITS:
                self._unseen.popitem(last=False)

    def read_tables(self) -> DynamoDBReadModel:
        """The read tables that appends fold into (tables created by wiring)."""
        if self._read_tables is None:
            self._read_tables = DynamoDBReadModel(
                self.client, self.datastore.table_name(""), create_tables=False
            )
            self.client.meta.events.register(
                "before-send.dynamodb.TransactWriteItems",
                _check_live_pointer,
                unique_id="regsvc-live-pointer",
            )
        return self._read_tables

    def _inline_items(
        self, inline: InlineChanges | None
    ) -> tuple[list[tuple[TransactWriteItemTypeDef, tuple[str, str]]], str | None]:
        """The read-table changes of an append, as items of its own transaction,
        and the generation of read tables they write (None when there are none)."""
        if inline is None or not inline.relevant:
            return [], None
        model = self.read_tables()
        names = model.tables_for_append()
        writer = ReadTableChanges(model, inline.streams, names)
        inline.write(writer)
        items = [(item, ("read", _describe(item))) for item in writer.operations()]
        return items, names.generation if items else None

    def _inline_still_live(self, generation: str) -> bool:
        """Whether an append's read-table items, written for ``generation``, still
        go to the live tables: each attempt is sent only while this process's
        copy of the live pointer is fresh and not fenced by a rebuild's switch."""
        return self.read_tables().pointer.confirms(generation)

    def _extra_items(
        self, tracking: Tracking | None
    ) -> list[tuple[TransactWriteItemTypeDef, tuple[str, str]]]:
        """Items written in the same transaction (the process recorder's
        tracking item).
        """
        return []

    def _write_tracking_alone(self, tracking: Tracking) -> None:
        """Records tracking when there are no events (process recorder)."""

    def _commit_items(self, stored_events: Sequence[StoredEvent]) -> list[Item]:
        """The event items of one commit, linked so that the indexer can find
        the whole commit from any one of its stream records.

        The first event is the commit's *lead*: it carries the manifest ``m``,
        the (oid, ver) of every event of the commit in append order. Every other
        item carries ``l``, the lead's key. The lead's key is the commit's id
        (an (oid, ver) is written once only, so it names one commit forever).
        Every item carries ``h``, a lower bound of the index's head now, which
        tells the indexer from which page on to look for the commit.
        """
        items = [self._event_item(s) for s in stored_events]
        hint = n_(self.head_hint.value())
        for item in items:
            item[HEAD_HINT] = hint
        lead = items[0]
        lead[COMMIT_MANIFEST] = {"L": [{"L": [i[EVENT_PK], i[EVENT_SK]]} for i in items]}
        for item in items[1:]:
            item[COMMIT_LEAD] = {"L": [lead[EVENT_PK], lead[EVENT_SK]]}
        return items

    def _append(
        self,
        stored_events: Sequence[StoredEvent],
        tracking: Tracking | None,
        inline: InlineChanges | None = None,
    ) -> None:
        inline_items, generation = self._inline_items(inline)
        extras = self._extra_items(tracking) + inline_items
        self._check_events(stored_events, 1, len(extras))
        k = len(stored_events)
        if k == 0:
            if tracking is not None:
                self._write_tracking_alone(tracking)
            return
        if k > self.max_events_per_insert:
            msg = (
                f"Cannot record {k} events as one commit: a commit is one DynamoDB "
                f"transaction, which holds at most {MAX_TRANSACT_ITEMS} items, so at "
                f"most {self.max_events_per_insert} events. Nothing was written."
            )
            raise TooManyEventsError(msg)
        items = list(zip(self._commit_items(stored_events), stored_events, strict=True))
        self._check_sizes(items)
        if k == 1 and not extras:
            # One item: a conditional PutItem is one write, a transaction two.
            try:
                self._put_single(items[0][0], items[0][1])
            except OperationalError as error:
                self._unless_recorded(items[0][0], error)
            except IntegrityError as error:
                # PutItem takes no idempotency token: a retry of a put whose
                # answer was lost fails its own condition, so then ask the
                # table. A first attempt that finds the version taken is a
                # conflict, whatever the item holds (the same bytes inserted
                # twice are still a second insert).
                if not _was_retried(error):
                    raise
                self._unless_recorded(items[0][0], error)
            return
        transact_items = [self._event_put(item) for item, _ in items]
        kinds = [("event", self._label(s)) for s in stored_events]
        for item, kind in extras:
            transact_items.append(item)
            kinds.append(kind)
        deadline = time.monotonic() + self.datastore.append_timeout
        attempt = 0
        while True:
            if generation is not None and not self._inline_still_live(generation):
                # A rebuild's switch began since the items were built: build
                # them again for the generation that is (or becomes) live.
                inline_items, generation = self._inline_items(inline)
                extras = self._extra_items(tracking) + inline_items
                transact_items = transact_items[:k] + [item for item, _ in extras]
                kinds = kinds[:k] + [kind for _, kind in extras]
            sending = _SENDING.set(
                None if generation is None else (self.read_tables().pointer, generation)
            )
            try:
                self._transact(transact_items, kinds)
            except _PointerMovedError as moved:
                # botocore was about to send (or re-send) this attempt after a
                # rebuild's switch began. An earlier send of it may have
                # committed with its answer lost: then it stands; otherwise
                # build the read-table items again for the live generation.
                try:
                    self._unless_recorded(items[0][0], moved)
                except _PointerMovedError:
                    continue
                return
            except OperationalError as error:
                # Timeouts or a lost connection after botocore's retries: the
                # transaction may have committed. Answer with what the table says.
                self._unless_recorded(items[0][0], error)
                return
            except _RetryAppendError as e:
                # Only transient cancellations get here (TransactionConflict:
                # another transaction held one of these items; throttling).
                attempt += 1
                if attempt >= self.datastore.max_append_attempts or time.monotonic() > deadline:
                    msg = (
                        f"Gave up appending {k} events after {attempt} attempts: "
                        f"{e.reason}. Nothing was written."
                    )
                    raise AppendContentionError(msg) from e
                logger.debug("Append attempt %s retried: %s", attempt, e.reason)
                with self._stats_lock:
                    self.append_retries += 1
                self._retry_sleep(attempt)
            else:
                return
            finally:
                _SENDING.reset(sending)

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
        stream's next version."""
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

    def stored_states(self, keys: Sequence[tuple[UUID, int]]) -> dict[tuple[str, int], bytes]:
        """The state of each (stream, version) as the events table holds it, for
        audits comparing the index's copies with the events (consistent reads:
        an audit must see every committed append)."""
        found = batch_get(
            self.client,
            self.events_table_name,
            [
                {EVENT_PK: _s(self.encode_originator_id(oid)), EVENT_SK: n_(version)}
                for oid, version in dict.fromkeys(keys)
            ],
            ProjectionExpression="#oid, #ver, #state",
            ExpressionAttributeNames={"#oid": EVENT_PK, "#ver": EVENT_SK, "#state": STATE},
            ConsistentRead=True,
        )
        return {
            (str(item[EVENT_PK]["S"]), int(item[EVENT_SK]["N"])): bytes(item[STATE]["B"])
            for item in found
        }

    def stream_notifications(
        self, originator_id: UUID, *, gt: int | None = None, limit: int | None = None
    ) -> list[tuple[StoredEvent, int | None]]:
        """A stream's events with their positions in the log (None for an event the
        indexer has not placed yet).

        A position is its commit's first notification id (its page, or for a
        commit indexed before pages its marker) plus the event's place in the
        commit's manifest (on the commit's lead event).
        """
        items = self._stream_items(originator_id, gt=gt, limit=limit)
        keys = [(str(i[EVENT_PK]["S"]), int(i[EVENT_SK]["N"])) for i in items]
        manifests: dict[tuple[str, int], list[tuple[str, int]]] = {}
        leads: list[tuple[str, int]] = []
        for key, item in zip(keys, items, strict=True):
            if COMMIT_LEAD in item:
                oid, ver = item[COMMIT_LEAD]["L"]
                leads.append((str(oid["S"]), int(ver["N"])))
                continue
            leads.append(key)
            manifest = item.get(COMMIT_MANIFEST, {}).get("L")
            manifests[key] = (
                [(str(e["L"][0]["S"]), int(e["L"][1]["N"])) for e in manifest]
                if manifest
                else [key]
            )
        missing = sorted(set(leads) - manifests.keys())
        for found in batch_get(
            self.client,
            self.events_table_name,
            [{EVENT_PK: _s(oid), EVENT_SK: n_(ver)} for oid, ver in missing],
            ProjectionExpression="#oid, #ver, #m",
            ExpressionAttributeNames={"#oid": EVENT_PK, "#ver": EVENT_SK, "#m": COMMIT_MANIFEST},
            ConsistentRead=True,
        ):
            lead = (str(found[EVENT_PK]["S"]), int(found[EVENT_SK]["N"]))
            manifests[lead] = [
                (str(e["L"][0]["S"]), int(e["L"][1]["N"]))
                for e in found.get(COMMIT_MANIFEST, {}).get("L", [])
            ] or [lead]
        # Every item of a commit carries its h: where to look for the commit.
        hints = {lead: hint_of(item) for lead, item in zip(leads, items, strict=True)}
        firsts = self.log.locate_commits(hints)
        placed: list[tuple[StoredEvent, int | None]] = []
        for key, lead, item in zip(keys, leads, items, strict=True):
            first = firsts.get(lead)
            manifest = manifests.get(lead, [])
            position = (
                first + manifest.index(key) if first is not None and key in manifest else None
            )
            placed.append((self._stored_event(item), position))
        return placed

    def _unless_recorded(self, lead: Item, error: Exception) -> None:
        """Re-raises ``error`` unless the commit led by ``lead`` is in the table.

        Called when an append's outcome is unknown (its answer was lost after
        botocore's retries). A commit is all or nothing, so its lead event item
        tells: present with our bytes (the serialised event holds its own
        timestamp and payload, so another writer's event of the same version
        differs), the append committed and is reported as the success it was;
        absent or another's, the error stands. If the table cannot be read
        either, the outcome stays unknown and the error stands (503).
        """
        try:
            with translate_errors():
                found = self.client.query(
                    TableName=self.events_table_name,
                    KeyConditionExpression="#oid = :oid AND #ver = :ver",
                    ExpressionAttributeNames={"#oid": EVENT_PK, "#ver": EVENT_SK},
                    ExpressionAttributeValues={":oid": lead[EVENT_PK], ":ver": lead[EVENT_SK]},
                    # Must see a commit that has just happened.
                    ConsistentRead=True,
                ).get("Items", [])
        except PersistenceError:
            raise error from None
        if not found or (found[0][TOPIC], bytes(found[0][STATE]["B"])) != (
            lead[TOPIC],
            bytes(lead[STATE]["B"]),
        ):
            raise error
        logger.warning(
            "an append's answer was lost (%s); re-reading its stream shows it committed", error
        )

    # ----- the index -----

    def indexer(self) -> ShardPoller:
        """This process's in-process indexer of the events table's stream
        (made on first use; :meth:`ShardPoller.start` runs it in a thread)."""
        with self._stats_lock:
            if self._poller is None:
                from infra.dynamodb.indexer import StreamIndexer
                from infra.dynamodb.shards import ShardPoller

                core = StreamIndexer(
                    self.client, self.events_table_name, self.notifications_table_name
                )
                self._poller = ShardPoller(core, self.datastore.streams_client)
            return self._poller

    def wait_until_indexed(self, timeout: float = 60.0) -> None:
        """Returns once every event written before the call is in the
        notification log. Raises TimeoutError after ``timeout`` seconds.

        Polls the stream to its tip and indexes what it finds, until also every
        commit this process appended (the newest ``UNSEEN_COMMITS``) is seen
        indexed: a stream may show a write a moment after it committed, so an
        empty poll alone does not prove that the log holds it. Writes of other
        processes are covered as far as the stream already shows them.
        """
        deadline = time.monotonic() + timeout
        poller = self.indexer()
        with self._stats_lock:
            written = list(self._unseen)  # not what is written while this waits
        polls = 0
        while True:
            try:
                found = poller.poll_once()
            except OperationalError:
                found = -1
            polls += 1
            # Done when a poll finds nothing new, or, while writes go on (the
            # stream never runs dry), once every shard was read twice since the
            # call and this process's commits written before it are indexed.
            if found == 0 and not poller.shards_changed and not self._still_unseen(poller, written):
                return
            if polls >= 2 and found > 0 and not self._still_unseen(poller, written):
                return
            if time.monotonic() >= deadline:
                msg = f"Commits of this process were not indexed within {timeout}s"
                raise TimeoutError(msg)
            if found <= 0:
                time.sleep(0.02)  # the stream has yet to show them

    def _still_unseen(
        self, poller: ShardPoller, leads: list[tuple[str, int]]
    ) -> list[tuple[str, int]]:
        """Those of ``leads`` (commits this process appended) not indexed yet;
        forgets the rest."""
        indexed = poller.indexer.indexed_among(leads)
        unseen = [lead for lead in leads if lead not in indexed]
        with self._stats_lock:
            for lead in set(leads).difference(unseen):
                self._unseen.pop(lead, None)
        return unseen

    def indexed_positions(self, stored_events: Sequence[StoredEvent]) -> list[int] | None:
        """The notification ids the indexer gave the events of one
        ``insert_events`` call (the same events, in the same order), or None
        while that commit is not yet indexed."""
        if not stored_events:
            return []
        lead = stored_events[0]
        key = (self.encode_originator_id(lead.originator_id), lead.originator_version)
        exists, hint = self.log.commit_hint(key)
        if not exists:
            return None
        first = self.log.locate_commits({key: hint}).get(key)
        if first is None:
            return None
        return list(range(first, first + len(stored_events)))

    # ----- where commits end (projections.catch_up.CommitLog) -----

    def commit_ends(self, lo: int, hi: int) -> Sequence[int]:
        return self._read_log(lambda: self.log.commit_ends(lo, hi, None), lo)

    def commit_end_after(self, position: int) -> int | None:
        found = self._read_log(lambda: self.log.commit_ends(position, None, 1), position)
        return found[0] if found else None

    # ----- reading -----

    def max_notification_id(self) -> int | None:
        """The index's head: the highest notification id the indexer assigned."""
        return self.log.head() or None

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """Returns notifications in id order, from ``start``, at most ``limit``.

        Reads the index's head first (ConsistentRead) and never returns ids
        above it: every id up to the head is in a written page, so the result
        is a gap-free prefix. The pages read must tile the range; a shortfall
        is read again, then refused (see :mod:`infra.dynamodb.feed`).
        """
        if limit <= 0:
            return []
        lo = 1 if start is None else (start if inclusive_of_start else start + 1)
        lo = max(lo, 1)
        return self._read_log(lambda: self.log.select(lo, limit, stop, topics), lo)

    def _read_log(self, read: Callable[[], list[_T] | None], lo: int) -> list[_T]:
        for attempt in range(MAX_GAP_RETRIES):
            result = read()
            if result is not None:
                return result
            time.sleep(0.005 * 2**attempt)
        msg = (
            "Notification log has a gap below its head "
            f"(reading from {lo}); notifications may have been deleted"
        )
        raise NotificationLogCorruptedError(msg)

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        return DynamoDBSubscription(recorder=self, gt=gt, topics=topics)


class DynamoDBSubscription(ListenNotifySubscription[DynamoDBApplicationRecorder]):
    """Polls the index's head (one small ConsistentRead GetItem per interval)
    and pulls new notifications when it has moved. It follows the log as the
    indexer writes it: it does not run the indexer itself.
    """

    def __init__(
        self,
        recorder: DynamoDBApplicationRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
    ) -> None:
        assert isinstance(recorder, DynamoDBApplicationRecorder)
        self._stopping = Event()
        self._poll_interval = recorder.datastore.poll_interval
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._poll_thread = Thread(target=self._poll, daemon=True)
        self._poll_thread.start()

    def stop(self) -> None:
        self._stopping.set()
        super().stop()

    def __exit__(self, *args: object, **kwargs: Any) -> None:
        try:
            super().__exit__(*args, **kwargs)
        finally:
            self._poll_thread.join()

    def _poll(self) -> None:
        seen: int | None = None
        try:
            while not self._stopping.wait(self._poll_interval):
                current = self._recorder.max_notification_id()
                if current != seen:
                    seen = current
                    self._has_been_notified.set()
        except BaseException as e:
            if self._thread_error is None:
                self._thread_error = e
            self.stop()


class DynamoDBTrackingRecorder(DynamoDBRecorder, TrackingRecorder):
    """One item per upstream application: its highest processed notification."""

    def __init__(
        self,
        datastore: DynamoDBDatastore,
        tracking_table_name: str = "notification_tracking",
        **kwargs: Any,
    ) -> None:
        super().__init__(datastore, **kwargs)
        self.tracking_table_name = datastore.table_name(tracking_table_name)

    def table_specs(self) -> list[TableSpec]:
        return [
            *super().table_specs(),
            TableSpec(self.tracking_table_name, TRACKING_PK, "S"),
        ]

    def _tracking_put(self, tracking: Tracking) -> TransactWriteItemTypeDef:
        return {
            "Put": {
                "TableName": self.tracking_table_name,
                "Item": {
                    TRACKING_PK: _s(tracking.application_name),
                    NID: _n(tracking.notification_id),
                },
                # WHY: a position only moves forward. Equal means this upstream
                # notification was already processed (duplicate delivery);
                # lower means an older one arrived late. Either way recording it
                # would repeat or reorder work, so it is an IntegrityError (and
                # in the process recorder the events with it are not written).
                "ConditionExpression": "attribute_not_exists(#app) OR #nid < :nid",
                "ExpressionAttributeNames": {"#app": TRACKING_PK, "#nid": NID},
                "ExpressionAttributeValues": {":nid": _n(tracking.notification_id)},
            }
        }

    def insert_tracking(self, tracking: Tracking) -> None:
        put = self._tracking_put(tracking)["Put"]
        try:
            with translate_errors():
                self.client.put_item(
                    TableName=put["TableName"],
                    Item=put["Item"],
                    # WHY: see _tracking_put.
                    ConditionExpression=put["ConditionExpression"],
                    ExpressionAttributeNames=put["ExpressionAttributeNames"],
                    ExpressionAttributeValues=put["ExpressionAttributeValues"],
                )
        except IntegrityError as e:
            msg = (
                f"Tracking {tracking.application_name} "
                f"{tracking.notification_id} is not ahead of the recorded position"
            )
            raise IntegrityError(msg) from e

    def max_tracking_id(self, application_name: str) -> int | None:
        with translate_errors():
            response = self.client.get_item(
                TableName=self.tracking_table_name,
                Key={TRACKING_PK: _s(application_name)},
                # A follower resumes from this: it must not be stale.
                ConsistentRead=True,
            )
        item = response.get("Item")
        if not item or NID not in item:
            return None
        return int(item[NID]["N"])


class DynamoDBProcessRecorder(
    DynamoDBTrackingRecorder, DynamoDBApplicationRecorder, ProcessRecorder
):
    """Application recorder whose inserts may carry a Tracking object that is
    written in the same transaction as the events.
    """

    def __init__(
        self,
        datastore: DynamoDBDatastore,
        *,
        events_table_name: str = "stored_events",
        notifications_table_name: str = "stored_notifications",
        tracking_table_name: str = "notification_tracking",
    ) -> None:
        DynamoDBApplicationRecorder.__init__(
            self,
            datastore,
            events_table_name=events_table_name,
            notifications_table_name=notifications_table_name,
        )
        self.tracking_table_name = datastore.table_name(tracking_table_name)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        tracking: Tracking | None = kwargs.get("tracking")
        self._append(stored_events, tracking, kwargs.get("inline"))
        self._appended(stored_events)
        return None

    def _extra_items(
        self, tracking: Tracking | None
    ) -> list[tuple[TransactWriteItemTypeDef, tuple[str, str]]]:
        if tracking is None:
            return []
        label = f"tracking {tracking.application_name} {tracking.notification_id}"
        return [(self._tracking_put(tracking), ("tracking", label))]

    def _write_tracking_alone(self, tracking: Tracking) -> None:
        self.insert_tracking(tracking)
