"""Folds domain events into the Users, Events and Registrations read tables.

``fold`` is the one place that says which domain event changes which row.
``CatchUpProjector`` follows the application's notification log by polling
(eventsourcing's SQLite recorder has no ``subscribe``): it reads a batch of
notifications after the read model's tracking position and applies it, with
the new position, in one read-model transaction. A batch that another
process applied first is skipped, so every domain event takes effect exactly
once, across crashes, restarts and several server processes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification
from eventsourcing.utils import get_topic

from domain.model import Gathering, User
from projections.ports import Change, ReadModel, ReadTableWriter
from projections.views import EventRow

logger = logging.getLogger(__name__)


def _user_created(e: User.Created, _: int, w: ReadTableWriter) -> None:
    w.put_user(e.user_id, e.name, e.timestamp)


def _gathering_created(e: Gathering.Created, _: int, w: ReadTableWriter) -> None:
    w.put_event(
        e.originator_id,
        EventRow(
            event_id=e.gathering_id,
            title=e.title,
            description=e.description,
            date=e.date,
            location=e.location,
            organizer=e.organizer,
            status=e.status,
            capacity=e.capacity,
            waitlist_enabled=e.waitlist_enabled,
            registered_count=0,
            waitlist_count=0,
            created_at=e.timestamp,
            updated_at=e.timestamp,
        ),
    )


def _gathering_revised(e: Gathering.Revised, _: int, w: ReadTableWriter) -> None:
    changes: dict[str, object] = {
        "title": e.title,
        "description": e.description,
        "date": e.date,
        "location": e.location,
        "organizer": e.organizer,
        "status": e.status,
        "waitlist_enabled": e.waitlist_enabled,
    }
    w.update_event(
        _gathering_id(e, w), {k: v for k, v in changes.items() if v is not None}, e.timestamp
    )


def _capacity_changed(e: Gathering.CapacityChanged, _: int, w: ReadTableWriter) -> None:
    w.update_event(_gathering_id(e, w), {"capacity": e.capacity}, e.timestamp)


def _seat_taken(e: Gathering.SeatTaken, position: int, w: ReadTableWriter) -> None:
    event_id = _gathering_id(e, w)
    # Confirmed people are listed in the order they got their seat.
    w.put_registration(e.user_id, event_id, "confirmed", position, e.timestamp)
    w.adjust_counts(event_id, +1, 0, e.timestamp)


def _seat_released(e: Gathering.SeatReleased, _: int, w: ReadTableWriter) -> None:
    event_id = _gathering_id(e, w)
    w.delete_registration(e.user_id, event_id)
    w.adjust_counts(event_id, -1, 0, e.timestamp)


def _waitlist_joined(e: Gathering.WaitlistJoined, _: int, w: ReadTableWriter) -> None:
    event_id = _gathering_id(e, w)
    # Waiting people are listed in ticket order, which is FIFO.
    w.put_registration(e.user_id, event_id, "waitlist", e.ticket, e.timestamp)
    w.adjust_counts(event_id, 0, +1, e.timestamp)


def _waitlist_left(e: Gathering.WaitlistLeft, _: int, w: ReadTableWriter) -> None:
    event_id = _gathering_id(e, w)
    w.delete_registration(e.user_id, event_id)
    w.adjust_counts(event_id, 0, -1, e.timestamp)


def _promoted(e: Gathering.Promoted, position: int, w: ReadTableWriter) -> None:
    event_id = _gathering_id(e, w)
    w.promote_registration(e.user_id, event_id, position)
    w.adjust_counts(event_id, +1, -1, e.timestamp)


def _deleted(e: Gathering.Deleted, _: int, w: ReadTableWriter) -> None:
    w.delete_event(_gathering_id(e, w))


def _gathering_id(e: Aggregate.Event, w: ReadTableWriter) -> str:
    # Later gathering events carry only the stream's UUID; the read model
    # remembers which gathering id each stream belongs to (from its Created).
    return w.event_id_for(e.originator_id)


Handler = Callable[[Any, int, ReadTableWriter], None]

HANDLERS: dict[type[Aggregate.Event], Handler] = {
    User.Created: _user_created,
    Gathering.Created: _gathering_created,
    Gathering.Revised: _gathering_revised,
    Gathering.CapacityChanged: _capacity_changed,
    Gathering.SeatTaken: _seat_taken,
    Gathering.SeatReleased: _seat_released,
    Gathering.WaitlistJoined: _waitlist_joined,
    Gathering.WaitlistLeft: _waitlist_left,
    Gathering.Promoted: _promoted,
    Gathering.Deleted: _deleted,
}

TOPICS: tuple[str, ...] = tuple(get_topic(cls) for cls in HANDLERS)

# Events that a command only ever saves right after another of its own events
# (a promotion follows a released seat, a capacity change or another
# promotion; a capacity change may follow a revision of the same PUT). Cutting
# a batch before one of them could show readers half a command.
CONTINUATION_TOPICS = frozenset(
    get_topic(cls) for cls in (Gathering.Promoted, Gathering.CapacityChanged)
)


def _continues_command(notification: Notification) -> bool:
    return notification.topic in CONTINUATION_TOPICS


def fold(domain_event: Aggregate.Event, position: int, writer: ReadTableWriter) -> None:
    """Applies one domain event (at notification ``position``) to the read tables."""
    handler = HANDLERS.get(type(domain_event))
    if handler is not None:
        handler(domain_event, position, writer)


@dataclass(frozen=True)
class Progress:
    position: int
    head: int


class CatchUpProjector:
    """Keeps a read model up to date with an application's notification log."""

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[Any],
        read_model: ReadModel,
        *,
        batch_size: int = 500,
        poll_interval: float = 0.25,
    ) -> None:
        self.recorder = recorder
        self.mapper = mapper
        self.read_model = read_model
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: BaseException | None = None

    # -- one step ------------------------------------------------------------

    def step(self) -> Progress:
        """Applies at most one batch; returns the position reached and the log's head."""
        position = self.read_model.position()
        head = self.recorder.max_notification_id() or 0
        if head <= position:
            return Progress(position, head)
        notifications = list(
            self.recorder.select_notifications(
                start=position + 1, limit=self.batch_size, stop=head, topics=TOPICS
            )
        )
        if len(notifications) < self.batch_size:
            # Every id up to ``head`` has committed, and ``head`` ends a save:
            # nothing of interest lies between the batch's last id and it.
            new_position = head
        else:
            # A full batch may end inside one command's events: take the rest
            # of that command too, so the batch ends on a command boundary.
            while True:
                following = self.recorder.select_notifications(
                    start=notifications[-1].id + 1, limit=1, stop=head, topics=TOPICS
                )
                if not following or not _continues_command(following[0]):
                    break
                notifications.append(following[0])
            new_position = notifications[-1].id
        changes = [self._change(n) for n in notifications]
        applied = self.read_model.apply(position, changes, new_position)
        return Progress(new_position if applied else self.read_model.position(), head)

    def catch_up(
        self, until: int | None = None, on_progress: Callable[[Progress], None] | None = None
    ) -> int:
        """Applies batches until the read model holds ``until`` (default: the log's head)."""
        with self._lock:
            while True:
                progress = self.step()
                if on_progress is not None:
                    on_progress(progress)
                target = progress.head if until is None else min(until, progress.head)
                if progress.position >= target:
                    return progress.position

    def wait_for(self, position: int, timeout: float) -> bool:
        """Read-your-writes: returns once the read model holds ``position``, or False on timeout."""
        deadline = time.monotonic() + timeout
        while self.read_model.position() < position:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._lock.acquire(timeout=remaining):
                try:
                    self.step()
                finally:
                    self._lock.release()
        return True

    def _change(self, notification: Notification) -> Change:
        domain_event: Aggregate.Event = self.mapper.to_domain_event(notification)  # type: ignore[assignment]
        return Change(
            position=notification.id,
            write=lambda writer: fold(domain_event, notification.id, writer),
            starts_command=not _continues_command(notification),
        )

    # -- following the log in the background ---------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="projector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        delay = self.poll_interval
        while not self._stop.is_set():
            try:
                self.catch_up()
            except Exception as error:  # keep following; the next poll retries
                self.last_error = error
                logger.exception("projector step failed; retrying in %ss", delay)
                delay = min(delay * 2, 5.0)
            else:
                self.last_error = None
                delay = self.poll_interval
            self._stop.wait(delay)
