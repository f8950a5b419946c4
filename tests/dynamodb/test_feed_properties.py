"""The feed indexed by reference, attacked as a whole: several writers append
multi-stream commits through the real recorder while several indexers, each
with its own client and memory, are fed shuffled, repeated and partial batches
of the real stream records, restarted as if SIGKILLed, run at once in threads,
and lose the answers of their page puts (the page written, the answer never
seen: botocore either retried the put and met its own page, or gave up and the
call failed, as a Lambda invocation would, to be retried). After every step
the log read through the reader is a gap-free prefix: dense ids up to the head,
each commit at most once, whole and contiguous in append order, every stream
in version order from its first version. At the end, after a last drain, every
commit is in it exactly once. Some runs begin with a log written by the
indexer before pages (copies, markers, $head) and commits appended without
``h``.

Real DynamoDB Local, real Streams. Cheap by default; ``HYPOTHESIS_PROFILE=
exhaustive`` runs many more examples and longer programs.
"""

from __future__ import annotations

import os
import random
import threading
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from botocore.exceptions import ClientError, ReadTimeoutError
from eventsourcing.persistence import PersistenceError, StoredEvent
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from infra.dynamodb import DynamoDBApplicationRecorder, DynamoDBDatastore
from infra.dynamodb.commits import hint_of
from infra.dynamodb.indexer import StreamIndexer
from infra.dynamodb.layout import EVENT_PK, EVENT_SK
from tests.dynamodb.test_index_pages import old_commit, old_index
from tests.dynamodb.test_indexer import stream_records
from tests.dynamodb.utils import new_datastore

if TYPE_CHECKING:
    from collections.abc import Sequence

EXHAUSTIVE = os.environ.get("HYPOTHESIS_PROFILE") == "exhaustive"
STREAMS = 4
WRITERS = 2
INDEXERS = 3

Commit = list[StoredEvent]


class LostAnswers:
    """A botocore hook on one indexer's client: the next ``armed`` page puts
    that succeed lose their answer. ``retried``: botocore sent the put again
    and met the page it had just written (ConditionalCheckFailed); otherwise it
    gave up (a timeout: the call fails although the page is written)."""

    def __init__(self, client: Any) -> None:
        self.armed = 0
        self.retried = True
        self.lost = 0
        client.meta.events.register("after-call.dynamodb.PutItem", self._after)

    def _after(self, http_response: Any, **_: Any) -> None:
        if self.armed <= 0 or http_response.status_code != 200:
            return
        self.armed -= 1
        self.lost += 1
        if self.retried:
            raise ClientError(
                {"Error": {"Code": "ConditionalCheckFailedException", "Message": "retried"}},
                "PutItem",
            )
        raise ReadTimeoutError(endpoint_url="lost answer")


