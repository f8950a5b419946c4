"""eventsourcing's application-recorder conformance suite, on the service's SQLite recorder.

The recorder replaces eventsourcing's per-event inserts with one statement per
append and computes the notification ids itself; this suite holds it to the
library's contract (ids, ordering, concurrency, subscriptions).
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteDatastore
from eventsourcing.tests.persistence import ApplicationRecorderTestCase

from infra.settings import Settings
from infra.sqlite.event_store import InlineSQLiteApplicationRecorder
from infra.wiring import build_container

pytestmark = pytest.mark.xdist_group("sqlite-recorder-conformance")


class TestInlineSQLiteApplicationRecorder(
    ApplicationRecorderTestCase[InlineSQLiteApplicationRecorder]
):
    def setUp(self) -> None:
        super().setUp()
        self._directory = tempfile.TemporaryDirectory()
        self.db_path = str(Path(self._directory.name) / "events.sqlite3")

    def tearDown(self) -> None:
        self._directory.cleanup()
        super().tearDown()

    def create_recorder(self) -> InlineSQLiteApplicationRecorder:
        recorder = InlineSQLiteApplicationRecorder(SQLiteDatastore(db_name=self.db_path))
        recorder.create_table()
        return recorder


# -- durability: what the event store promises ------------------------------


def append_pragmas(settings: Settings, threads: int = 4) -> set[tuple[int, str]]:
    """``(synchronous, journal_mode)`` of every connection that appended, when a
    service on ``settings`` appends from several threads at once (so that the
    pool hands out several connections)."""
    container = build_container(settings)
    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda n: container.service.create_user(f"u{n}", "U"), range(40)))
        recorder = container.service.recorder
        assert isinstance(recorder, InlineSQLiteApplicationRecorder)
        pragmas = set()
        for connection in recorder.appending_connections:
            cursor = connection.cursor().sqlite_cursor
            synchronous = int(cursor.execute("PRAGMA synchronous").fetchone()[0])
            pragmas.add((synchronous, str(cursor.execute("PRAGMA journal_mode").fetchone()[0])))
    finally:
        container.close()
    assert pragmas, "no append ran"
    return pragmas


FULL, NORMAL = 2, 1


def test_every_append_commits_in_wal_mode_with_synchronous_full(tmp_path: Path) -> None:
    assert append_pragmas(Settings(store="sqlite", data_dir=tmp_path)) == {(FULL, "wal")}


def test_synchronous_normal_is_used_only_where_it_is_chosen(tmp_path: Path) -> None:
    chosen = Settings(store="sqlite", data_dir=tmp_path / "a", sqlite_synchronous="NORMAL")
    assert append_pragmas(chosen) == {(NORMAL, "wal")}
    # The choice belongs to that service alone: the next one is FULL again.
    assert append_pragmas(Settings(store="sqlite", data_dir=tmp_path / "b")) == {(FULL, "wal")}


def test_streams_existing_names_exactly_the_streams_that_hold_events(tmp_path: Path) -> None:
    recorder = InlineSQLiteApplicationRecorder(SQLiteDatastore(db_name=str(tmp_path / "e.db")))
    recorder.create_table()
    written = [uuid4() for _ in range(600)]  # more than one statement's 500
    recorder.insert_events(
        [StoredEvent(s, v, "topic", b"{}") for s in written for v in (1, 2)], inline=None
    )
    never = [uuid4() for _ in range(600)]
    asked = [x for pair in zip(written, never, strict=True) for x in pair]
    assert recorder.streams_existing(asked) == set(written)
    assert recorder.streams_existing([]) == set()
