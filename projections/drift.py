"""The drift check: do the live read tables equal a fresh fold of the log?

Exact while writes continue. The log's head is read before the live tables
are dumped (``H0``) and again after (``H1``); the log is folded afresh up to
``H0``, then commit by commit up to ``H1``, noting every value each touched
row takes. A live row passes when it holds a value the fold gives it at some
position between ``H0`` and ``H1`` (the moment the dump read it); any other
value, or a row the fold never has, is drift. With no writes during the dump
``H0 = H1`` and the comparison is row for row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Mapper
from pydantic.alias_generators import to_camel

from projections.catch_up import CatchUpProjector, wait_until_logged
from projections.memory import MemoryTables, StoredRegistration
from projections.ports import Commit, ReadModel, ReadTableWriter
from projections.views import EventRow

# As the stores name their read tables (the API serves ``gatherings`` rows as events).
TABLES = ("users", "gatherings", "streams", "registrations", "user_events")
MAX_DIFFERENCES = 1000

Key = tuple[str, Any]  # (table, the row's key in it)


def _value(tables: MemoryTables, key: Key) -> object:
    table, row_key = key
    if table == "user_events":
        return True if row_key in tables.user_events else None
    found = getattr(tables, table).get(row_key)
    if isinstance(found, StoredRegistration):
        return replace(found)  # promotions change it in place
    return found


def _keys(tables: MemoryTables) -> Iterator[Key]:
    for table in TABLES:
        for row_key in getattr(tables, table):
            yield table, row_key


class _Noting(ReadTableWriter):
    """Writes to ``tables`` and notes the rows touched, with their value before."""

    def __init__(self, tables: MemoryTables) -> None:
        self.tables = tables
        self.before: dict[Key, object] = {}
        self.touched: set[Key] = set()

    def _touch(self, *keys: Key) -> None:
        for key in keys:
            if key not in self.before:
                self.before[key] = _value(self.tables, key)
            self.touched.add(key)

    def put_user(self, user_id: str, name: str, at: datetime) -> None:
        self._touch(("users", user_id))
        self.tables.put_user(user_id, name, at)

    def erase_user(self, user_id: str, at: datetime) -> None:
        self._touch(("users", user_id))
        self.tables.erase_user(user_id, at)

    def put_event(self, stream_id: UUID, row: EventRow) -> None:
        self._touch(("streams", stream_id), ("gatherings", row.event_id))
        self.tables.put_event(stream_id, row)

    def event_id_for(self, stream_id: UUID) -> str:
        return self.tables.event_id_for(stream_id)

    def update_event(self, event_id: str, fields: dict[str, object], at: datetime) -> None:
        self._touch(("gatherings", event_id))
        self.tables.update_event(event_id, fields, at)

    def adjust_counts(self, event_id: str, registered: int, waitlisted: int, at: datetime) -> None:
        self._touch(("gatherings", event_id))
        self.tables.adjust_counts(event_id, registered, waitlisted, at)

    def delete_event(self, event_id: str) -> None:
        self._touch(("gatherings", event_id))
        self.tables.delete_event(event_id)

    def put_registration(
        self, user_id: str, event_id: str, status: str, sort_key: int, at: datetime
    ) -> None:
        self._touch(("registrations", (user_id, event_id)))
        self.tables.put_registration(user_id, event_id, status, sort_key, at)

    def promote_registration(self, user_id: str, event_id: str, sort_key: int) -> None:
        self._touch(("registrations", (user_id, event_id)))
        self.tables.promote_registration(user_id, event_id, sort_key)

    def delete_registration(self, user_id: str, event_id: str) -> None:
        self._touch(("registrations", (user_id, event_id)))
        self.tables.delete_registration(user_id, event_id)

    def note_registration(self, user_id: str, event_id: str) -> None:
        self._touch(("user_events", (user_id, event_id)))
        self.tables.note_registration(user_id, event_id)


@dataclass
class _Fold:
    """A catch-up target in memory that, past ``watch_from``, records every value
    each row takes after each commit."""

    tables: MemoryTables = field(default_factory=MemoryTables)
    watch_from: int | None = None
    taken: dict[Key, list[object]] = field(default_factory=dict)
    _log_position: int = 0

    def log_position(self) -> int:
        return self._log_position

    def go_live(self, log_position: int) -> None:
        """Nothing to do."""

    def apply(self, expected: int, commits: Sequence[Commit], new_log_position: int) -> bool:
        for commit in commits:
            if self.watch_from is None or commit[0].log_position <= self.watch_from:
                for change in commit:
                    change.write(self.tables)
                continue
            noting = _Noting(self.tables)
            for change in commit:
                change.write(noting)
            for key in noting.touched:
                values = self.taken.setdefault(key, [noting.before[key]])
                values.append(_value(self.tables, key))
        self._log_position = new_log_position
        return True


@dataclass(frozen=True)
class Difference:
    table: str
    key: str
    live: object
    expected: object

    def report(self) -> dict[str, object]:
        return {
            "table": self.table,
            "key": self.key,
            "live": _plain(self.live),
            "expected": _plain(self.expected),
        }


def _plain(value: object) -> object:
    if value is None:
        return None
    if value is True:
        return {}
    if is_dataclass(value) and not isinstance(value, type):
        fields = asdict(value).items()
        return {to_camel(k): v.isoformat() if isinstance(v, datetime) else v for k, v in fields}
    return str(value)


def _key_text(row_key: object) -> str:
    if isinstance(row_key, tuple):
        return "/".join(str(part) for part in row_key)
    return row_key.hex if isinstance(row_key, UUID) else str(row_key)


@dataclass(frozen=True)
class DriftReport:
    ok: bool
    log_position: int
    rows: int
    differences: list[Difference]
    truncated: bool = False
    events: tuple[str, ...] = ()
    """The events (gathering ids) the log holds at ``log_position``, sorted."""

    def report(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "position": self.log_position,
            "rows": self.rows,
            "differences": [d.report() for d in self.differences],
            "truncated": self.truncated,
        }


def check_drift(
    recorder: ApplicationRecorder,
    mapper: Mapper[Any],
    read_model: ReadModel,
    on_progress: Callable[[int, int], None] | None = None,
) -> DriftReport:
    """Compares the live read tables with a fresh fold of the whole log."""
    wait_until_logged(recorder, every_process=True)
    before = recorder.max_notification_id() or 0
    live = read_model.dump()
    wait_until_logged(recorder, every_process=True)
    after = recorder.max_notification_id() or 0

    fold = _Fold(watch_from=before)
    projector = CatchUpProjector(recorder, mapper, fold)  # type: ignore[arg-type]
    projector.catch_up(
        until=after,
        on_progress=None if on_progress is None else lambda p: on_progress(p.log_position, after),
    )
    expected = fold.tables
    differences: list[Difference] = []
    keys = sorted(
        {*_keys(live), *_keys(expected), *fold.taken}, key=lambda k: (k[0], _key_text(k[1]))
    )
    for key in keys:
        held = _value(live, key)
        allowed = fold.taken.get(key, [_value(expected, key)])
        if not any(held == value for value in allowed):
            differences.append(Difference(key[0], _key_text(key[1]), held, _value(expected, key)))
    return DriftReport(
        ok=not differences,
        log_position=after,
        rows=sum(1 for _ in _keys(live)),
        differences=differences[:MAX_DIFFERENCES],
        truncated=len(differences) > MAX_DIFFERENCES,
        events=tuple(sorted(expected.gatherings)),
    )
