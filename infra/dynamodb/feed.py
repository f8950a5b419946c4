"""Reading the notification log: pages of references, and the events they name.

The log is the index's pages (:mod:`infra.dynamodb.pages`) above ``L`` and, up
to ``L``, the copies older deployments wrote (``p="log"``). Every read that
decides starts from the head read with ConsistentRead (the end of the last
page: every page up to it is written, because a page is only put after the
page before it was read) and reads only ids up to it; pages are read with
ConsistentRead and checked to tile the range they cover, so a result is a
gap-free prefix of the log. The events are then fetched with BatchGetItem,
eventually consistent first (an event item never changes once written, so any
copy of it that is found is the event), any key not found again with
ConsistentRead: an index page is written after its events, so a referenced
event that a consistent read cannot find is missing, and that is an error,
never a silent hole.

:class:`HeadHint` gives writers the ``h`` of each append: the end of a page
read (eventually consistent, at most about once a second) before it.
"""

from __future__ import annotations

import logging
import threading
import time
from itertools import chain
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Notification, PersistenceError

from infra.dynamodb.commits import Key, hint_of, key_of, pair_of
from infra.dynamodb.datastore import batch_get
from infra.dynamodb.errors import NotificationLogCorruptedError, translate_errors
from infra.dynamodb.layout import (
    COMMIT_END,
    COMMIT_LEAD,
    COMMIT_MANIFEST,
    EVENT_PK,
    EVENT_SK,
    HEAD_HINT,
    LOG_PARTITION,
    LOG_PK,
    LOG_SK,
    MARKER_FIRST,
    MARKER_PREFIX,
    STATE,
    TOPIC,
    marker_key,
    n_,
    s_,
)
from infra.dynamodb.packing import Item, fetch_events
from infra.dynamodb.pages import (
    first_page,
    last_page,
    locate,
    page_at,
    pages_after,
    read_legacy_head,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from uuid import UUID

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, QueryInputTypeDef

    from infra.dynamodb.pages import Page

logger = logging.getLogger(__name__)


# DynamoDB's IN operator takes at most 100 operands (legacy copies only).
MAX_FILTER_TOPICS = 100
# Events fetched per BatchGetItem round when filtering by topic.
TOPIC_CHUNK = 100


class LogReader:
    """Reads the notification log of one index table over one events table."""

    def __init__(
        self,
        client: DynamoDBClient,
        events_table: str,
        index_table: str,
        decode_oid: Callable[[str], UUID | str],
    ) -> None:
        self.client = client
        self.events_table = events_table
        self.index_table = index_table
        self.decode_oid = decode_oid
        self._legacy: int | None = None

    # ----- the head, and where pages start -----

    def legacy_head(self) -> int:
        """L: the last id of the copies older deployments wrote (0: none)."""
        if self._legacy is not None:
            return self._legacy
        page = first_page(self.client, self.index_table)
        if page is None:
            return read_legacy_head(self.client, self.index_table)
        self._legacy = page.first - 1  # fixed once a page exists
        return self._legacy

    def head(self) -> int:
        """The highest notification id assigned (ConsistentRead)."""
        page = last_page(self.client, self.index_table)
        if page is not None:
            return page.end
        return read_legacy_head(self.client, self.index_table)

    # ----- notifications -----

    def select(
        self, lo: int, limit: int, stop: int | None, topics: Sequence[str]
    ) -> list[Notification] | None:
        """Notifications from ``lo`` up to the head (and ``stop``), at most
        ``limit``; None when the pages read do not tile the range (read again)."""
        hi = self.head()
        if stop is not None:
            hi = min(hi, stop)
        if lo > hi:
            return []
        results: list[Notification] = []
        legacy = self.legacy_head()
        if lo <= legacy:
            copies = self._select_copies(lo, min(hi, legacy), limit, topics)
            if copies is None:
                return None
            results.extend(copies)
            if len(results) >= limit or hi <= legacy:
                return results
            lo = legacy + 1
        topic_set = frozenset(topics)
        wanted: list[tuple[int, Key, bool]] = []
        entries = self._entries(lo, hi)
        for entry in entries:
            if entry is None:
                return None
            wanted.append(entry)
            chunk = limit - len(results) if not topic_set else max(TOPIC_CHUNK, limit)
            if len(wanted) >= chunk:
                results.extend(self._notifications(wanted, topic_set))
                wanted = []
                if len(results) >= limit:
                    return results[:limit]
        results.extend(self._notifications(wanted, topic_set))
        return results[:limit]

    def _entries(self, lo: int, hi: int) -> Iterator[tuple[int, Key, bool] | None]:
        """(id, event key, ends a commit) of ids lo..hi from the pages; a None
        means the pages read do not tile the range."""
        for entry in self._page_entries(lo, hi):
            if entry[0] < 0:
                yield None
                return
            yield entry

    def _page_entries(self, lo: int, hi: int) -> Iterator[tuple[int, Key, bool]]:
        """(id, key, ends a commit) for ids lo..hi; (-1, ..) when a gap shows."""
        gap: tuple[int, Key, bool] = (-1, ("", 0), False)
        first = page_at(self.client, self.index_table, lo)
        if first is None or first.end < lo:
            yield gap
            return
        expected = first.first
        pages: Iterator[Page] = chain([first], pages_after(self.client, self.index_table, lo, hi))
        for page in pages:
            if page.first != expected:
                yield gap
                return
            expected = page.end + 1
            for log_position, key, end in page.entries():
                if log_position > hi:
                    return
                if log_position >= lo:
                    yield log_position, key, end
        if expected <= hi:
            yield gap

    def _notifications(
        self, wanted: Sequence[tuple[int, Key, bool]], topics: frozenset[str]
    ) -> list[Notification]:
        # Each stream's first version in a commit keys the item holding the
        # stream's events of that commit (infra.dynamodb.packing).
        likely: list[Key] = []
        streams: set[str] = set()
        for _, (oid, ver), end in wanted:
            if oid not in streams:
                streams.add(oid)
                likely.append((oid, ver))
            if end:
                streams = set()
        items = self.events([key for _, key, _ in wanted], likely)
        found: list[Notification] = []
        for log_position, key, _ in wanted:
            item = items[key]
            if topics and item[TOPIC]["S"] not in topics:
                continue
            found.append(
                Notification(
                    id=log_position,
                    originator_id=self.decode_oid(key[0]),
                    originator_version=key[1],
                    topic=item[TOPIC]["S"],
                    state=bytes(item[STATE]["B"]),
                )
            )
        return found

    def events(self, keys: Sequence[Key], likely: Sequence[Key] = ()) -> dict[Key, Item]:
        """The events of ``keys``, every one of them (``likely``: those expected
        to key their items, see :func:`infra.dynamodb.packing.fetch_events`)."""
        if not keys:
            return {}
        # An event item never changes once written: any copy found is it.
        wanted = (TOPIC, STATE)
        found = fetch_events(
            self.client, self.events_table, keys, consistent=False, likely=likely, attributes=wanted
        )
        missing = [key for key in dict.fromkeys(keys) if key not in found]
        if missing:
            # Not yet visible to an eventually consistent read: ask the leader.
            found.update(
                fetch_events(
                    self.client, self.events_table, missing, consistent=True, attributes=wanted
                )
            )
        lost = [key for key in dict.fromkeys(keys) if key not in found]
        if lost:
            msg = f"The index references events missing from the events table: {lost[:5]}"
            logger.error(msg)
            raise NotificationLogCorruptedError(msg)
        return found

    # ----- where commits end -----

    def commit_ends(self, lo: int, hi: int | None, limit: int | None) -> list[int] | None:
        """The ids from ``lo`` (to ``hi``) that end a commit, at most ``limit``;
        None when the pages read do not tile the range."""
        found: list[int] = []
        legacy = self.legacy_head()
        if lo <= legacy:
            found = self._copy_ends(lo, legacy if hi is None else min(hi, legacy), limit)
            if limit is not None and len(found) >= limit:
                return found[:limit]
            lo = legacy + 1
        # Ids above the head end nothing yet: they are not a gap (as on SQLite).
        top = self.head() if hi is None else min(hi, self.head())
        if lo > top:
            return found
        if hi is None:
            # Only the first end from lo: the page holding lo has one.
            page = page_at(self.client, self.index_table, lo)
            top = min(top, page.end) if page is not None else top
        for log_position, _, end in self._page_entries(lo, top):
            if log_position < 0:
                if hi is None:
                    break  # above the head: nothing ends there yet
                return None
            if end:
                found.append(log_position)
                if limit is not None and len(found) >= limit:
                    break
        return found

    # ----- where commits went -----

    def locate_commits(self, hints: Mapping[Key, int | None]) -> dict[Key, int]:
        """The first id of each indexed commit of ``hints`` (lead -> its h):
        its marker when it may be a copy (no h, or h below L), else its page."""
        legacy = self.legacy_head()
        firsts: dict[Key, int] = {}
        old = sorted(lead for lead, hint in hints.items() if hint is None or hint < legacy)
        if old:
            for marker in batch_get(
                self.client,
                self.index_table,
                [marker_key(oid, ver) for oid, ver in old],
                # Where each commit went: answers for everything indexed so far.
                ConsistentRead=True,
            ):
                oid = str(marker[LOG_PK]["S"]).removeprefix(MARKER_PREFIX)
                firsts[oid, int(marker[LOG_SK]["N"])] = int(marker[MARKER_FIRST]["N"])
        bounds = {
            lead: max(hint or 0, legacy) for lead, hint in hints.items() if lead not in firsts
        }
        if bounds:
            firsts.update(locate(self.client, self.index_table, bounds))
        return firsts

    def positions(self, items: Sequence[Mapping[str, Any]]) -> list[int | None]:
        """The position of each event item (None while it is not indexed): its
        commit's first id plus its place in the commit's manifest (on the lead)."""
        keys = [key_of(item) for item in items]
        manifests: dict[Key, list[Key]] = {}
        leads: list[Key] = []
        for key, item in zip(keys, items, strict=True):
            if COMMIT_LEAD in item:
                oid, ver = item[COMMIT_LEAD]["L"]
                leads.append((str(oid["S"]), int(ver["N"])))
                continue
            leads.append(key)
            manifest = item.get(COMMIT_MANIFEST, {}).get("L")
            manifests[key] = [pair_of(entry) for entry in manifest] if manifest else [key]
        missing = sorted(set(leads) - manifests.keys())
        for found in batch_get(
            self.client,
            self.events_table,
            [{EVENT_PK: s_(oid), EVENT_SK: n_(ver)} for oid, ver in missing],
            ProjectionExpression="#oid, #ver, #m",
            ExpressionAttributeNames={"#oid": EVENT_PK, "#ver": EVENT_SK, "#m": COMMIT_MANIFEST},
            # The commits of events just read: every one of them.
            ConsistentRead=True,
        ):
            manifests[key_of(found)] = [
                pair_of(entry) for entry in found.get(COMMIT_MANIFEST, {}).get("L", [])
            ] or [key_of(found)]
        # Every item of a commit carries its h: where to look for the commit.
        firsts = self.locate_commits(
            {lead: hint_of(item) for lead, item in zip(leads, items, strict=True)}
        )
        placed: list[int | None] = []
        for key, lead in zip(keys, leads, strict=True):
            first = firsts.get(lead)
            manifest = manifests.get(lead, [])
            placed.append(
                first + manifest.index(key) if first is not None and key in manifest else None
            )
        return placed

    def indexed(self, leads: Sequence[Key]) -> set[Key]:
        """Those of the commits led by ``leads`` that are indexed now (reads only:
        each lead's ``h``, ConsistentRead, then the pages above it)."""
        items = batch_get(
            self.client,
            self.events_table,
            [{EVENT_PK: s_(oid), EVENT_SK: n_(ver)} for oid, ver in dict.fromkeys(leads)],
            ProjectionExpression="#oid, #ver, #h",
            ExpressionAttributeNames={"#oid": EVENT_PK, "#ver": EVENT_SK, "#h": HEAD_HINT},
            # Commits just appended: every one of them.
            ConsistentRead=True,
        )
        return set(self.locate_commits({key_of(item): hint_of(item) for item in items}))

    def commit_hint(self, lead: Key) -> tuple[bool, int | None]:
        """Whether the lead event exists, and its commit's h (ConsistentRead:
        asks about a commit just appended)."""
        with translate_errors():
            items = self.client.query(
                TableName=self.events_table,
                KeyConditionExpression="#oid = :oid AND #ver = :ver",
                ExpressionAttributeNames={"#oid": EVENT_PK, "#ver": EVENT_SK, "#h": HEAD_HINT},
                ExpressionAttributeValues={":oid": s_(lead[0]), ":ver": n_(lead[1])},
                ProjectionExpression="#oid, #h",
                ConsistentRead=True,
            ).get("Items", [])
        return (True, hint_of(items[0])) if items else (False, None)

    # ----- the copies older deployments wrote (ids up to L) -----

    def _select_copies(
        self, lo: int, hi: int, limit: int, topics: Sequence[str]
    ) -> list[Notification] | None:
        names = {"#p": LOG_PK, "#id": LOG_SK}
        values: dict[str, AttributeValueTypeDef] = {
            ":p": s_(LOG_PARTITION),
            ":lo": n_(lo),
            ":hi": n_(hi),
        }
        query: QueryInputTypeDef = {
            "TableName": self.index_table,
            "KeyConditionExpression": "#p = :p AND #id BETWEEN :lo AND :hi",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            # Followers decide what to process next from this: every copy up to L.
            "ConsistentRead": True,
        }
        topic_set = frozenset(topics)
        filter_locally = len(topic_set) > MAX_FILTER_TOPICS
        if topic_set and not filter_locally:
            placeholders = []
            for i, topic in enumerate(sorted(topic_set)):
                values[f":t{i}"] = s_(topic)
                placeholders.append(f":t{i}")
            names["#topic"] = TOPIC
            query["FilterExpression"] = f"#topic IN ({', '.join(placeholders)})"
        results: list[Notification] = []
        cursor = lo
        with translate_errors():
            while True:
                remaining = limit - len(results)
                page_limit = remaining if not topic_set else max(remaining, 100)
                query["Limit"] = min(page_limit, hi - cursor + 1)
                response = self.client.query(**query)
                last_key = response.get("LastEvaluatedKey")
                page_end = int(last_key[LOG_SK]["N"]) if last_key else hi
                if response.get("ScannedCount", 0) != page_end - cursor + 1:
                    return None  # a gap: read again
                for item in response.get("Items", []):
                    if filter_locally and item[TOPIC]["S"] not in topic_set:
                        continue
                    results.append(
                        Notification(
                            id=int(item[LOG_SK]["N"]),
                            originator_id=self.decode_oid(item[EVENT_PK]["S"]),
                            originator_version=int(item[EVENT_SK]["N"]),
                            topic=item[TOPIC]["S"],
                            state=bytes(item[STATE]["B"]),
                        )
                    )
                    if len(results) >= limit:
                        return results
                if not last_key or page_end >= hi:
                    return results
                cursor = page_end + 1
                query["ExclusiveStartKey"] = last_key

    def _copy_ends(self, lo: int, hi: int, limit: int | None) -> list[int]:
        query: QueryInputTypeDef = {
            "TableName": self.index_table,
            "KeyConditionExpression": "#p = :p AND #id BETWEEN :lo AND :hi",
            "FilterExpression": "attribute_exists(#end)",
            "ProjectionExpression": "#id",
            "ExpressionAttributeNames": {"#p": LOG_PK, "#id": LOG_SK, "#end": COMMIT_END},
            "ExpressionAttributeValues": {":p": s_(LOG_PARTITION), ":lo": n_(lo), ":hi": n_(hi)},
            # Catch-up cuts its batches here: every committed copy.
            "ConsistentRead": True,
        }
        found: list[int] = []
        with translate_errors():
            while True:
                response = self.client.query(**query)
                found.extend(int(i[LOG_SK]["N"]) for i in response.get("Items", []))
                last_key = response.get("LastEvaluatedKey")
                if not last_key or (limit is not None and len(found) >= limit):
                    break
                query["ExclusiveStartKey"] = last_key
        return found[:limit] if limit is not None else found


class HeadHint:
    """A lower bound of the index's head for writers: the end of the last page
    this process saw. Read once synchronously (0 when the read fails: always
    correct, only costlier for the indexer to check), then refreshed in the
    background at most every ``max_age`` seconds by an eventually consistent
    Query of one item, which any page it returns makes a valid bound (the page
    was written before the read, so before any append that follows it)."""

    def __init__(self, client: DynamoDBClient, index_table: str, max_age: float = 1.0) -> None:
        self.client = client
        self.index_table = index_table
        self.max_age = max_age
        self._value: int | None = None
        self._read_at = float("-inf")
        self._refreshing = False
        self._lock = threading.Lock()

    def value(self) -> int:
        with self._lock:
            value = self._value
            stale = time.monotonic() - self._read_at > self.max_age
            start = value is not None and stale and not self._refreshing
            if start:
                self._refreshing = True
        if value is None:
            self._refresh()
            return self._value or 0
        if start:
            threading.Thread(target=self._refresh, name="head-hint", daemon=True).start()
        return value

    def _refresh(self) -> None:
        seen = 0
        try:
            page = last_page(self.client, self.index_table, consistent=False)
            seen = page.end if page is not None else 0
        except PersistenceError as error:
            logger.warning("could not read the index's head for appends: %s", error)
        finally:
            # Whatever happened, the bound stays valid (it only grows) and a
            # later append may try again.
            with self._lock:
                self._value = max(self._value or 0, seen)
                self._read_at = time.monotonic()
                self._refreshing = False
