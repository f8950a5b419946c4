"""The stream indexer: builds the notification log from the events table's DynamoDB Stream.

Appends write event items only, conditional on their own streams' versions
(:mod:`infra.dynamodb.recorders`); nothing is shared by every command. The
global order is assigned afterwards, here, from the table's stream of new
item images.

Entry point (stable; the in-process poller and the AWS Lambda handler both use it)::

    indexer = StreamIndexer(client, events_table_name, index_table_name)
    indexer.index_records(records)   # DynamoDB Streams records -> events newly indexed

``records`` are DynamoDB Streams records in the standard format, as
``GetRecords`` returns them and as an AWS Lambda event source mapping delivers
them (``event["Records"]``)::

    {"eventName": "INSERT",
     "dynamodb": {"Keys": ..., "NewImage": ..., "SequenceNumber": "...",
                  "ApproximateCreationDateTime": ...}}

(binary attributes as bytes from boto3, or base64 text from a Lambda event).
Records may come in any order, from any shards, repeated, in batches of any
size, from several indexers at once: the result is the same index.

What the index guarantees
=========================

- **Dense positions.** Every event gets one notification id; ids are 1, 2, 3,
  ... with no hole. The head item holds the highest assigned id; an index
  transaction writes ids ``head+1 .. head+k`` and moves the head to ``head+k``
  on condition that it still equals ``head``.
- **One commit together and contiguous.** A commit (one ``insert_events``
  call, one DynamoDB transaction) is indexed by one index transaction: its
  events get consecutive ids in append order, and the last carries ``end``.
  Several small commits may share an index transaction (at most 100 items and
  4 MB), never a commit split over two.
- **Exactly once.** The same transaction puts the commit's marker item (keyed
  by the commit's lead event) on condition that it does not exist yet. A
  re-delivered record, a restart from an older checkpoint, or a second
  indexer can therefore never index a commit twice: its transaction is
  cancelled, the indexer learns the commit is indexed and goes on.
- **Consistent with every stream's order.** A commit is indexed only once the
  commit holding the previous version of every stream it touches is indexed;
  when that one is not, it is indexed first (its events are committed: they
  are read with ConsistentRead). So for any two events of one stream, the
  lower version has the lower id. A stream's first version (``first_version``,
  eventsourcing's 1) follows nothing, so nothing is read to find out: a store
  whose streams start at another version must say so.

See the README ("DynamoDB") for the argument in full.

In-process use
==============

:class:`ShardPoller` reads every shard of the stream (a child shard only after
its parent is fully indexed), feeds the records to ``index_records`` and then
records a checkpoint per shard in the index table, so a restarted poller
resumes where it stopped. ``start()`` runs it in a daemon thread, ``drain()``
polls every shard to its tip and indexes what it finds, ``lag()`` tells how far
behind it is.
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, OperationalError

from infra.dynamodb.datastore import batch_get
from infra.dynamodb.errors import (
    CONDITION_FAILED_CODES,
    THROTTLING_CODES,
    IndexContentionError,
    IndexOrderError,
    NotificationLogCorruptedError,
    cancellation_reasons,
    error_code,
    translate,
    translate_errors,
)
from infra.dynamodb.layout import (
    CHECKPOINT_DONE,
    CHECKPOINT_SEQUENCE,
    COMMIT_LEAD,
    COMMIT_MANIFEST,
    EVENT_PK,
    EVENT_SK,
    HEAD_LAST,
    LOG_PK,
    LOG_SK,
    MARKER_COUNT,
    MARKER_FIRST,
    MAX_TRANSACT_ITEMS,
    MAX_TRANSACTION_BYTES,
    checkpoint_key,
    head_key,
    index_item,
    item_size,
    marker_key,
    n_,
    s_,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
    )
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

    Item = dict[str, Any]

logger = logging.getLogger(__name__)

Key = tuple[str, int]  # an event's (oid, ver)

# Sequence numbers are decimal strings of 21 to 40 digits; zero-padded to this
# width they compare as strings in the same order as numbers.
SEQUENCE_WIDTH = 40


# ----- the core --------------------------------------------------------------


@dataclass
class _Commit:
    """One appended commit: its lead event's key and its events in append order."""

    lead: Key
    keys: list[Key]
    items: list[Item]

    def index_items(self, first: int) -> list[Item]:
        last = len(self.items) - 1
        return [index_item(item, first + n, end=n == last) for n, item in enumerate(self.items)]

    def min_versions(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for oid, ver in self.keys:
            if oid not in found or ver < found[oid]:
                found[oid] = ver
        return found


class _LRU(OrderedDict[Any, Any]):
    """A bounded memo: what the indexer knows is indexed (a cache, never the
    authority: DynamoDB's conditions are)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def remember(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def _key(item: Mapping[str, Any]) -> Key:
    return str(item[EVENT_PK]["S"]), int(item[EVENT_SK]["N"])


def _pair(value: Mapping[str, Any]) -> Key:
    oid, ver = value["L"]
    return str(oid["S"]), int(ver["N"])


def lead_of(item: Mapping[str, Any]) -> Key:
    """The key of the lead event of the commit that wrote ``item``.

    An item with neither a manifest nor a lead reference (written before
    commits were linked) is a commit of its own.
    """
    if COMMIT_LEAD in item:
        return _pair(item[COMMIT_LEAD])
    return _key(item)


def manifest_of(lead_item: Mapping[str, Any]) -> list[Key]:
    if COMMIT_MANIFEST in lead_item:
        return [_pair(entry) for entry in lead_item[COMMIT_MANIFEST]["L"]]
    return [_key(lead_item)]


def _decode_value(value: Mapping[str, Any]) -> Any:
    """A Lambda event carries binary values as base64 text; boto3 gives bytes."""
    if "B" in value and isinstance(value["B"], str):
        return {"B": base64.b64decode(value["B"])}
    if "L" in value:
        return {"L": [_decode_value(v) for v in value["L"]]}
    if "M" in value:
        return {"M": {k: _decode_value(v) for k, v in value["M"].items()}}
    return dict(value)


def decode_image(image: Mapping[str, Any]) -> Item:
    return {name: _decode_value(value) for name, value in image.items()}


def record_time(record: Mapping[str, Any]) -> float | None:
    """A record's ApproximateCreationDateTime as epoch seconds (boto3 gives a
    datetime, a Lambda event a number)."""
    value = record.get("dynamodb", {}).get("ApproximateCreationDateTime")
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return None


class StreamIndexer:
    """Assigns notification ids to the events of DynamoDB Streams records.

    One instance may be called from several threads (calls take turns); any
    number of instances, in any processes, may index the same table at once.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        events_table_name: str,
        index_table_name: str,
        *,
        max_attempts: int = 60,
        memo_size: int = 100_000,
        first_version: int = Aggregate.INITIAL_VERSION,
    ) -> None:
        self.client = client
        # The version every stream starts at (eventsourcing's, 1): an event
        # of that version follows nothing, so nothing is read to find out.
        self.first_version = first_version
        self.events_table_name = events_table_name
        self.index_table_name = index_table_name
        self.max_attempts = max_attempts
        self._lock = threading.Lock()
        self._head: int | None = None  # the head as last seen; None: read it
        self._indexed: _LRU = _LRU(memo_size)  # lead keys of commits known indexed
        self._stream_upto: _LRU = _LRU(memo_size)  # oid -> highest version known indexed
        self.indexed_events = 0
        self.indexed_commits = 0
        self.retries = 0

    # ----- the entry point -----

    def index_records(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Indexes the commits that the given stream records belong to, and every
        earlier commit of their streams not yet indexed. Returns the number of
        events this call indexed (0 when all were indexed already).

        Raises an eventsourcing ``OperationalError`` when DynamoDB stays
        unavailable or contended after bounded retries (nothing half-done: call
        again with the same records), ``IndexOrderError`` when the stored
        events contradict themselves, ``NotificationLogCorruptedError`` when the
        index holds notifications above its head.
        """
        known: dict[Key, Item] = {}
        leads: list[Key] = []
        seen: set[Key] = set()
        for record in records:
            image = self._image(record)
            if image is None:
                continue
            key = _key(image)
            known[key] = image
            lead = lead_of(image)
            if lead not in seen:
                seen.add(lead)
                leads.append(lead)
        if not leads:
            return 0
        with self._lock:
            plan = self._plan(leads, known)
            return self._write(plan)

    @property
    def head(self) -> int:
        """The highest notification id this indexer has seen assigned."""
        return self._head or 0

    @staticmethod
    def _image(record: Mapping[str, Any]) -> Item | None:
        name = record.get("eventName")
        data = record.get("dynamodb", {})
        if name == "REMOVE":
            logger.warning(
                "An event item was deleted from the events table; the index keeps it",
                extra={"keys": str(data.get("Keys"))},
            )
            return None
        image = data.get("NewImage")
        if image is None:
            logger.error(
                "Stream record without a new image (the stream must be NEW_IMAGE); skipped",
                extra={"keys": str(data.get("Keys")), "sequence": data.get("SequenceNumber")},
            )
            return None
        if name == "MODIFY":
            logger.warning("An event item was modified; indexing its new image")
        return decode_image(image)

    # ----- planning: which commits, in which order -----

    def _plan(self, leads: Sequence[Key], known: dict[Key, Item]) -> list[_Commit]:
        """The commits to index, each after those it depends on (depth first,
        otherwise in the order the records named them)."""
        commits: dict[Key, _Commit] = {}
        placed: set[Key] = set()
        plan: list[_Commit] = []
        for root in leads:
            if root in placed or self._known_indexed(root):
                continue
            visiting = {root}
            stack: list[tuple[Key, Iterator[Key] | None]] = [(root, None)]
            while stack:
                lead, dependencies = stack[-1]
                if dependencies is None:
                    commit = commits.get(lead) or self._load_commit(lead, known)
                    commits[lead] = commit
                    dependencies = self._dependencies(commit, known, placed)
                    stack[-1] = (lead, dependencies)
                dependency = next(dependencies, None)
                if dependency is None:
                    stack.pop()
                    visiting.discard(lead)
                    placed.add(lead)
                    plan.append(commits[lead])
                    continue
                if dependency in placed:
                    continue
                if dependency in visiting:
                    msg = (
                        f"Commits led by {dependency} and {lead} each hold an earlier "
                        "version of a stream than the other: the events table "
                        "contradicts itself, and no order can respect both streams"
                    )
                    logger.error(msg)
                    raise IndexOrderError(msg)
                visiting.add(dependency)
                stack.append((dependency, None))
        return plan

    def is_indexed(self, lead: Key) -> bool:
        """Whether the commit led by ``lead`` is indexed: known here, else
        asked of the index (its marker, read with ConsistentRead)."""
        with self._lock:
            if self._known_indexed(lead):
                return True
        return self._marker_exists(lead)

    def _known_indexed(self, lead: Key) -> bool:
        """Whether this indexer already knows the commit is indexed (without
        asking DynamoDB: the commit's own transaction will, if it was)."""
        if lead in self._indexed:
            return True
        # Streams are indexed in version order: past the lead, past the commit.
        upto = self._stream_upto.get(lead[0])
        return upto is not None and upto >= lead[1]

    def _dependencies(
        self, commit: _Commit, known: dict[Key, Item], placed: set[Key]
    ) -> Iterator[Key]:
        """The leads of the commits that must be indexed before ``commit``: for
        each stream it touches, the commit of the stream's previous version,
        unless that one is known to be indexed."""
        for oid, version in commit.min_versions().items():
            if version <= self.first_version:
                continue  # the stream starts here: nothing before it to index
            upto = self._stream_upto.get(oid)
            if upto is not None and upto >= version - 1:
                continue  # the previous version (or a later one) is indexed
            previous = known.get((oid, version - 1))
            if previous is None:
                previous = self._previous_event(oid, version, upto)
                if previous is None:
                    continue  # the stream's first version, or all before are indexed
                known[_key(previous)] = previous
            lead = lead_of(previous)
            if lead in placed or lead in self._indexed:
                continue
            if self._marker_exists(lead):
                self._remember_indexed(lead, [_key(previous)])
                continue
            yield lead

    def _previous_event(self, oid: str, version: int, upto: int | None) -> Item | None:
        """The stream's latest event below ``version`` (and above ``upto``, the
        highest version known indexed), read with ConsistentRead."""
        values: dict[str, AttributeValueTypeDef] = {":oid": s_(oid), ":v": n_(version)}
        condition = "#oid = :oid AND #ver < :v"
        if upto is not None:
            condition = "#oid = :oid AND #ver BETWEEN :lo AND :hi"
            values = {":oid": s_(oid), ":lo": n_(upto + 1), ":hi": n_(version - 1)}
        with translate_errors():
            response = self.client.query(
                TableName=self.events_table_name,
                KeyConditionExpression=condition,
                ExpressionAttributeNames={"#oid": EVENT_PK, "#ver": EVENT_SK},
                ExpressionAttributeValues=values,
                ScanIndexForward=False,
                Limit=1,
                # Decides whether an earlier commit must be indexed first: it
                # must see every committed event.
                ConsistentRead=True,
            )
        items = response.get("Items", [])
        return dict(items[0]) if items else None

    def _marker_exists(self, lead: Key) -> bool:
        with translate_errors():
            response = self.client.get_item(
                TableName=self.index_table_name,
                Key=marker_key(*lead),
                # Decides whether to index a commit first: must see the latest.
                ConsistentRead=True,
                ProjectionExpression="#p",
                ExpressionAttributeNames={"#p": LOG_PK},
            )
        return "Item" in response

    def _lead_item(self, lead: Key, known: dict[Key, Item]) -> Item:
        item = known.get(lead)
        if item is None:
            found = self._get_events([lead])
            if lead not in found:
                msg = (
                    f"Event {lead} leads a commit whose other events exist, but is "
                    "itself missing from the events table"
                )
                raise NotificationLogCorruptedError(msg)
            item = known[lead] = found[lead]
        return item

    def _load_commit(self, lead: Key, known: dict[Key, Item]) -> _Commit:
        """The whole commit led by ``lead``: from the records at hand, the rest
        read with ConsistentRead (a commit's items were written together, so
        they are all there once one of them is)."""
        keys = manifest_of(self._lead_item(lead, known))
        missing = [key for key in keys if key not in known]
        if missing:
            found = self._get_events(missing)
            lost = [key for key in missing if key not in found]
            if lost:
                msg = f"Events {lost} of the commit led by {lead} are missing from the events table"
                raise NotificationLogCorruptedError(msg)
            known.update(found)
        return _Commit(lead, keys, [known[key] for key in keys])

    def _get_events(self, keys: Sequence[Key]) -> dict[Key, Item]:
        found = batch_get(
            self.client,
            self.events_table_name,
            [{EVENT_PK: s_(oid), EVENT_SK: n_(ver)} for oid, ver in keys],
            back_off=lambda attempt: self._back_off(attempt, "BatchGetItem left keys unprocessed"),
            # The events of a commit being indexed: all of them.
            ConsistentRead=True,
        )
        return {_key(item): dict(item) for item in found}

    # ----- writing: head, markers and notifications in one transaction -----

    def _write(self, plan: list[_Commit]) -> int:
        written = 0
        remaining = list(plan)
        attempt = 0
        while remaining:
            if self._head is None:
                self._head = self._read_head()
            group = self._group(remaining)
            outcome = self._transact(group, self._head)
            if outcome is None:  # committed
                self._head += sum(len(c.keys) for c in group)
                for commit in group:
                    self._remember_indexed(commit.lead, commit.keys)
                    written += len(commit.keys)
                self.indexed_commits += len(group)
                self.indexed_events += sum(len(c.keys) for c in group)
                del remaining[: len(group)]
                attempt = 0
                continue
            indexed, head, reason = outcome
            for lead in indexed:
                commit = next(c for c in group if c.lead == lead)
                self._remember_indexed(lead, commit.keys)
            remaining = [c for c in remaining if c.lead not in indexed]
            self._head = head
            if indexed and head is not None:
                continue  # progress: another indexer got there first, no wait
            attempt += 1
            self.retries += 1
            if attempt >= self.max_attempts:
                msg = f"Gave up indexing after {attempt} attempts ({reason})"
                logger.error(msg)
                raise IndexContentionError(msg)
            self._back_off(attempt, reason)
        return written

    @staticmethod
    def _group(remaining: Sequence[_Commit]) -> list[_Commit]:
        """The longest prefix of whole commits that fits one transaction."""
        group: list[_Commit] = []
        items, size = 1, 200  # the head
        for commit in remaining:
            commit_items = len(commit.keys) + 1
            commit_size = 200 + sum(item_size(i) + 40 for i in commit.items)
            if group and (
                items + commit_items > MAX_TRANSACT_ITEMS
                or size + commit_size > MAX_TRANSACTION_BYTES
            ):
                break
            group.append(commit)
            items += commit_items
            size += commit_size
        return group

    def _transact(
        self, group: Sequence[_Commit], head: int
    ) -> tuple[set[Key], int | None, str] | None:
        """Writes the group at ``head + 1 ..``; None when it committed, else
        (leads found already indexed, the head if known, why)."""
        total = sum(len(c.keys) for c in group)
        if head == 0:
            # WHY: we read "nothing indexed yet"; a concurrent first index
            # transaction makes this fail, and we re-read.
            condition = "attribute_not_exists(#last)"
            values: dict[str, AttributeValueTypeDef] = {":new": n_(total)}
        else:
            # WHY: compare-and-set. We take ids head+1..head+total on the basis
            # of reading ``head``; committing only while the head still equals
            # it makes every index transaction extend the log exactly at its
            # end: ids unique, dense, and committed in id order.
            condition = "#last = :head"
            values = {":new": n_(head + total), ":head": n_(head)}
        items: list[TransactWriteItemTypeDef] = [
            {
                "Update": {
                    "TableName": self.index_table_name,
                    "Key": head_key(),
                    "UpdateExpression": "SET #last = :new",
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": {"#last": HEAD_LAST},
                    "ExpressionAttributeValues": values,
                    # The current head comes back with a cancellation: no re-read.
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
        ]
        kinds: list[tuple[str, Key | None]] = [("head", None)]
        position = head
        for commit in group:
            marker = {
                **marker_key(*commit.lead),
                MARKER_FIRST: n_(position + 1),
                MARKER_COUNT: n_(len(commit.keys)),
            }
            items.append(
                {
                    "Put": {
                        "TableName": self.index_table_name,
                        "Item": marker,
                        # WHY: exactly once. A commit is indexed by the one
                        # transaction that creates its marker; a re-delivered
                        # record, an older checkpoint or a second indexer finds
                        # the marker and its whole transaction is cancelled.
                        "ConditionExpression": "attribute_not_exists(#p)",
                        "ExpressionAttributeNames": {"#p": LOG_PK},
                    }
                }
            )
            kinds.append(("marker", commit.lead))
            for item in commit.index_items(position + 1):
                items.append(
                    {
                        "Put": {
                            "TableName": self.index_table_name,
                            "Item": item,
                            # WHY: never overwrite a notification. The head
                            # condition already makes ids unique; this is a
                            # second line of defence should the head item ever
                            # be lost or restored from an older backup (we then
                            # fail loudly instead of rewriting history).
                            "ConditionExpression": "attribute_not_exists(#id)",
                            "ExpressionAttributeNames": {"#id": LOG_SK},
                        }
                    }
                )
                kinds.append(("notification", None))
            position += len(commit.keys)
        try:
            self.client.transact_write_items(
                TransactItems=items,
                # Botocore's own retries of this request reuse the token, so a
                # transaction whose response was lost is not applied twice.
                ClientRequestToken=uuid.uuid4().hex,
            )
        except ClientError as e:
            code = error_code(e)
            if code in THROTTLING_CODES or code in (
                "TransactionInProgressException",
                "InternalServerError",
            ):
                return set(), head, code
            if code != "TransactionCanceledException":
                raise translate(e) from e
            return self._cancelled(e, kinds, head)
        except BotoCoreError as e:
            raise translate(e) from e
        return None

    @staticmethod
    def _cancelled(
        e: ClientError, kinds: Sequence[tuple[str, Key | None]], head: int
    ) -> tuple[set[Key], int | None, str]:
        indexed: set[Key] = set()
        new_head: int | None = head
        head_moved = False
        log_collision = False
        reasons = cancellation_reasons(e)
        why = "transaction conflict"
        for (kind, lead), reason in zip(kinds, reasons, strict=False):
            code = reason.get("Code") or "None"
            if code == "None":
                continue
            if code in CONDITION_FAILED_CODES:
                if kind == "head":
                    head_moved = True
                    old = reason.get("Item") or {}
                    new_head = int(old[HEAD_LAST]["N"]) if HEAD_LAST in old else 0
                elif kind == "marker" and lead is not None:
                    indexed.add(lead)
                elif kind == "notification":
                    log_collision = True
            elif code == "TransactionConflict" or code in THROTTLING_CODES:
                why = code
            else:
                msg = f"DynamoDB cancelled an index transaction ({code}): {reason.get('Message')}"
                raise OperationalError(msg) from e
        if log_collision and not head_moved and not indexed:
            msg = (
                f"The index holds notifications above its head ({head}); refusing "
                "to overwrite them (was the head item restored from a backup?)"
            )
            logger.error(msg)
            raise NotificationLogCorruptedError(msg) from e
        if head_moved and not indexed:
            why = "the head moved (another indexer)"
            if new_head == head:
                new_head = None  # re-read
        return indexed, new_head, why

    def _remember_indexed(self, lead: Key, keys: Sequence[Key]) -> None:
        self._indexed.remember(lead, True)
        for oid, ver in keys:
            upto = self._stream_upto.get(oid)
            if upto is None or ver > upto:
                self._stream_upto.remember(oid, ver)

    def _read_head(self) -> int:
        with translate_errors():
            response = self.client.get_item(
                TableName=self.index_table_name,
                Key=head_key(),
                # Ids are taken from here: a stale head only costs a cancelled
                # transaction, but a fresh one saves it.
                ConsistentRead=True,
            )
        item = response.get("Item")
        return int(item[HEAD_LAST]["N"]) if item and HEAD_LAST in item else 0

    def _back_off(self, attempt: int, reason: str) -> None:
        delay = random.uniform(0, min(1.0, 0.005 * 2**attempt))  # noqa: S311 - jitter
        logger.info("indexer retries", extra={"attempt": attempt, "reason": reason, "delay": delay})
        time.sleep(delay)


# ----- the in-process poller --------------------------------------------------


@dataclass(frozen=True)
class IndexerLag:
    """How far the in-process indexer is behind the events table (for /health)."""

    head: int
    """The highest notification id assigned, as this process last saw it."""
    pending_records: int
    """Stream records read but not yet indexed (0 between polls, unless indexing failed)."""
    oldest_pending_seconds: float | None
    """Age of the oldest such record (its ApproximateCreationDateTime); None when none."""
    seconds_since_caught_up: float | None
    """Since a poll last found every shard at its tip with nothing left to index;
    None before the first such poll."""
    indexed_events: int
    """Events this process indexed since it started."""
    indexed_commits: int
    trimmed_shards: int
    """Shards whose records expired from the stream before they were indexed
    (logged as errors: events may be missing from the index)."""
    last_error: str | None
    running: bool


@dataclass
class _Shard:
    shard_id: str
    parent: str | None


class ShardPoller:
    """Reads the events table's stream shard by shard and feeds the indexer.

    Checkpoints (the last indexed sequence number of each shard, and whether a
    closed shard is done) live in the index table, so a new poller resumes
    where the last one stopped. Every record after a checkpoint is read again
    after a restart; the indexer's markers make that harmless.
    """

    def __init__(
        self,
        indexer: StreamIndexer,
        streams_client: DynamoDBStreamsClient,
        *,
        poll_interval: float = 0.25,
        records_per_read: int = 1000,
        shard_refresh_seconds: float = 30.0,
    ) -> None:
        self.indexer = indexer
        self.streams = streams_client
        self.client = indexer.client
        self.poll_interval = poll_interval
        self.records_per_read = records_per_read
        self.shard_refresh_seconds = shard_refresh_seconds
        self._round_lock = threading.Lock()
        self._stream_arn: str | None = None
        self._shards: dict[str, _Shard] = {}
        self._shards_read_at = float("-inf")
        self._iterators: dict[str, str] = {}
        self._checkpoints: dict[str, str | None] = {}  # shard -> last indexed sequence number
        self._done: set[str] = set()
        self._warned_parents: set[str] = set()
        self._pending = 0
        self._pending_since: float | None = None
        self._caught_up_at: float | None = None
        # Wall-clock start of the last round that found the stream empty: every
        # record read later was written after it.
        self._empty_since: float | None = None
        self._trimmed = 0
        self._shards_changed = False
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----- running -----

    def start(self) -> None:
        """Runs the poller in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="stream-indexer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                read = self.poll_once()
            except Exception as error:
                failures += 1
                delay = min(5.0, 0.1 * 2**failures)
                logger.exception(
                    "stream indexer poll failed; retrying",
                    extra={"failures": failures, "delay": delay, "error": str(error)},
                )
                self._stop.wait(delay)
                continue
            failures = 0
            if not read:
                self._stop.wait(self.poll_interval)

    @property
    def shards_changed(self) -> bool:
        """Whether the last poll found shards opened or closed (poll again to be sure)."""
        return self._shards_changed

    def drain(self, timeout: float = 60.0) -> None:
        """Polls every shard until a poll finds nothing new: then every record
        the stream held when this was called is indexed. Raises TimeoutError
        after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if self.poll_once() == 0 and not self._shards_changed:
                    return
            except OperationalError as error:
                last_error = error
                time.sleep(0.05)
        msg = f"The stream indexer did not catch up within {timeout}s"
        raise TimeoutError(msg) from last_error

    def lag(self) -> IndexerLag:
        now = time.time()
        pending_since = self._pending_since
        return IndexerLag(
            head=self.indexer.head,
            pending_records=self._pending,
            oldest_pending_seconds=(
                None if pending_since is None else max(0.0, now - pending_since)
            ),
            seconds_since_caught_up=(
                None if self._caught_up_at is None else time.monotonic() - self._caught_up_at
            ),
            indexed_events=self.indexer.indexed_events,
            indexed_commits=self.indexer.indexed_commits,
            trimmed_shards=self._trimmed,
            last_error=self._last_error,
            running=self.running,
        )

    # ----- one round -----

    def poll_once(self) -> int:
        """Reads each readable shard once, indexes what it read, checkpoints.
        Returns the number of records read."""
        with self._round_lock:
            try:
                return self._round()
            except Exception as error:
                self._last_error = f"{type(error).__name__}: {error}"
                raise

    def _round(self) -> int:
        started = time.time()
        self._shards_changed = False
        self._refresh_shards()
        reads: list[tuple[str, list[dict[str, Any]], str | None]] = []
        for shard_id in self._readable():
            iterator = self._iterator(shard_id)
            if iterator is None:
                continue
            response = self._get_records(shard_id, iterator)
            if response is None:
                continue
            records, next_iterator = response
            reads.append((shard_id, records, next_iterator))
        records = [record for _, shard_records, _ in reads for record in shard_records]
        if records:
            times = [t for t in (record_time(r) for r in records) if t is not None]
            self._pending = len(records)
            if self._pending_since is None:
                # Records carry their creation time rounded down (to the second
                # on AWS, to the minute on DynamoDB Local): no earlier than the
                # last empty read, which bounds it better.
                oldest = min(times) if times else started
                self._pending_since = max(oldest, self._empty_since or oldest)
            try:
                self.indexer.index_records(records)
            except Exception:
                # Read these again from the checkpoints next time.
                for shard_id, _, _ in reads:
                    self._iterators.pop(shard_id, None)
                raise
        self._pending = 0
        self._pending_since = None
        for shard_id, shard_records, next_iterator in reads:
            if shard_records:
                self._checkpoint(shard_id, str(shard_records[-1]["dynamodb"]["SequenceNumber"]))
            if next_iterator is None:
                self._finish(shard_id)
            else:
                self._iterators[shard_id] = next_iterator
        if not records and not self._shards_changed:
            self._caught_up_at = time.monotonic()
            self._empty_since = started
        self._last_error = None
        return len(records)

    # ----- shards and lineage -----

    def _arn(self) -> str:
        if self._stream_arn is None:
            with translate_errors():
                table = self.client.describe_table(TableName=self.indexer.events_table_name)
            arn = table["Table"].get("LatestStreamArn")
            if not arn:
                msg = f"Table {self.indexer.events_table_name} has no stream to index"
                raise OperationalError(msg)
            self._stream_arn = arn
        return self._stream_arn

    def _refresh_shards(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._shards_read_at < self.shard_refresh_seconds:
            return
        arn = self._arn()
        shards: dict[str, _Shard] = {}
        start: str | None = None
        with translate_errors():
            while True:
                if start is None:
                    response = self.streams.describe_stream(StreamArn=arn)
                else:
                    response = self.streams.describe_stream(
                        StreamArn=arn, ExclusiveStartShardId=start
                    )
                description = response["StreamDescription"]
                for shard in description.get("Shards", []):
                    shard_id = shard["ShardId"]
                    shards[shard_id] = _Shard(shard_id, shard.get("ParentShardId"))
                start = description.get("LastEvaluatedShardId")
                if not start:
                    break
        if set(shards) != set(self._shards):
            self._shards_changed = True
        self._shards = shards
        self._shards_read_at = now

    def _readable(self) -> list[str]:
        """Shards not yet done whose parent is done (or gone), parents first,
        then by shard id: a child's records follow its parent's."""
        ordered: list[str] = []
        depth: dict[str, int] = {}

        def level(shard_id: str) -> int:
            if shard_id not in depth:
                parent = self._shards[shard_id].parent
                depth[shard_id] = 0
                depth[shard_id] = (
                    level(parent) + 1 if parent is not None and parent in self._shards else 0
                )
            return depth[shard_id]

        for shard_id in sorted(self._shards, key=lambda s: (level(s), s)):
            if self._is_done(shard_id):
                continue
            parent = self._shards[shard_id].parent
            if parent is not None and not self._is_done(parent):
                if parent in self._shards:
                    continue  # the parent's records come first
                if parent not in self._warned_parents:
                    self._warned_parents.add(parent)
                    logger.error(
                        "Parent shard left the stream before the indexer finished it: "
                        "records it held may be missing from the index (events of "
                        "streams written again are recovered as predecessors)",
                        extra={"shard": shard_id, "parent": parent},
                    )
            ordered.append(shard_id)
        return ordered

    def _is_done(self, shard_id: str) -> bool:
        if shard_id in self._done:
            return True
        self._load_checkpoint(shard_id)
        return shard_id in self._done

    def _load_checkpoint(self, shard_id: str) -> str | None:
        if shard_id in self._checkpoints:
            return self._checkpoints[shard_id]
        with translate_errors():
            response = self.client.get_item(
                TableName=self.indexer.index_table_name,
                Key=checkpoint_key(shard_id),
                # Where to resume: the latest checkpoint of any poller.
                ConsistentRead=True,
            )
        item = response.get("Item") or {}
        sequence = item["r"]["S"] if "r" in item else None
        if item.get(CHECKPOINT_DONE):
            self._done.add(shard_id)
        self._checkpoints[shard_id] = sequence
        return sequence

    def _iterator(self, shard_id: str) -> str | None:
        iterator = self._iterators.get(shard_id)
        if iterator is not None:
            return iterator
        arn = self._arn()
        sequence = self._load_checkpoint(shard_id)
        try:
            if sequence is None:
                response = self.streams.get_shard_iterator(
                    StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )
            else:
                response = self.streams.get_shard_iterator(
                    StreamArn=arn,
                    ShardId=shard_id,
                    ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                    SequenceNumber=sequence,
                )
        except ClientError as e:
            code = error_code(e)
            if code == "TrimmedDataAccessException":
                self._trimmed += 1
                logger.error(
                    "The stream no longer holds records after this shard's checkpoint "
                    "(older than the 24 h retention): events written meanwhile may be "
                    "missing from the index; reading on from the oldest record left",
                    extra={"shard": shard_id, "checkpoint": sequence},
                )
                with translate_errors():
                    response = self.streams.get_shard_iterator(
                        StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                    )
            elif code == "ResourceNotFoundException":
                logger.warning("Shard is gone from the stream", extra={"shard": shard_id})
                self._refresh_shards(force=True)
                return None
            else:
                raise translate(e) from e
        except BotoCoreError as e:
            raise translate(e) from e
        found = response.get("ShardIterator")
        if found is None:  # a closed shard with nothing after the checkpoint
            self._finish(shard_id)
            return None
        self._iterators[shard_id] = found
        return found

    def _get_records(
        self, shard_id: str, iterator: str
    ) -> tuple[list[dict[str, Any]], str | None] | None:
        try:
            response = self.streams.get_records(ShardIterator=iterator, Limit=self.records_per_read)
        except ClientError as e:
            code = error_code(e)
            if code == "ExpiredIteratorException":
                logger.warning(
                    "Shard iterator expired; resuming from the checkpoint",
                    extra={"shard": shard_id},
                )
                self._iterators.pop(shard_id, None)
                self._shards_changed = True
                return None
            if code == "TrimmedDataAccessException":
                self._iterators.pop(shard_id, None)
                self._checkpoints.pop(shard_id, None)
                self._shards_changed = True
                return None  # the iterator is renewed (and the loss logged) next round
            if code == "ResourceNotFoundException":
                self._iterators.pop(shard_id, None)
                self._refresh_shards(force=True)
                return None
            raise translate(e) from e
        except BotoCoreError as e:
            raise translate(e) from e
        records = [dict(r) for r in response.get("Records", [])]
        return records, response.get("NextShardIterator")

    def _checkpoint(self, shard_id: str, sequence: str, *, done: bool = False) -> None:
        values: dict[str, AttributeValueTypeDef] = {
            ":q": s_(sequence.zfill(SEQUENCE_WIDTH)),
            ":r": s_(sequence),
        }
        update = "SET #q = :q, #r = :r"
        if done:
            update += ", #d = :d"
            values[":d"] = n_(1)
        try:
            with translate_errors():
                self.client.update_item(
                    TableName=self.indexer.index_table_name,
                    Key=checkpoint_key(shard_id),
                    UpdateExpression=update,
                    # WHY: a checkpoint only moves forward. Another poller may
                    # have indexed further; moving it back would only cost a
                    # longer re-read after a restart, but forward-only keeps
                    # "everything up to q is indexed" the one meaning of q.
                    ConditionExpression="attribute_not_exists(#q) OR #q <= :q",
                    ExpressionAttributeNames={"#q": CHECKPOINT_SEQUENCE, "#r": "r"}
                    | ({"#d": CHECKPOINT_DONE} if done else {}),
                    ExpressionAttributeValues=values,
                )
        except IntegrityError:
            return  # another poller checkpointed further: fine
        self._checkpoints[shard_id] = sequence

    def _finish(self, shard_id: str) -> None:
        """A closed shard read to its end (and indexed): its children may start."""
        sequence = self._checkpoints.get(shard_id) or "0"
        self._checkpoint(shard_id, sequence, done=True)
        self._done.add(shard_id)
        self._iterators.pop(shard_id, None)
        self._shards_changed = True
        self._shards_read_at = float("-inf")  # look for its children
        logger.info("Stream shard fully indexed", extra={"shard": shard_id})
