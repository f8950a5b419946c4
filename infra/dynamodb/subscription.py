"""The subscription to the notification log on DynamoDB: polls the index's head."""

from __future__ import annotations

from threading import Event, Thread
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import ListenNotifySubscription

from infra.dynamodb.recorders import DynamoDBApplicationRecorder

if TYPE_CHECKING:
    from collections.abc import Sequence


class DynamoDBSubscription(ListenNotifySubscription[DynamoDBApplicationRecorder]):
    """Polls the index's head (one small ConsistentRead GetItem per interval)
    and pulls new notifications when it has moved. It follows the log as the
    indexer writes it: it does not run the indexer itself.
    """

    def __init__(
        self,
        recorder: DynamoDBApplicationRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
    ) -> None:
        assert isinstance(recorder, DynamoDBApplicationRecorder)
        self._stopping = Event()
        self._poll_interval = recorder.datastore.poll_interval
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._poll_thread = Thread(target=self._poll, daemon=True)
        self._poll_thread.start()

    def stop(self) -> None:
        self._stopping.set()
        super().stop()

    def __exit__(self, *args: object, **kwargs: Any) -> None:
        try:
            super().__exit__(*args, **kwargs)
        finally:
            self._poll_thread.join()

    def _poll(self) -> None:
        seen: int | None = None
        try:
            while not self._stopping.wait(self._poll_interval):
                current = self._recorder.max_notification_id()
                if current != seen:
                    seen = current
                    self._has_been_notified.set()
        except BaseException as e:
            if self._thread_error is None:
                self._thread_error = e
            self.stop()
