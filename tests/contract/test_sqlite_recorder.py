"""eventsourcing's application-recorder conformance suite, on the service's SQLite recorder.

The recorder replaces eventsourcing's per-event inserts with one statement per
append and computes the notification ids itself; this suite holds it to the
library's contract (ids, ordering, concurrency, subscriptions).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from eventsourcing.sqlite import SQLiteDatastore
from eventsourcing.tests.persistence import ApplicationRecorderTestCase

from infra.sqlite.event_store import InlineSQLiteApplicationRecorder

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
