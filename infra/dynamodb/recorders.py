"""The application recorder on DynamoDB: appends (with their read-table rows
and the ``h`` the indexer needs), the notification log as the indexer builds
it, and its subscription (see the package docstring for the table design and
the ordering argument)."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from contextvars import Context, ContextVar
from threading import Lock
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    DataError,
    IntegrityError,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
    Subscription,
    Tracking,
)

from infra.dynamodb.capacity import shared_among
from infra.dynamodb.datastore import DynamoDBDatastore, TableSpec
from infra.dynamodb.errors import (
    AppendContentionError,
    NotificationLogCorruptedError,
    TooManyEventsError,
    translate_errors,
)
from infra.dynamodb.event_store import (
    DynamoDBAggregateRecorder,
    _describe,
    _RetryAppendError,
    _RowsBehindError,
    _was_retried,
)
from infra.dynamodb.feed import HeadHint, LogReader
from infra.dynamodb.layout import (
    COMMIT_LEAD,
    COMMIT_MANIFEST,
    EVENT_PK,
    EVENT_SK,
    GENERATION,
    HEAD_HINT,
    LOG_PK,
    LOG_SK,
    MAX_TRANSACT_ITEMS,
    STATE,
    TOPIC,
    n_,
    s_,
)
from infra.dynamodb.packing import fetch_events, pack
from infra.dynamodb.read_tables import DynamoDBReadModel, LivePointer, ReadTableChanges
from projections.fold import InlineChanges

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
    )

    from infra.dynamodb.indexer import StreamIndexer
    from infra.dynamodb.repair import Decode, ReadRowRepair
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
    # Whether wait_until_indexed may run this process's indexer (read the stream,
    # write the index); False where another indexes (DYNAMODB_INDEXER=false).
    index_in_process = True

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
        # Re-derives rows a rebuild's switch left behind (enable_repairs).
        self.repairs: ReadRowRepair | None = None
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

    def enable_repairs(self, decode: Decode) -> None:
        """Lets appends and this process's indexer repair the read tables
        (``infra/dynamodb/repair.py``); ``decode``: the application's mapper's."""
        from infra.dynamodb.repair import ReadRowRepair

        self.repairs = ReadRowRepair(self, self.datastore.table_name(""), decode)

    def _inline_items(
        self, inline: InlineChanges | None
    ) -> tuple[list[tuple[TransactWriteItemTypeDef, tuple[str, str]]], str | None]:
        """The read-table changes of an append, as items of its own transaction,
        and the generation of read tables they write (None when there are none)."""
        if inline is None or not inline.relevant:
            return [], None
        model = self.read_tables()
        names = model.tables_for_append()
        writer = ReadTableChanges(model, inline.streams, names, guarded=True)
        inline.write(writer)
        items = [
            (item, ("guard", stream) if stream else ("read", _describe(item)))
            for item, stream in writer.labelled()
        ]
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

    def _linked_items(self, stored_events: Sequence[StoredEvent]) -> list[Item]:
        """One item per event of one commit, linked so that the indexer can find
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

    def _commit_items(self, stored_events: Sequence[StoredEvent]) -> list[tuple[Item, StoredEvent]]:
        """The items a commit writes: each stream's events in one item keyed by
        its first version (:mod:`infra.dynamodb.packing` says why the per-stream
        condition stays exact), the lead's first; each with its first event."""
        packed = pack(self._linked_items(stored_events))
        return [(item, stored_events[index]) for item, index in packed]

    def _append(
        self,
        stored_events: Sequence[StoredEvent],
        tracking: Tracking | None,
        inline: InlineChanges | None = None,
    ) -> None:
        inline_items, generation = self._inline_items(inline)
        extras = self._extra_items(tracking) + inline_items
        # Packing only ever needs fewer items than events.
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
        items = self._commit_items(stored_events)
        self._check_sizes(items)
        k = len(items)
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
        kinds = [("event", self._label(s)) for _, s in items]
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
            for put in transact_items[:k]:  # the tag: which generation its rows go to
                event: Any = put["Put"]["Item"]
                event.pop(GENERATION, None)
                if generation is not None:
                    event[GENERATION] = _s(generation)
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
            except _RowsBehindError as behind:
                # The live rows miss an earlier commit of these streams (one
                # landed in the generation a switch replaced): repair, retry.
                attempt += 1
                if self.repairs is None or attempt >= self.datastore.max_append_attempts:
                    raise DataError(f"Read table rows behind their streams: {behind}") from behind
                assert generation is not None
                pointer = self.read_tables().pointer
                if pointer.read() == (generation, False):
                    # In a context of its own: its requests are not this append's.
                    Context().run(self.repairs.repair_all, map(UUID, behind.streams), generation)
                else:
                    pointer.expire()  # switching: build the rows for the live set
            except _RetryAppendError as e:
                # Only transient cancellations get here (TransactionConflict:
                # another transaction held one of these items; throttling).
                attempt += 1
                if attempt >= self.datastore.max_append_attempts or time.monotonic() > deadline:
                    msg = (
                        f"Gave up appending {len(stored_events)} events after {attempt} attempts: "
                        f"{e.reason}. Nothing was written."
                    )
                    raise AppendContentionError(msg) from e
                logger.debug("Append attempt %s retried: %s", attempt, e.reason)
                with self._stats_lock:
                    self.append_retries += 1
                self._retry_sleep(attempt)
            else:
                break
            finally:
                _SENDING.reset(sending)
        if generation is not None and self.repairs is not None:  # sent as no longer _SENDING
            self.repairs.after_append(self.read_tables().pointer, items, generation)

    def stored_states(self, keys: Sequence[tuple[UUID, int]]) -> dict[tuple[str, int], bytes]:
        """The state of each (stream, version) as the events table holds it, for
        audits comparing the index's copies with the events (consistent reads:
        an audit must see every committed append)."""
        found = fetch_events(
            self.client,
            self.events_table_name,
            [(self.encode_originator_id(oid), version) for oid, version in keys],
            consistent=True,
            attributes=(STATE,),
        )
        return {key: bytes(item[STATE]["B"]) for key, item in found.items()}

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
        positions = self.log.positions(items)
        return [(self._stored_event(item), p) for item, p in zip(items, positions, strict=True)]

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
                from infra.dynamodb.shards import ShardPoller

                self._poller = ShardPoller(self.stream_indexer(), self.datastore.streams_client)
            return self._poller

    def stream_indexer(self) -> StreamIndexer:
        """An indexer of this recorder's tables; it repairs the read tables
        after commits a rebuild's switch left behind when repairs are on."""
        from infra.dynamodb.repair import repairing_indexer

        return repairing_indexer(self)

    def wait_until_indexed(self, timeout: float = 60.0, *, every_process: bool = False) -> None:
        """Returns once every event written before the call is in the
        notification log. Raises TimeoutError after ``timeout`` seconds.

        Drains the stream (every shard to its tip as of the call:
        :meth:`ShardPoller.drain`), until also every commit this process
        appended (the newest ``UNSEEN_COMMITS``) is seen indexed: a stream may
        show a write a moment after it committed. ``every_process``: and every
        commit whose version the live read tables hold (``barrier.py``), so
        other processes' writes too. Where another indexes (``index_in_process``
        False: the API Lambda) it only reads the index until they are in it.
        """
        deadline = time.monotonic() + timeout
        with self._stats_lock:
            written = list(self._unseen)  # not what is written while this waits
        if every_process:
            from infra.dynamodb.barrier import committed_leads

            written = list(dict.fromkeys(written + committed_leads(self)))
        if not self.index_in_process:
            while written:
                indexed = self.log.indexed(written)
                self._forget_indexed(indexed)
                written = [lead for lead in written if lead not in indexed]
                if written and time.monotonic() >= deadline:
                    msg = f"Commits of this process were not indexed within {timeout}s"
                    raise TimeoutError(msg)
                if written:
                    time.sleep(0.05)  # the indexer has yet to place them
            return
        poller = self.indexer()
        since = time.time()
        while True:
            # Every shard read to its tip as of the call (one empty page is
            # not the tip: ShardPoller.drain follows the shard past it), then
            # this process's commits written before the call are indexed.
            poller.drain(max(0.0, deadline - time.monotonic()), since=since)
            if not self._still_unseen(poller, written):
                return
            if time.monotonic() >= deadline:
                msg = f"Commits of this process were not indexed within {timeout}s"
                raise TimeoutError(msg)
            time.sleep(0.02)  # the stream has yet to show them

    def _still_unseen(
        self, poller: ShardPoller, leads: list[tuple[str, int]]
    ) -> list[tuple[str, int]]:
        """Those of ``leads`` (commits this process appended) not indexed yet;
        forgets the rest."""
        indexed = poller.indexer.indexed_among(leads)
        self._forget_indexed(indexed)
        return [lead for lead in leads if lead not in indexed]

    def _forget_indexed(self, indexed: set[tuple[str, int]]) -> None:
        with self._stats_lock:
            for lead in indexed:
                self._unseen.pop(lead, None)

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

    def commit_end_after(self, log_position: int) -> int | None:
        found = self._read_log(lambda: self.log.commit_ends(log_position, None, 1), log_position)
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
        from infra.dynamodb.subscription import DynamoDBSubscription

        return DynamoDBSubscription(recorder=self, gt=gt, topics=topics)
