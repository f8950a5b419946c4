"""The in-process reader of the events table's DynamoDB Stream (``ShardPoller``).

It reads every shard of the stream (a child shard only after its parent is
fully indexed), feeds the records to
:meth:`infra.dynamodb.indexer.StreamIndexer.index_records` and then records a
checkpoint per shard in the index table (``p="k#<shard>"``), so a restarted
poller resumes where it stopped. ``start()`` runs it in a daemon thread,
``drain()`` polls every shard to its tip and indexes what it finds, ``lag()``
tells how far behind it is. In production the Lambda event source mapping
reads the shards instead, and keeps its own position in each.

**Leases.** With N API processes each running a poller, the running thread
reads only the shards it leases: a lease per shard on the shard's checkpoint
item (``o`` its owner, ``x`` its end), taken and renewed with conditional
writes every ``renew_seconds`` (not per poll), released on ``stop()``, taken
over by another poller once it expires (its owner was killed or stalled). A
poller skips shards leased by another live owner, and stops reading a shard
whose lease it finds lost. AWS advises at most two readers per shard (and
GetRecords allows 5 calls a second per shard); the lease keeps the thread
readers at one. Correctness never depends on the lease: two pollers reading
one shard (a lease taken over from a stalled owner that wakes up, clocks
apart by more than the lease's margin) index nothing twice and skip nothing,
because every page is a conditional put and checkpoints only move forward.
``drain()`` (rebuild, verify, check, the tests: bounded and occasional) reads
every shard whoever leases it, as the second reader AWS allows, and writes no
lease.

**Pace.** The thread reads each shard at most every ``poll_interval`` (0.25 s,
AWS's own poller reads 4 times a second) unless its last page was full: a round
costs calls whatever it reads, so commits that trickle in share one.

**The tip.** GetRecords may return an empty page while records lie further
on in the shard (AWS documents it), so one empty page is not the tip: a
reader follows ``NextShardIterator``. What the API gives as evidence that a
reader has passed every record written before a time ``t``: a closed shard's
null ``NextShardIterator`` (proof); a record whose ApproximateCreationDateTime
(rounded down) is at or after ``t`` (records of a shard are in order, so the
ones before it were read); while writes go on, the first record read from a
LATEST iterator taken after ``t`` (a drain's probe), once the reader has read
up to it; otherwise only ``empty_pages_at_tip`` consecutive empty pages,
which is evidence and not proof: an open shard has no end marker, and the
stream may show a write a moment after it committed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from botocore.exceptions import BotoCoreError, ClientError
from eventsourcing.persistence import OperationalError

from infra.dynamodb.shard_cursors import StreamShards
from infra.dynamodb.shard_leases import Lease, ShardLeases

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

    from infra.dynamodb.indexer import StreamIndexer

logger = logging.getLogger(__name__)


def record_time(record: Mapping[str, Any]) -> float | None:
    """A record's ApproximateCreationDateTime as epoch seconds (boto3 gives a
    datetime, a Lambda event a number)."""
    value = record.get("dynamodb", {}).get("ApproximateCreationDateTime")
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return None


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
    """Since a poll last read every shard it reads to its tip (as far as the
    stream shows one: see the module's docstring) with nothing left to index;
    None before the first such poll."""
    indexed_events: int
    """Events this process indexed since it started."""
    indexed_commits: int
    trimmed_shards: int
    """Shards whose records expired from the stream before they were indexed
    (logged as errors: events may be missing from the index)."""
    last_error: str | None
    running: bool


class ShardPoller:
    """Reads the events table's stream shard by shard and feeds the indexer.

    Checkpoints (the last indexed sequence number of each shard, and whether a
    closed shard is done) live in the index table, so a new poller resumes
    where the last one stopped. Every record after a checkpoint is read again
    after a restart; the indexer finds those commits in its pages, so that is harmless.
    """

    def __init__(
        self,
        indexer: StreamIndexer,
        streams_client: DynamoDBStreamsClient,
        *,
        poll_interval: float = 0.25,
        records_per_read: int = 1000,
        shard_refresh_seconds: float = 30.0,
        lease_seconds: float = 15.0,
        renew_seconds: float = 5.0,
        empty_pages_at_tip: int = 3,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.indexer = indexer
        self.streams = streams_client
        self.client = indexer.client
        self.poll_interval = poll_interval
        self.empty_pages_at_tip = max(1, empty_pages_at_tip)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"
        self.leases = ShardLeases(
            self.client,
            indexer.index_table_name,
            owner=self.owner,
            lease_seconds=lease_seconds,
            renew_seconds=renew_seconds,
            clock=clock,
        )
        self.shards = StreamShards(
            self.client,
            streams_client,
            events_table=indexer.events_table_name,
            index_table=indexer.index_table_name,
            records_per_read=records_per_read,
            refresh_seconds=shard_refresh_seconds,
            on_finish=self.leases.forget,
        )
        self._reached: set[str] = set()  # shards the last round read to their tip
        self._read_to: dict[str, int] = {}  # shard -> the last sequence number indexed
        self._empty_run: dict[str, int] = {}  # shard -> consecutive empty pages read
        self._round_lock = threading.Lock()
        self._pending = 0
        self._pending_since: float | None = None
        self._caught_up_at: float | None = None
        # Wall-clock start of the last round that found the stream empty: every
        # record read later was written after it.
        self._empty_since: float | None = None
        self._last_error: str | None = None
        self._behind = False  # the last round read a full page of some shard
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
        """Stops the thread and releases this poller's leases."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._round_lock.acquire(timeout=timeout):
            try:
                self.leases.release_all()
            finally:
                self._round_lock.release()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.poll_once()
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
            if not self._behind:
                # As AWS's own poller (4 reads a second per shard): a round's
                # cost (GetRecords, a page, a checkpoint) is paid per round, so
                # records that trickle in are indexed several per round rather
                # than one commit per round. A full page means more are waiting.
                self._stop.wait(self.poll_interval)

    @property
    def shards_changed(self) -> bool:
        """Whether the last poll found shards opened or closed (poll again to be sure)."""
        return self.shards.changed

    @property
    def leased_shards(self) -> frozenset[str]:
        """The shards this poller holds a lease on (as far as it knows)."""
        return self.leases.held

    def drain(self, timeout: float = 60.0, *, since: float | None = None) -> None:
        """Polls every shard (leased or not) and indexes what it reads, until
        each shard not yet done was read to its tip since ``since`` (epoch
        seconds, default: now): a closed shard to its end, an open one up to a
        record created at or after ``since``, up to the first record a LATEST
        iterator taken after ``since`` shows, or to ``empty_pages_at_tip``
        consecutive empty pages. Then every record the stream showed before
        ``since`` is indexed, as far as the stream gives evidence of it (the
        module's docstring says how far that is). Raises TimeoutError after
        ``timeout`` seconds."""
        since = time.time() if since is None else since
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        passed: set[str] = set()
        probes: dict[str, str | None] = {}  # shard -> an iterator taken at LATEST
        marks: dict[str, int] = {}  # shard -> the first record written after it
        while time.monotonic() < deadline:
            try:
                self.poll_once(every_shard=True, since=since)
            except OperationalError as error:
                last_error = error
                time.sleep(0.05)
                continue
            passed |= self._reached
            for shard_id in self.shards.readable():
                # While writes go on there is no empty page: a LATEST iterator
                # taken after ``since`` marks the first record written after
                # it, and a reader that has read up to that record has read
                # every record before it.
                if shard_id in passed:
                    continue
                if shard_id not in marks:
                    mark = self._probe(shard_id, probes)
                    if mark is None:
                        continue
                    marks[shard_id] = mark
                if self._read_to.get(shard_id, -1) >= marks[shard_id]:
                    passed.add(shard_id)
            if not self.shards.changed and all(s in passed for s in self.shards.readable()):
                return
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
            trimmed_shards=self.shards.trimmed,
            last_error=self._last_error,
            running=self.running,
        )

    # ----- one round -----

    def poll_once(self, *, every_shard: bool = False, since: float | None = None) -> int:
        """Reads each readable shard this poller leases (every one with
        ``every_shard``) once, indexes what it read, checkpoints. With
        ``since`` (a drain's), follows empty pages up to the first page of
        records or to the tip (see :meth:`drain`); without, reads one page per
        shard and counts a shard at its tip after ``empty_pages_at_tip``
        consecutive empty pages over as many polls. Returns the number of
        records read."""
        with self._round_lock:
            try:
                return self._round(every_shard=every_shard, since=since)
            except Exception as error:
                self._last_error = f"{type(error).__name__}: {error}"
                raise

    def _round(self, *, every_shard: bool, since: float | None) -> int:
        started = time.time()
        follow = since is not None
        since = started if since is None else since
        self.shards.changed = False
        self.shards.refresh()
        self._reached = set()
        at_tip = True
        reads: list[tuple[str, list[dict[str, Any]], str | None]] = []
        for shard_id in self.shards.readable():
            if not every_shard and not self._hold(shard_id):
                continue
            read = self._read_shard(shard_id, since, follow=follow)
            if read is None:
                if shard_id in self.shards.done:
                    self._reached.add(shard_id)
                else:
                    at_tip = False
                continue
            records, next_iterator, reached = read
            if reached:
                self._reached.add(shard_id)
            else:
                at_tip = False
            reads.append((shard_id, records, next_iterator))
        records = [record for _, shard_records, _ in reads for record in shard_records]
        self._behind = any(self.shards.full(shard_records) for _, shard_records, _ in reads)
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
                    self.shards.forget(shard_id)
                raise
        self._pending = 0
        self._pending_since = None
        for shard_id, shard_records, next_iterator in reads:
            if shard_records:
                sequence = str(shard_records[-1]["dynamodb"]["SequenceNumber"])
                self._read_to[shard_id] = int(sequence)
                self.shards.checkpoint(shard_id, sequence)
            if next_iterator is None:
                self.shards.finish(shard_id)
            else:
                self.shards.iterators[shard_id] = next_iterator
        if not records and at_tip and not self.shards.changed:
            self._caught_up_at = time.monotonic()
            self._empty_since = started
        self._last_error = None
        return len(records)

    def _probe(self, shard_id: str, probes: dict[str, str | None]) -> int | None:
        """The sequence number of the first record the shard received after
        the probe's LATEST iterator was taken (on the first call), once it
        shows one; None until then, or when the probe cannot read."""
        try:
            if shard_id not in probes:
                response = self.streams.get_shard_iterator(
                    StreamArn=self.shards.arn(), ShardId=shard_id, ShardIteratorType="LATEST"
                )
                probes[shard_id] = response.get("ShardIterator")
            iterator = probes[shard_id]
            if iterator is None:
                return None
            page = self.streams.get_records(ShardIterator=iterator, Limit=1)
        except (ClientError, BotoCoreError) as error:
            # Only evidence is lost: the other kinds still end the drain.
            logger.info("Tip probe failed", extra={"shard": shard_id, "error": str(error)})
            probes.pop(shard_id, None)
            return None
        probes[shard_id] = page.get("NextShardIterator")
        records = page.get("Records", [])
        return int(records[0]["dynamodb"]["SequenceNumber"]) if records else None

    def _read_shard(
        self, shard_id: str, since: float, *, follow: bool
    ) -> tuple[list[dict[str, Any]], str | None, bool] | None:
        """The shard's next page, the iterator after it, and whether the read
        reached the shard's tip as of ``since``; None when nothing could be
        read (a closed shard found done, an iterator to renew). With ``follow``
        it follows empty pages (up to ``empty_pages_at_tip`` of them, counted
        from this read: empty pages seen before ``since`` prove nothing about
        records written since); without, it reads one page and counts empty
        pages over consecutive polls (the polling thread's rounds stay one
        GetRecords per shard)."""
        iterator = self.shards.iterator(shard_id)
        empty = 0 if follow else self._empty_run.get(shard_id, 0)
        while iterator is not None:
            response = self._get_records(shard_id, iterator)
            if response is None:
                return None  # renewed from the checkpoint next round
            records, next_iterator = response
            if records:
                self._empty_run[shard_id] = 0
                # Records of a shard are in order: one created at or after
                # ``since`` means every record before ``since`` was read.
                created = record_time(records[-1])
                return records, next_iterator, created is not None and created >= since
            if next_iterator is None:
                return records, None, True  # a closed shard's end: proof
            empty += 1
            self._empty_run[shard_id] = empty
            if empty >= self.empty_pages_at_tip:
                # Only evidence: an empty page may come before more records.
                return records, next_iterator, True
            if not follow:
                return records, next_iterator, False
            self.shards.iterators[shard_id] = next_iterator
            iterator = next_iterator
        return None

    def _get_records(
        self, shard_id: str, iterator: str
    ) -> tuple[list[dict[str, Any]], str | None] | None:
        return self.shards.get_records(shard_id, iterator)

    def _hold(self, shard_id: str) -> bool:
        """Whether this poller may read the shard now (``ShardLeases.hold``)."""
        lease = self.leases.hold(shard_id)
        if lease is not Lease.HELD:
            # Taken: resume from the latest checkpoint of any poller, not from
            # where this one read before another held the shard. Refused: stop.
            self.shards.forget(shard_id, checkpoint=lease is Lease.TAKEN)
        return lease is not Lease.REFUSED
