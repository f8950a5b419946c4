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

The index: pages of references
==============================

One index write is one ``PutItem`` of one *page* (:mod:`infra.dynamodb.pages`),
``id`` = its first notification id, holding the packed ``(oid, ver)`` of whole
commits (about 19 bytes per event): no copy, no head item, no marker.

What the index guarantees, and why
==================================

- **Dense positions; the head without a head item.** The head is the end of the
  last page. A page is put at ``head + 1`` on ``attribute_not_exists(id)``.
  Invariant: the pages tile ``L+1 .. head`` (``L``: the head older deployments
  left, see below). A page is only ever put at ``e + 1`` where ``e`` is the
  end of a page that existed when it was read (or ``L``); in a tiling, the id
  after a page's end is either the start of the next page (the put fails) or
  ``head + 1`` (the put succeeds and the tiling grows). So two indexers that read
  the same head race for the same key and exactly one wins; the loser reads
  the pages it missed and plans again. Ids are dense and every page is written
  after every page below it.
- **One commit together and contiguous.** A page holds whole commits, each's
  events at consecutive ids in append order; the last one ends the commit.
- **Exactly once, without markers.** Each event item a writer appends carries
  ``h``, the end of a page the writer read before the append (0 when it saw
  none): a lower bound of the head at append time. A commit cannot be in a page
  written before it was committed (the indexer learns of it from the stream
  or a consistent read, both after the commit), and every page with a first id
  up to ``h`` was written before the page ending at ``h`` was read. So a
  commit is indexed iff its lead is in a page whose first id is above its
  ``h``. This indexer keeps in memory the pages it read or wrote, a *window*
  holding every page whose first id is above ``covered_from``, up to the head
  it knows; a commit whose ``h`` lies below the window is looked up after
  reading the older pages (ConsistentRead). The check is complete when the
  window reaches the real head, and the put at ``head + 1`` succeeds only
  then: a commit checked as not indexed and put in a page that succeeded was in
  no earlier page. A lost race (someone else's page at ``head + 1``, or our
  own page whose answer was lost and botocore retried the put) reads the new
  pages into the window and plans again, finding the commits they hold.
- **Consistent with every stream's order.** A commit is indexed only once the
  commit holding the previous version of every stream it touches is indexed
  (the same check, its ``h`` on the previous event, read with ConsistentRead)
  or earlier in the same plan; when it is not, it is indexed first (its events
  are committed: they are read with ConsistentRead). An indexed commit is at or
  below the head and a new page above it, so for any two events of one stream
  the lower version has the lower id. A stream's first version
  (``first_version``, eventsourcing's 1) follows nothing, so nothing is read to
  find out: a store whose streams start at another version must say so.

Index items of older deployments
================================

``p="log"`` copies (ids ``1..L``), their head ``p="$head"`` and commit
markers ``p="c#<oid>"`` stay readable: pages start at ``L + 1``, and a commit
whose events carry no ``h`` (or one below ``L``) is indexed iff its marker
exists or it is in a page. Stop the older indexer before starting this one.

The README ("DynamoDB") gives the argument in full; ``shards`` reads the stream.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from eventsourcing.domain import Aggregate

from infra.dynamodb.commits import (
    LRU,
    Commit,
    Key,
    hint_of,
    image_of,
    key_of,
    lead_of,
    manifest_of,
)
from infra.dynamodb.datastore import batch_get
from infra.dynamodb.errors import (
    CONDITION_FAILED_CODES,
    THROTTLING_CODES,
    IndexContentionError,
    IndexOrderError,
    NotificationLogCorruptedError,
    error_code,
    translate,
    translate_errors,
)
from infra.dynamodb.layout import (
    EVENT_PK,
    EVENT_SK,
    LOG_PK,
    LOG_SK,
    marker_key,
    n_,
    s_,
)
from infra.dynamodb.packing import versions_held
from infra.dynamodb.pages import (
    Page,
    first_page,
    fitting_a_page,
    last_page,
    pages_after,
    read_legacy_head,
)
from infra.dynamodb.shards import IndexerLag, ShardPoller

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, Any]

__all__ = ["IndexerLag", "ShardPoller", "StreamIndexer"]

