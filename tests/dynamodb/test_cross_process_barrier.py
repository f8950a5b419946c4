"""Waits that must cover other processes' writes: a verify or a drift check in
one process right after a write through another counts that write, though
the indexer places it only later (here: half a second later, in a thread)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from domain.application import GatheringSpec
from infra.dynamodb import DynamoDBApplicationRecorder
from infra.settings import Settings
from infra.wiring import Container, build_container

INDEXER_DELAY_SECONDS = 0.5


@pytest.fixture
def processes(settings: Settings) -> Iterator[tuple[Container, Container]]:
    """A writer and a reader on the same tables, neither indexing in process
    (as the API Lambda's settings): only the slow indexer below does."""
    apart = settings.model_copy(update={"dynamodb_indexer": False})
    writer, reader = build_container(apart), build_container(apart)
    try:
        yield writer, reader
    finally:
        reader.close()
        writer.close()


class SlowIndexer:
    """Indexes the stream, through the writer's tables, only after a delay."""

    def __init__(self, container: Container) -> None:
        recorder = container.service.recorder
        assert isinstance(recorder, DynamoDBApplicationRecorder)
        self.poller = recorder.indexer()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self.stopping.wait(INDEXER_DELAY_SECONDS):
            self.poller.drain(30)

    def __enter__(self) -> SlowIndexer:
        self.thread.start()
        return self

    def __exit__(self, *args: object) -> None:
        self.stopping.set()
        self.thread.join()


def some_writes(writer: Container, user: str) -> None:
    service = writer.service
    service.create_user(user, user.title())
    service.register(user, "shared")


def test_a_verify_right_after_another_processs_write_counts_it(
    processes: tuple[Container, Container],
) -> None:
    writer, reader = processes
    writer.service.create_gathering(GatheringSpec("shared", "Shared", "2030-05-05", 10))
    with SlowIndexer(writer):
        some_writes(writer, "first")
        before = reader.audit.verify().checked

        some_writes(writer, "second")
        right_after = reader.audit.verify().checked

        assert right_after > before
        assert reader.audit.verify().checked == right_after  # nothing was left out


def test_a_drift_check_right_after_another_processs_write_passes_and_holds_it(
    processes: tuple[Container, Container],
) -> None:
    writer, reader = processes
    writer.service.create_gathering(GatheringSpec("shared", "Shared", "2030-05-05", 10))
    with SlowIndexer(writer):
        some_writes(writer, "first")

        report = reader.check("read-tables")

        assert report.ok, report.report()
        assert report.log_position == reader.service.recorder.max_notification_id()
        assert reader.read_model.get_registration("first", "shared") is not None