class FeedMachine(RuleBasedStateMachine):
    endpoint = ""

    def __init__(self) -> None:
        super().__init__()
        self.datastores: list[DynamoDBDatastore] = []
        self.commits: list[Commit] = []
        self.streams = [uuid4() for _ in range(STREAMS)]
        self.versions: dict[UUID, int] = dict.fromkeys(self.streams, 0)
        self.records: list[Any] = []
        self.records_seen = -1

    def _datastore(self, prefix: str | None = None) -> DynamoDBDatastore:
        datastore = new_datastore(self.endpoint, **({"table_prefix": prefix} if prefix else {}))
        self.datastores.append(datastore)
        return datastore

    @initialize(indexed_before=st.integers(0, 3), unindexed_before=st.integers(0, 2))
    def tables(self, indexed_before: int, unindexed_before: int) -> None:
        """The tables, and perhaps a log begun by the indexer before pages:
        ``indexed_before`` commits with copies under p="log", markers and
        $head (ids 1..L), then ``unindexed_before`` commits appended without
        h and never indexed by it."""
        first = self._datastore()
        reader = DynamoDBApplicationRecorder(first)
        reader.create_table()
        self.reader = reader
        self.first = first
        # Each writer a process of its own: its own client and HeadHint.
        self.writers = [reader] + [
            DynamoDBApplicationRecorder(self._datastore(first.table_prefix))
            for _ in range(WRITERS - 1)
        ]
        self.indexers: list[StreamIndexer] = []
        self.lost: list[LostAnswers] = []
        for n in range(INDEXERS):
            datastore = self._datastore(first.table_prefix)
            self.lost.append(LostAnswers(datastore.client))
            self.indexers.append(self._indexer(n, window=1 + 3 * n))
        old: list[list[dict[str, Any]]] = []
        for n in range(indexed_before + unindexed_before):
            keys = []
            for stream in self.streams[: 1 + n % 2] if n % 3 else self.streams[n % STREAMS :][:1]:
                self.versions[stream] += 1
                keys.append((stream, self.versions[stream]))
            commit, items = old_commit(reader, keys)
            self.commits.append(commit)
            if n < indexed_before:
                old.append(items)
        if old:
            old_index(reader, old)

    def _indexer(self, n: int, window: int, memo: int = 100_000) -> StreamIndexer:
        client = self.datastores[WRITERS + n].client
        return StreamIndexer(
            client,
            self.reader.events_table_name,
            self.reader.notifications_table_name,
            window_events=window,
            memo_size=memo,
            stream_memo_size=memo,
        )

    def teardown(self) -> None:
        for datastore in self.datastores:
            datastore.close()

    # ----- writers -----

    @rule(
        writer=st.integers(0, WRITERS - 1),
        shape=st.lists(
            st.tuples(st.integers(0, STREAMS - 1), st.integers(1, 3)),
            min_size=1,
            max_size=3,
            unique_by=lambda entry: entry[0],
        ),
    )
    def append(self, writer: int, shape: list[tuple[int, int]]) -> None:
        commit: Commit = []
        for stream_index, count in shape:
            stream = self.streams[stream_index]
            for _ in range(count):
                self.versions[stream] += 1
                version = self.versions[stream]
                commit.append(StoredEvent(stream, version, "t", f"{stream}/{version}".encode()))
        self.writers[writer].insert_events(commit)
        self.commits.append(commit)
        # h is a lower bound of the head at the append: at most the head now.
        oid, ver = str(commit[0].originator_id), commit[0].originator_version
        lead = self.reader.client.get_item(
            TableName=self.reader.events_table_name,
            Key={EVENT_PK: {"S": oid}, EVENT_SK: {"N": str(ver)}},
            ConsistentRead=True,
        )["Item"]
        head = self.reader.max_notification_id() or 0
        hint = hint_of(lead)
        assert hint is not None
        assert hint <= head, f"h {hint} above the head {head}"

    # ----- indexers -----

    def _records(self) -> list[Any]:
        if self.records_seen != len(self.commits):
            self.records = stream_records(self.first, self.reader)
            self.records_seen = len(self.commits)
        return self.records

    @precondition(lambda self: self.commits)
    @rule(
        n=st.integers(0, INDEXERS - 1),
        seed=st.integers(0, 2**16),
        share=st.sampled_from([0.3, 0.7, 1.0]),
        batch=st.integers(1, 8),
        lose=st.sampled_from([0, 0, 1, 2]),
        retried=st.booleans(),
    )
    def index(self, n: int, seed: int, share: float, batch: int, lose: int, retried: bool) -> None:
        rng = random.Random(seed)
        records = self._records()
        chosen = rng.sample(records, max(1, round(share * len(records))))
        chosen += rng.sample(chosen, len(chosen) // 3)  # re-delivered
        rng.shuffle(chosen)
        self.lost[n].armed, self.lost[n].retried = lose, retried
        try:
            for i in range(0, len(chosen), batch):
                for _ in range(lose + 1):
                    try:
                        self.indexers[n].index_records(chosen[i : i + batch])
                        break
                    except PersistenceError:
                        # The answer was lost and botocore gave up: the call
                        # fails; Lambda retries the same batch.
                        assert not retried, "only a lost answer may fail the call"
        finally:
            self.lost[n].armed = 0

    @precondition(lambda self: self.commits)
    @rule(seed=st.integers(0, 2**16), batch=st.integers(1, 8), lose=st.sampled_from([0, 1]))
    def race(self, seed: int, batch: int, lose: int) -> None:
        """Every indexer at once, in threads, each over its own shuffle of the
        records (the first one losing page-put answers, botocore retrying)."""
        records = self._records()
        errors: list[BaseException] = []
        start = threading.Barrier(INDEXERS)
        self.lost[0].armed, self.lost[0].retried = lose, True

        def run(n: int) -> None:
            mine = list(records)
            random.Random(seed + n).shuffle(mine)
            try:
                start.wait()
                for i in range(0, len(mine), batch):
                    self.indexers[n].index_records(mine[i : i + batch])
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=run, args=(n,)) for n in range(INDEXERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.lost[0].armed = 0
        assert not errors, errors

    @rule(n=st.integers(0, INDEXERS - 1), window=st.sampled_from([1, 4, 200_000]))
    def restart(self, n: int, window: int) -> None:
        """SIGKILL: the indexer's memory is gone; a fresh one takes over."""
        self.indexers[n] = self._indexer(n, window=window, memo=window)

    # ----- the log, as readers see it -----

    def _log(self) -> list[tuple[int, str, int, bool]]:
        head = self.reader.max_notification_id() or 0
        ends = set(self.reader.commit_ends(1, head)) if head else set()
        rows: list[tuple[int, str, int, bool]] = []
        while True:
            page = self.reader.select_notifications(len(rows) + 1, 50)
            if not page:
                break
            rows.extend(
                (n.id, str(n.originator_id), n.originator_version, n.id in ends) for n in page
            )
            for n in page:
                assert n.state == f"{n.originator_id}/{n.originator_version}".encode()
        assert [row[0] for row in rows] == list(range(1, len(rows) + 1)), "a gap in the log"
        assert len(rows) == head, f"the reader returned {len(rows)} ids, the head is {head}"
        return rows

    def _check(self, rows: Sequence[tuple[int, str, int, bool]], *, complete: bool) -> None:
        position: dict[tuple[str, int], int] = {}
        for nid, oid, ver, _ in rows:
            assert (oid, ver) not in position, f"{oid} v{ver} indexed twice"
            position[oid, ver] = nid
        last: dict[str, int] = {}
        for _, oid, ver, _ in rows:
            assert ver == last.get(oid, 0) + 1, f"{oid} v{ver} out of its stream's order"
            last[oid] = ver
        ends = {nid for nid, _, _, end in rows if end}
        placed = 0
        for commit in self.commits:
            keys = [(str(s.originator_id), s.originator_version) for s in commit]
            present = [key for key in keys if key in position]
            if not present and not complete:
                continue
            assert present == keys, f"commit {keys} split: only {present} indexed"
            ids = [position[key] for key in keys]
            assert ids == list(range(ids[0], ids[0] + len(ids))), f"commit {keys} not contiguous"
            assert ids[-1] in ends
            assert not ends & set(ids[:-1])
            placed += len(ids)
        assert placed == len(rows), "the log holds events of no commit written"
        # Where the reader says each commit went (its h, or its marker).
        for commit in self.commits if complete else self.commits[-3:]:
            keys = [(str(s.originator_id), s.originator_version) for s in commit]
            expected = [position[key] for key in keys] if keys[0] in position else None
            assert self.reader.indexed_positions(commit) == expected, f"commit {keys} located"

    @invariant()
    def the_log_is_a_gap_free_prefix(self) -> None:
        if hasattr(self, "reader"):
            self._check(self._log(), complete=False)

    def drain_and_check_every_commit_is_indexed_exactly_once(self) -> None:
        fresh = StreamIndexer(
            self.datastores[-1].client,
            self.reader.events_table_name,
            self.reader.notifications_table_name,
        )
        fresh.index_records(stream_records(self.first, self.reader))
        for indexer in self.indexers:  # and those that remember: nothing left to do
            assert indexer.index_records(self._records()) == 0
        rows = self._log()
        assert len(rows) == sum(len(c) for c in self.commits)
        self._check(rows, complete=True)


def test_the_log_stays_a_gap_free_prefix_and_ends_with_every_commit_exactly_once(
    dynamodb_endpoint: str,
) -> None:
    class Run(FeedMachine):
        endpoint = dynamodb_endpoint

        def teardown(self) -> None:
            try:
                if hasattr(self, "reader"):
                    self.drain_and_check_every_commit_is_indexed_exactly_once()
            finally:
                super().teardown()

    run_state_machine_as_test(
        Run,
        settings=settings(
            max_examples=300 if EXHAUSTIVE else 10,
            stateful_step_count=40 if EXHAUSTIVE else 14,
            deadline=None,
        ),
    )


def test_commit_ends_up_to_a_bound_above_the_head_are_those_up_to_the_head(
    datastore: DynamoDBDatastore,
) -> None:
    """As on SQLite (and as the copies older deployments wrote read): asking for
    the ends up to an id the log has not reached yet is not a gap below the head."""
    recorder = DynamoDBApplicationRecorder(datastore)
    recorder.create_table()
    s1, s2 = uuid4(), uuid4()
    recorder.insert_events([StoredEvent(s1, 1, "t", b"a"), StoredEvent(s2, 1, "t", b"b")])
    recorder.insert_events([StoredEvent(s1, 2, "t", b"c")])
    StreamIndexer(
        recorder.client, recorder.events_table_name, recorder.notifications_table_name
    ).index_records(stream_records(datastore, recorder))
    assert recorder.max_notification_id() == 3

    assert list(recorder.commit_ends(1, 3)) == [2, 3]
    assert list(recorder.commit_ends(1, 10)) == [2, 3]
    assert list(recorder.commit_ends(3, 10)) == [3]
    assert list(recorder.commit_ends(4, 10)) == []