logger = logging.getLogger(__name__)


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
        memo_size: int = 10_000,
        stream_memo_size: int = 100_000,
        window_events: int = 200_000,
        window_seconds: float = 60.0,
        first_version: int = Aggregate.INITIAL_VERSION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        # The version every stream starts at (eventsourcing's, 1): an event
        # of that version follows nothing, so nothing is read to find out.
        self.first_version = first_version
        self.events_table_name = events_table_name
        self.index_table_name = index_table_name
        self.max_attempts = max_attempts
        self._lock = threading.Lock()
        self._head: int | None = None  # the end of the last page known; None: read it
        self._legacy: int | None = None  # L: where the old copies end
        # The window: every page with a first id above _covered_from, up to
        # _head, in id order, and where each of their commits' leads is.
        self._pages: list[Page] = []
        self._learned_at: list[float] = []  # when each page of the window was read or written
        self._covered_from = 0
        self._where: dict[Key, int] = {}
        self._window_size = 0
        self._window_events = window_events
        self._window_seconds = window_seconds
        self._clock = clock
        self._indexed: LRU = LRU(memo_size)  # leads known indexed beyond the window
        self._stream_upto: LRU = LRU(stream_memo_size)  # oid -> highest version indexed
        self.indexed_events = 0
        self.indexed_commits = 0
        self.pages_written = 0
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
        index's pages do not tile the log or events it needs are missing.
        """
        known: dict[Key, Item] = {}
        leads: list[Key] = []
        seen: set[Key] = set()
        for record in records:
            image = image_of(record)
            if image is None:
                continue
            # Under every version it holds: a packed item answers for each.
            known.update(dict.fromkeys(versions_held(image), image))
            lead = lead_of(image)
            if lead not in seen:
                seen.add(lead)
                leads.append(lead)
        if not leads:
            return 0
        with self._lock:
            try:
                return self._index(leads, known)
            finally:
                self._trim()

    @property
    def head(self) -> int:
        """The highest notification id this indexer has seen assigned."""
        return self._head or 0

    def is_indexed(self, lead: Key) -> bool:
        """Whether the commit led by ``lead`` is indexed now."""
        return lead in self.indexed_among([lead])

    def indexed_among(self, leads: Sequence[Key]) -> set[Key]:
        """Those of the commits led by ``leads`` that are indexed now: each one's
        ``h`` read from its lead event (ConsistentRead), then the pages above it
        up to the real head."""
        with self._lock:
            indexed = {lead for lead in leads if self._known_indexed(lead)}
            rest = [lead for lead in leads if lead not in indexed]
            if not rest:
                return indexed
            found = self._get_events(rest)  # a lead not found is not appended yet
            self._sync()
            indexed |= self._indexed_now({lead: hint_of(item) for lead, item in found.items()})
            self._trim()
            return indexed

    def _index(self, leads: Sequence[Key], known: dict[Key, Item]) -> int:
        written = 0
        attempt = 0
        while True:
            if self._head is None:
                self._sync()
            plan = self._plan(leads, known)
            done, complete = self._write(plan)
            written += done
            if complete:
                return written
            # Someone else's page (or our own, its answer lost) took head + 1:
            # read the new pages and plan again.
            attempt += 1
            self.retries += 1
            if attempt >= self.max_attempts:
                msg = f"Gave up indexing after {attempt} attempts (the head kept moving)"
                logger.error(msg)
                raise IndexContentionError(msg)
            self._sync()
            if attempt > 1:
                self._back_off(attempt, "the head moved (another indexer)")

    # ----- planning: which commits, in which order -----

    def _plan(self, leads: Sequence[Key], known: dict[Key, Item]) -> list[Commit]:
        """The commits to index, each after those it depends on (depth first,
        otherwise in the order the records named them)."""
        commits: dict[Key, Commit] = {}
        roots = [lead for lead in leads if not self._known_indexed(lead)]
        for lead in roots:
            commits[lead] = self._load_commit(lead, known)
        indexed = self._indexed_now({lead: commits[lead].hint for lead in roots})
        placed: set[Key] = set()
        plan: list[Commit] = []
        for root in roots:
            if root in placed or root in indexed:
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

    def _known_indexed(self, lead: Key) -> bool:
        """Whether this indexer already knows the commit is indexed (without
        reading anything)."""
        if lead in self._where or lead in self._indexed:
            return True
        # Streams are indexed in version order: past the lead, past the commit.
        upto = self._stream_upto.get(lead[0])
        return upto is not None and upto >= lead[1]

    def _dependencies(
        self, commit: Commit, known: dict[Key, Item], placed: set[Key]
    ) -> Iterator[Key]:
        """The leads of the commits that must be indexed before ``commit``: for
        each stream it touches, the commit of the stream's previous version,
        unless that one is indexed."""
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
                known.update(dict.fromkeys(versions_held(previous), previous))
            lead = lead_of(previous)
            if lead in placed or self._known_indexed(lead):
                continue
            if self._indexed_now({lead: hint_of(previous)}):
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

    def _load_commit(self, lead: Key, known: dict[Key, Item]) -> Commit:
        """The whole commit led by ``lead`` (its keys from the lead's manifest,
        read with ConsistentRead when the records do not hold it)."""
        item = self._lead_item(lead, known)
        return Commit(lead, manifest_of(item), hint_of(item))

    def _get_events(self, keys: Sequence[Key]) -> dict[Key, Item]:
        found = batch_get(
            self.client,
            self.events_table_name,
            [{EVENT_PK: s_(oid), EVENT_SK: n_(ver)} for oid, ver in keys],
            back_off=lambda attempt: self._back_off(attempt, "BatchGetItem left keys unprocessed"),
            # Events of commits being indexed: all of them.
            ConsistentRead=True,
        )
        return {key_of(item): dict(item) for item in found}

    # ----- what is indexed: the window of pages -----

    def _legacy_head(self) -> int:
        """L: the head older deployments left (pages start right after it)."""
        if self._legacy is None:
            page = first_page(self.client, self.index_table_name)
            self._legacy = (
                page.first - 1
                if page is not None
                else read_legacy_head(self.client, self.index_table_name)
            )
        return self._legacy

    def _sync(self) -> None:
        """Brings the window up to the real head (ConsistentRead): the last page
        when nothing is known yet, else every page above the known head."""
        if self._head is None:
            page = last_page(self.client, self.index_table_name)
            if page is None:
                self._head = self._covered_from = self._legacy_head()
                return
            self._pages, self._learned_at, self._where, self._window_size = [], [], {}, 0
            self._covered_from = page.first - 1
            self._head = page.first - 1
            self._add(page)
            return
        for page in pages_after(self.client, self.index_table_name, self._head):
            self._add(page)

    def _add(self, page: Page) -> None:
        """Adds the page after the known head to the window."""
        if self._head is not None and page.first != self._head + 1:
            msg = (
                f"The index's pages do not tile the log: a page starts at {page.first} "
                f"after the head {self._head} (was an item deleted or restored?)"
            )
            logger.error(msg)
            raise NotificationLogCorruptedError(msg)
        self._pages.append(page)
        self._learned_at.append(self._clock())
        self._head = page.end
        self._learn(page)

    def _learn(self, page: Page) -> None:
        for lead, log_position in page.leads():
            self._where[lead] = log_position
        for keys in page.commits:
            for oid, ver in keys:
                upto = self._stream_upto.get(oid)
                if upto is None or ver > upto:
                    self._stream_upto.remember(oid, ver)
        self._window_size += page.count

    def _extend(self, down_to: int) -> None:
        """Reads the pages with a first id in (down_to, covered_from] into the window."""
        older = list(pages_after(self.client, self.index_table_name, down_to, self._covered_from))
        for below, above in zip(older, [*older[1:], None], strict=True):
            end = above.first - 1 if above is not None else self._covered_from
            if below.end != end:
                msg = f"The index's pages do not tile the log: {below.first}..{below.end}"
                logger.error(msg)
                raise NotificationLogCorruptedError(msg)
            self._learn(below)
        self._pages[:0] = older
        self._learned_at[:0] = [self._clock()] * len(older)
        self._covered_from = older[0].first - 1 if older else down_to

    def _trim(self) -> None:
        """Forgets the oldest pages past ``window_events`` events or learned over
        ``window_seconds`` ago (read again if a commit's h lies below the window).
        A new commit's h is about a second old, so memory follows the event rate."""
        oldest_kept = self._clock() - self._window_seconds
        while len(self._pages) > 1 and (
            self._window_size > self._window_events or self._learned_at[0] < oldest_kept
        ):
            page = self._pages.pop(0)
            self._learned_at.pop(0)
            for lead, _ in page.leads():
                self._where.pop(lead, None)
                self._indexed.remember(lead, True)
            self._window_size -= page.count
            self._covered_from = page.end

    def _indexed_now(self, hints: Mapping[Key, int | None]) -> set[Key]:
        """Those of the given commits (lead -> h) in the index, as far as the
        window reaches (every page up to the head this indexer knows; a page put
        at that head + 1 succeeds only if that is the real head)."""
        indexed: set[Key] = set()
        below: dict[Key, int] = {}
        for lead, written_hint in hints.items():
            hint = written_hint
            if self._known_indexed(lead):
                indexed.add(lead)
                continue
            legacy = self._legacy_head()
            if hint is None or hint < legacy:
                # Appended before writers wrote h, or before the first page:
                # the old indexer may have indexed it (its marker says), else
                # only a page can hold it, and every page lies above L.
                if self._marker_exists(lead):
                    self._indexed.remember(lead, True)
                    indexed.add(lead)
                    continue
                hint = legacy
            if hint < self._covered_from:
                below[lead] = hint
        if below:
            self._extend(min(below.values()))
            indexed.update(lead for lead in below if lead in self._where)
        return indexed

    def _marker_exists(self, lead: Key) -> bool:
        with translate_errors():
            response = self.client.get_item(
                TableName=self.index_table_name,
                Key=marker_key(*lead),
                # Decides whether to index a commit: must see the latest.
                ConsistentRead=True,
                ProjectionExpression="#p",
                ExpressionAttributeNames={"#p": LOG_PK},
            )
        return "Item" in response

    # ----- writing: one page per put -----

    def _write(self, plan: list[Commit]) -> tuple[int, bool]:
        """Puts the plan in pages at the head. Returns the events written and
        whether the whole plan was (False: head + 1 was taken)."""
        written = 0
        remaining = list(plan)
        attempt = 0
        while remaining:
            assert self._head is not None
            group = fitting_a_page(remaining)
            page = Page(self._head + 1, tuple(tuple(c.keys) for c in group))
            outcome = self._put(page)
            if outcome == "taken":
                return written, False
            if outcome is not None:  # throttled or a transient error
                attempt += 1
                self.retries += 1
                if attempt >= self.max_attempts:
                    msg = f"Gave up indexing after {attempt} attempts ({outcome})"
                    logger.error(msg)
                    raise IndexContentionError(msg)
                self._back_off(attempt, outcome)
                continue
            attempt = 0
            self._add(page)
            self.pages_written += 1
            self.indexed_commits += len(group)
            self.indexed_events += page.count
            written += page.count
            del remaining[: len(group)]
        return written, True

    def _put(self, page: Page) -> str | None:
        """Puts the page; None when it is written, "taken" when a page holds its
        id, else the transient reason it was not."""
        try:
            self.client.put_item(
                TableName=self.index_table_name,
                Item=page.item(),
                # WHY: compare-and-set on the head. The page is placed at
                # head + 1 on the basis of knowing every page up to head; it is
                # written only if no page starts there, which (pages tiling the
                # log) means head was still the end of the log: ids stay dense,
                # pages never overlap, a page is never overwritten, and the
                # window this indexer checked its commits against was complete.
                ConditionExpression="attribute_not_exists(#id)",
                ExpressionAttributeNames={"#id": LOG_SK},
            )
        except ClientError as e:
            code = error_code(e)
            if code in CONDITION_FAILED_CODES:
                return "taken"
            if code in THROTTLING_CODES or code == "InternalServerError":
                return code
            raise translate(e) from e
        except BotoCoreError as e:
            raise translate(e) from e
        return None

    def _back_off(self, attempt: int, reason: str) -> None:
        delay = random.uniform(0, min(1.0, 0.005 * 2**attempt))  # noqa: S311 - jitter
        logger.info("indexer retries", extra={"attempt": attempt, "reason": reason, "delay": delay})
        time.sleep(delay)
