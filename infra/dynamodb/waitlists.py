"""A gathering's waitlist on DynamoDB: the digest its row keeps, and a cache of
verified waitlists.

The waitlist is not in the gatherings row: it is the gathering's waiting
registrations, read from ``ORDER_GSI``, which DynamoDB updates asynchronously
(so a query of it cannot be ``ConsistentRead``). To know that a query shows
the waitlist of the row it is paired with, each gatherings row keeps

- ``waitlistCount``: how many wait;
- ``waitlistDigest``: Σ ``waiting_hash(userId, ticket)`` over the people
  waiting, kept by the fold's writer (``read_changes.py``) with ``ADD``: +h
  when someone joins, -h when a waiting person leaves or is promoted; a new
  gathering's row starts at 0, so a rebuild (the same fold) gives the same
  digest;
- ``waitlistDigestKept``: true on rows written whole since the digest exists
  (a new gathering, or a rebuild). Rows of tables built before it have no
  marker; an ``ADD`` to them creates a digest that misses the people already
  waiting, so their digest is never trusted (they are read as before).

A query whose entries number ``waitlistCount`` and sum to the digest is the
row's waitlist: another set (a lagging index, a commit in between) would have
to collide on a 60-bit sum. The ticket is in the hash so that someone who left
and joined again (a new ticket, a new place) does not pass for their old place.

Every change to a waitlist is a commit on the gathering's stream, and the row's
``v`` is the version of that stream it holds, so a gathering's waitlist is a
function of (table, eventId, ``v``): a verified waitlist is cached under that
key (``WaitlistCache``) and served to later reads of the same row version with
no query at all. A gathering's stream id is derived from its id and starts at
version 1, so an id is never reused with other versions. Only the latest
version cached of each gathering is kept: rows are read consistently, so an
older version is not asked for again once a newer one was read, and keeping
every version would fill the cache with waitlists nobody reads (a 30-minute
soak's memory grew with them, far from the bound in people).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

DIGEST = "waitlistDigest"
DIGEST_KEPT = "waitlistDigestKept"

#: Cached waitlists hold at most this many people in all (least recently used
#: waitlists are dropped first).
CACHED_PEOPLE = 200_000


def waiting_hash(user_id: str, ticket: int) -> int:
    """The 60-bit hash of one person waiting with ``ticket``."""
    digest = blake2b(f"{user_id}#{ticket}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 4


@dataclass(frozen=True)
class Waiting:
    """One entry of a waitlist query: who waits, with which ticket."""

    user_id: str
    ticket: int


def cache_key(table: str, row: dict[str, Any]) -> tuple[str, str, int] | None:
    """(table, eventId, v) of a gatherings row whose digest can be trusted; None
    for rows that do not keep it (or carry no version)."""
    if not row.get(DIGEST_KEPT) or row.get("v") is None or DIGEST not in row:
        return None
    return table, str(row["eventId"]), int(row["v"])


def verified(row: dict[str, Any], waiting: Iterable[Waiting]) -> tuple[str, ...] | None:
    """The user ids of ``waiting`` when they are the waitlist of ``row`` (as many
    as it counts, summing to its digest), else None. The row must keep the digest
    (``cache_key`` is not None)."""
    entries = list(waiting)
    if len(entries) != int(row["waitlistCount"]):
        return None
    if sum(waiting_hash(w.user_id, w.ticket) for w in entries) != int(row[DIGEST]):
        return None
    return tuple(w.user_id for w in entries)


class WaitlistCache:
    """Verified waitlists by (table, eventId, v), the latest version of each
    gathering only: bounded in people, least recently used gathering first
    out, safe to share between threads (reads run in a threadpool)."""

    def __init__(self, capacity: int = CACHED_PEOPLE) -> None:
        self.capacity = capacity
        # (table, eventId) -> (v, waitlist)
        self._entries: OrderedDict[tuple[str, str], tuple[int, tuple[str, ...]]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, int]) -> tuple[str, ...] | None:
        table, event_id, version = key
        with self._lock:
            found = self._entries.get((table, event_id))
            if found is None or found[0] != version:
                return None
            self._entries.move_to_end((table, event_id))
            return found[1]

    def put(self, key: tuple[str, str, int], waitlist: tuple[str, ...]) -> None:
        if len(waitlist) >= self.capacity:
            return
        table, event_id, version = key
        with self._lock:
            previous = self._entries.get((table, event_id))
            if previous is not None:
                if previous[0] > version:
                    return  # a newer version is cached: it is the one read next
                del self._entries[(table, event_id)]
                self._held -= len(previous[1]) + 1
            self._entries[(table, event_id)] = (version, waitlist)
            self._held += len(waitlist) + 1
            while self._held > self.capacity:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._held -= len(dropped) + 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
