"""What auditors read: the log's entries, and the hash chains that seal them.

An **entry** is one stored domain event as auditors see it::

    {"position", "stream", "version", "type", "occurredAt", "data", "metadata"}

``type`` is a stable name from ``TYPE_NAMES`` (a contract, like stored topics:
it stays when a class is renamed); ``data`` is the payload as stored (before
any upcasting), keys in camelCase; ``metadata`` holds the ``requestId`` and
``actor`` the event was recorded with, and its ``hash``.

**The chain.** Each stream's events are chained: the digest of version ``n``
is ``sha256(digest(n - 1) + canonical(body(n)))`` with ``GENESIS`` before
version 1, where ``body`` is the entry without ``position`` (assigned later on
DynamoDB) and without ``metadata.hash``, and ``canonical`` is JSON with sorted
keys and no spaces. Every event is stored with its digest (``metadata.hash``),
so altering, removing or reordering any stored event breaks its stream's chain
at that point; anyone holding an export of the feed (``regsvc export``: the
entries as sealed) can recompute the chains from the entries alone (``link``).
The API serves them through ``Presenter``: without storage details in
``data``, and with ``eventId`` on every entry of a registration.

Events recorded before the service sealed its events have no stored digest:
the chain runs through them (their digests are computed), so the first sealed
event after them seals them too; verify counts them as ``unsealed``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

import orjson
from eventsourcing.persistence import ApplicationRecorder, Notification, StoredEvent
from eventsourcing.utils import TopicError, resolve_topic

from domain.errors import GatheringNotFoundError, UserNotFoundError
from domain.model import (
    Gathering,
    Registration,
    User,
    WaitlistPage,
    gathering_aggregate_id,
    registration_aggregate_id,
    user_aggregate_id,
)
from projections.paging import (
    decode_token,
    encode_token,
    event_history,
    invalid_token,
    user_history,
)

GENESIS = "0" * 64

TYPE_NAMES: dict[type, str] = {
    User.Created: "UserCreated",
    User.Erased: "UserErased",
    Gathering.Created: "GatheringCreated",
    Gathering.Revised: "GatheringRevised",
    Gathering.CapacityChanged: "CapacityChanged",
    Gathering.SeatTaken: "SeatTaken",
    Gathering.SeatReleased: "SeatReleased",
    Gathering.WaitlistJoined: "WaitlistJoined",
    Gathering.WaitlistLeft: "WaitlistLeft",
    Gathering.Promoted: "PromotedFromWaitlist",
    Gathering.Deleted: "GatheringDeleted",
    Registration.Created: "RegistrationCreated",
    Registration.Confirmed: "RegistrationConfirmed",
    Registration.Waitlisted: "RegistrationWaitlisted",
    Registration.Promoted: "RegistrationPromoted",
    Registration.Withdrawn: "RegistrationWithdrawn",
    WaitlistPage.Created: "WaitlistPageOpened",
    WaitlistPage.Appended: "WaitlistTicketAppended",
    WaitlistPage.Removed: "WaitlistTicketRemoved",
}
"""Stable names of the stored domain events (a contract: never change one)."""

# Stored payload keys whose HTTP name differs from their camelCase.
_RENAMED = {"gathering_id": "eventId", "class_version": "classVersion"}
# Kept outside ``data``: the time is the entry's occurredAt, the rest is metadata.
_NOT_DATA = frozenset({"timestamp", "__meta__"})

META = "__meta__"
"""The stored state's key holding the event's metadata (requestId, actor, hash)."""


def type_name(topic: str) -> str:
    """The stable name of a stored topic (the topic itself if it names no known event)."""
    try:
        return TYPE_NAMES.get(resolve_topic(topic), topic)
    except TopicError:  # a topic no class answers to is still reported, by name
        return topic


@lru_cache(maxsize=1024)
def _camel(key: str) -> str:
    renamed = _RENAMED.get(key)
    if renamed is not None:
        return renamed
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def occurred_at(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and ``Z``."""
    if moment.tzinfo is not UTC:  # events are timestamped in UTC: the rest is the odd case
        offset = moment.utcoffset()
        if offset is not None and offset != timedelta(0):
            moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return occurred_at(value)
    if isinstance(value, UUID):
        return str(value)
    msg = f"{type(value).__name__} is not a plain value"
    raise TypeError(msg)


def body(stream: UUID, version: int, topic: str, state: Mapping[str, Any]) -> dict[str, Any]:
    """The sealed part of an entry, from a stored event's decoded state."""
    meta = state.get(META) or {}
    moment = state.get("timestamp")
    return {
        "stream": str(stream),
        "version": version,
        "type": type_name(topic),
        "occurredAt": occurred_at(moment) if isinstance(moment, datetime) else None,
        "data": {_camel(k): v for k, v in state.items() if k not in _NOT_DATA},
        "metadata": {
            "requestId": meta.get("requestId"),
            "actor": meta.get("actor"),
        },
    }


def sealed(stored: StoredEvent, state: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A stored event's entry body (from its decoded ``state``) and the digest it
    was stored with (None on an event recorded before events were sealed)."""
    sealed_body = body(
        stored.originator_id,  # type: ignore[arg-type]
        stored.originator_version,
        stored.topic,
        state,
    )
    return sealed_body, (state.get(META) or {}).get("hash")


# orjson's output with these options is byte for byte that of ``json.dumps(...,
# sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` for what an
# entry body holds: strings (every code point; tests/test_tamper_evidence.py),
# integers, booleans, null, lists and objects with string keys, and datetimes
# and UUIDs through ``_plain``. Events hold no floats (also tested), whose
# spelling is where the two differ. Anything orjson refuses (integers beyond
# 64 bits, keys that are not strings) goes to ``json``, which defines the form.
_CANONICAL_OPTIONS = (
    orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def canonical(sealed: Mapping[str, Any]) -> bytes:
    """An entry body as canonical JSON (UTF-8): sorted keys, no spaces."""
    try:
        return orjson.dumps(sealed, default=_plain, option=_CANONICAL_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(
            sealed, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain
        ).encode()


def link(previous: str, sealed: Mapping[str, Any]) -> str:
    """The digest of an entry's body, chained to its predecessor's digest."""
    return hashlib.sha256(previous.encode() + canonical(sealed)).hexdigest()


def undecodable_entry(log_position: int | None, stored: StoredEvent) -> dict[str, Any]:
    """The entry of a stored event whose state cannot be decoded (altered in the
    store): what can still be said of it, its stored bytes (base64) and the marker
    ``undecodable`` (verify names it as a broken link)."""
    return {
        "position": log_position,
        "stream": str(stored.originator_id),
        "version": stored.originator_version,
        "type": type_name(stored.topic),
        "occurredAt": None,
        "data": {},
        "metadata": {"requestId": None, "actor": None, "hash": None},
        "undecodable": True,
        "raw": base64.b64encode(stored.state).decode("ascii"),
    }


def served(log_position: int | None, stored: StoredEvent, decode: Decode) -> dict[str, Any]:
    """A stored event's entry as sealed (what ``regsvc export`` writes: its chain can
    be recomputed from it), or its undecodable entry."""
    try:
        return entry(log_position, *sealed(stored, decode(stored)))
    except Exception:  # altered bytes can fail to decode in any way (as in verify)
        return undecodable_entry(log_position, stored)


# How the event store keeps a payload, not what happened: left out of the API's
# entries (they stay in the sealed body, and in the export, which the chain covers).
STORAGE_KEYS = frozenset({"originatorTopic", "classVersion"})
REGISTRATION_TYPES = frozenset(
    TYPE_NAMES[cls]
    for cls in (
        Registration.Created,
        Registration.Confirmed,
        Registration.Waitlisted,
        Registration.Promoted,
        Registration.Withdrawn,
    )
)
MAX_KNOWN_REGISTRATIONS = 100_000


class Presenter:
    """Entries as the API serves them: ``data`` without storage details, and every
    entry of a registration naming the event (gathering) it is about (only its
    creation records ``eventId``; a withdrawal, say, records the user alone)."""

    def __init__(self, read_stream: ReadStream, decode: Decode) -> None:
        self.read_stream = read_stream
        self.decode = decode
        # A registration stream's gathering never changes: stream -> eventId.
        self._events: dict[str, str] = {}

    def learn(self, stream: UUID | str, event_id: str) -> None:
        if len(self._events) > MAX_KNOWN_REGISTRATIONS:
            self._events.clear()
        self._events[str(stream)] = event_id

    def present(self, entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        for found in entries:
            if found["type"] == TYPE_NAMES[Registration.Created] and "eventId" in found["data"]:
                self.learn(found["stream"], str(found["data"]["eventId"]))
        return [self._present(found) for found in entries]

    def _present(self, found: dict[str, Any]) -> dict[str, Any]:
        if found.get("undecodable"):
            return found
        data = {k: v for k, v in found["data"].items() if k not in STORAGE_KEYS}
        if found["type"] in REGISTRATION_TYPES and "eventId" not in data:
            event_id = self.event_of(found["stream"])
            if event_id is not None:
                data["eventId"] = event_id
        return {**found, "data": data}

    def event_of(self, stream: str) -> str | None:
        """The gathering a registration stream is about (from its creation, version 1)."""
        known = self._events.get(stream)
        if known is not None:
            return known
        try:
            first = self.read_stream(UUID(stream), lte=1, limit=1)
            event_id = self.decode(first[0]).get("gathering_id") if first else None
        except Exception:  # an undecodable creation names nothing (verify names it)
            return None
        if not isinstance(event_id, str):
            return None
        self.learn(stream, event_id)
        return event_id


def entry(
    log_position: int | None, sealed: Mapping[str, Any], digest: str | None
) -> dict[str, Any]:
    """The entry as served: the body, its position, and its stored digest."""
    return {
        "position": log_position,
        **sealed,
        "data": json.loads(json.dumps(sealed["data"], default=_plain)),
        "metadata": {**sealed["metadata"], "hash": digest},
    }


@dataclass
class ChainCheck:
    """Recomputes every stream's chain from entries given in log order.

    The first broken link is kept: an event whose stored digest differs from
    the recomputed one (altered, or a predecessor was), or whose version does
    not follow its stream's previous one (an event removed, or reordered).
    """

    checked: int = 0
    unsealed: int = 0
    first_broken: dict[str, Any] | None = None
    _heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    _feed: str = GENESIS

    @property
    def ok(self) -> bool:
        return self.first_broken is None

    @property
    def digest(self) -> str:
        """The feed's digest: every entry's digest chained in log order."""
        return self._feed

    def add(self, log_position: int, sealed: Mapping[str, Any], stored: str | None) -> None:
        self.checked += 1
        stream, version = sealed["stream"], sealed["version"]
        last_version, previous = self._heads.get(stream, (0, GENESIS))
        digest = link(previous, sealed)
        self._heads[stream] = (version, digest)
        self._feed = hashlib.sha256((self._feed + digest).encode()).hexdigest()
        if stored is None:
            self.unsealed += 1
        if self.first_broken is not None:
            return
        if version != last_version + 1:
            self._broken(log_position, stream, version, f"follows version {last_version}")
        elif stored is not None and stored != digest:
            self._broken(log_position, stream, version, "its digest does not match its content")

    def undecodable(self, notification: Notification, error: Exception) -> None:
        """Counts an event whose stored state cannot even be decoded: a broken link."""
        self.checked += 1
        stream = str(notification.originator_id)
        self._heads[stream] = (notification.originator_version, "undecodable")
        if self.first_broken is None:
            self._broken(
                notification.id,
                stream,
                notification.originator_version,
                f"its stored state cannot be decoded ({type(error).__name__})",
            )

    def _broken(self, log_position: int, stream: str, version: int, reason: str) -> None:
        self.first_broken = {
            "position": log_position,
            "stream": stream,
            "version": version,
            "reason": reason,
        }

    def report(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "unsealed": self.unsealed,
            "digest": self.digest,
            "firstBroken": self.first_broken,
        }


@runtime_checkable
class CopiedLog(Protocol):
    """A log that holds copies of the stored events (DynamoDB's index): verify
    also checks that each copy equals the event its stream holds."""

    def stored_states(self, keys: Sequence[tuple[UUID, int]]) -> dict[tuple[str, int], bytes]:
        """The stored state of each (stream, version) found, keyed by (str(stream), version)."""
        ...


Decode = Callable[[StoredEvent], dict[str, Any]]
"""The mapper's ``decode_state``: a stored event's state as stored."""
ReadStream = Callable[..., Sequence[StoredEvent]]
"""``recorder.select_events``: (originator_id, gt=, lte=, desc=, limit=)."""

Show = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
"""What a page's entries show of the personal data they hold
(``projections.personal.shown_entries``)."""


def _as_stored(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return entries


VERIFY_PAGE = 500

FEED_SCAN_BOUND = 5000
"""The most log entries one filtered page of the feed examines: a page that
reaches it before filling stops there, with what it found and a ``next`` to
read on from (a request never scans the whole log)."""


@dataclass(frozen=True)
class FeedFilter:
    """Which entries of the feed a page keeps: those that match every filter given,
    each stated on the entry as served. ``request_id``: its ``metadata.requestId``;
    ``user_id``: its ``data.userId``; ``event_id``: an entry of the event's own
    stream, or one whose ``data.eventId`` names it (as every registration entry's
    does once served)."""

    request_id: str | None = None
    event_id: str | None = None
    user_id: str | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.request_id, self.event_id, self.user_id))


class _Matcher:
    """Decides whether an entry (as sealed, before ``Presenter``) passes a filter."""

    def __init__(self, only: FeedFilter, presenter: Presenter) -> None:
        self.only = only
        self.presenter = presenter
        self.event_stream = (
            str(gathering_aggregate_id(only.event_id)) if only.event_id is not None else None
        )

    def __call__(self, found: Mapping[str, Any]) -> bool:
        only = self.only
        if only.request_id is not None and found["metadata"]["requestId"] != only.request_id:
            return False
        if only.user_id is not None and found["data"].get("userId") != only.user_id:
            return False
        return only.event_id is None or self._about_event(found, only.event_id)

    def _about_event(self, found: Mapping[str, Any], event_id: str) -> bool:
        if found["stream"] == self.event_stream or found["data"].get("eventId") == event_id:
            return True
        if found["type"] not in REGISTRATION_TYPES:
            return False
        # A registration's stream is named by its event and user: no read needed,
        # but for an entry recorded before every registration event named its user.
        user_id = found["data"].get("userId")
        if isinstance(user_id, str):
            return bool(found["stream"] == str(registration_aggregate_id(event_id, user_id)))
        return self.presenter.event_of(found["stream"]) == event_id


class AuditLog:
    """The feed of every stored domain event in log order, and its verification."""

    def __init__(
        self,
        recorder: ApplicationRecorder,
        decode: Decode,
        settle: Callable[[], None] = lambda: None,
        show: Show = _as_stored,
    ) -> None:
        """``settle``: returns once the log holds every write made before the
        call, in any process (a log indexed after the appends); ``show``: what a
        page of entries shows of personal data (``projections/personal.py``)."""
        self.recorder = recorder
        self.decode = decode
        self.presenter = Presenter(recorder.select_events, decode)
        self.settle = settle
        self.scan_bound = FEED_SCAN_BOUND
        self.show = show

    def _sealed(self, notification: Notification) -> tuple[dict[str, Any], str | None]:
        return sealed(notification, self.decode(notification))

    def page(
        self, after: int, limit: int, only: FeedFilter | None = None
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Up to ``limit`` entries after position ``after`` (as the API serves them),
        and the ``after`` of the next page (None once this page reaches the head).
        With a filter (``only``): the entries that match it, found among at most
        ``scan_bound`` entries of the log."""
        if only:
            return self._filtered(after, limit, only)
        notifications = self.recorder.select_notifications(start=after + 1, limit=limit)
        entries = self.presenter.present(
            self.show([served(n.id, n, self.decode) for n in notifications])
        )
        if not entries:
            return [], None
        last = entries[-1]["position"]
        head = self.recorder.max_notification_id() or 0
        return entries, (last if last < head else None)

    def _filtered(
        self, after: int, limit: int, only: FeedFilter
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Reads on from ``after`` until ``limit`` entries matched, the head or
        ``scan_bound`` entries examined; ``next`` is the last position examined
        (the last kept when the page filled), so no entry is skipped or repeated."""
        matches = _Matcher(only, self.presenter)
        kept: list[dict[str, Any]] = []
        examined = after
        budget = self.scan_bound
        while budget > 0 and len(kept) < limit:
            notifications = self.recorder.select_notifications(
                start=examined + 1, limit=min(budget, VERIFY_PAGE)
            )
            if not notifications:
                break
            budget -= len(notifications)
            for notification in notifications:
                found = served(notification.id, notification, self.decode)
                examined = notification.id
                if matches(found):
                    kept.append(found)
                    if len(kept) == limit:
                        break
        if examined == after:  # nothing after ``after``: the head
            return [], None
        head = self.recorder.max_notification_id() or 0
        return self.presenter.present(self.show(kept)), (examined if examined < head else None)

    def entries(self, after: int = 0, until: int | None = None) -> Iterator[dict[str, Any]]:
        """Every entry after position ``after`` (up to ``until``), in log order, as
        sealed (the export: the chains can be recomputed from it)."""
        for page in self._pages(after, until):
            yield from self.show([served(n.id, n, self.decode) for n in page])

    def notifications(self, after: int = 0, until: int | None = None) -> Iterator[Notification]:
        """Every notification after ``after`` (up to ``until``), read in pages."""
        for page in self._pages(after, until):
            yield from page

    def _pages(self, after: int, until: int | None) -> Iterator[Sequence[Notification]]:
        log_position = after
        while until is None or log_position < until:
            page = self.recorder.select_notifications(
                start=log_position + 1, limit=VERIFY_PAGE, stop=until
            )
            if not page:
                return
            yield page
            log_position = page[-1].id

    def verify(self, on_progress: Callable[[int, int], None] | None = None) -> ChainCheck:
        """Recomputes every stream's chain over the whole log (and, where the log
        holds copies, checks each copy against its stream's event)."""
        self.settle()
        head = self.recorder.max_notification_id() or 0
        check = ChainCheck()
        batch: list[Notification] = []
        for notification in self.notifications(until=head):
            batch.append(notification)
            if len(batch) == VERIFY_PAGE:
                self._check(batch, check)
                batch = []
                if on_progress is not None:
                    on_progress(check.checked, head)
        self._check(batch, check)
        if on_progress is not None:
            on_progress(check.checked, head)
        return check

    def _check(self, batch: Sequence[Notification], check: ChainCheck) -> None:
        copies = (
            self.recorder.stored_states(
                [(n.originator_id, n.originator_version) for n in batch]  # type: ignore[misc]
            )
            if isinstance(self.recorder, CopiedLog) and batch
            else None
        )
        for notification in batch:
            try:
                sealed, digest = self._sealed(notification)
            except Exception as error:  # altered bytes can fail to decode in any way
                check.undecodable(notification, error)
                continue
            check.add(notification.id, sealed, digest)
            if copies is None or check.first_broken is not None:
                continue
            key = (str(notification.originator_id), notification.originator_version)
            if copies.get(key) != notification.state:
                check.first_broken = {
                    "position": notification.id,
                    "stream": key[0],
                    "version": key[1],
                    "reason": "the log's copy differs from the event its stream holds",
                }


def _position(token: str | None, field: str, list_of: str) -> int:
    """Where a history page starts: 0, or the position its ``token`` gives (never
    negative, even in a token minted with the default key)."""
    if token is None:
        return 0
    position = decode_token(token, {field: int}, list_of=list_of)[field]
    if not isinstance(position, int) or position < 0:
        raise invalid_token()
    return position


@runtime_checkable
class StreamLog(Protocol):
    """A store that can say where each event of a stream sits in the log."""

    def stream_notifications(
        self, originator_id: UUID, *, gt: int | None = None, limit: int | None = None
    ) -> list[tuple[StoredEvent, int | None]]:
        """The stream's events after version ``gt``, oldest first, each with its
        position (None while the log has not placed it yet)."""
        ...


class History:
    """Every domain event about one event (its gathering's stream: details, seats,
    waitlist, promotions) or one user (their account and each of their
    registrations), oldest first, read from the log, never from the read tables
    (but for which events a user ever registered for)."""

    def __init__(
        self,
        log: StreamLog,
        decode: Decode,
        registered_event_ids: Callable[[str], list[str]],
        settle: Callable[[], None] = lambda: None,
        show: Show = _as_stored,
    ) -> None:
        self.log = log
        self.decode = decode
        self.registered_event_ids = registered_event_ids
        self.settle = settle
        self.show = show
        self.presenter = Presenter(self._first_events, decode)

    def _first_events(
        self, stream: UUID, *, lte: int | None = None, limit: int | None = None
    ) -> list[StoredEvent]:
        rows = self.log.stream_notifications(stream, limit=limit)
        return [stored for stored, _ in rows if lte is None or stored.originator_version <= lte]

    def _entries(self, rows: Sequence[tuple[StoredEvent, int | None]]) -> list[dict[str, Any]]:
        return self.presenter.present(
            self.show([served(log_position, stored, self.decode) for stored, log_position in rows])
        )

    def of_event(
        self, event_id: str, limit: int, token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the event's history and the token of the next (None at the end).
        Still readable after the event's deletion."""
        after = _position(token, "v", event_history(event_id))
        self.settle()
        rows = self.log.stream_notifications(
            gathering_aggregate_id(event_id), gt=after, limit=limit + 1
        )
        if not rows and not after:
            msg = f"Event '{event_id}' not found"
            raise GatheringNotFoundError(msg)
        page = rows[:limit]
        following = (
            encode_token({"v": page[-1][0].originator_version}, list_of=event_history(event_id))
            if len(rows) > limit
            else None
        )
        return self._entries(page), following

    def of_user(
        self, user_id: str, limit: int, token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the user's history (ordered by position, so that a page never
        moves: what is appended later goes after it)."""
        skip = _position(token, "n", user_history(user_id))
        self.settle()
        account = self.log.stream_notifications(user_aggregate_id(user_id))
        if not account:
            msg = f"User '{user_id}' not found"
            raise UserNotFoundError(msg)
        rows = list(account)
        for event_id in self.registered_event_ids(user_id):
            stream = registration_aggregate_id(event_id, user_id)
            self.presenter.learn(stream, event_id)
            rows += self.log.stream_notifications(stream)
        rows.sort(
            key=lambda r: (
                r[1] is None,
                r[1] or 0,
                str(r[0].originator_id),
                r[0].originator_version,
            )
        )
        page = rows[skip : skip + limit]
        following = (
            encode_token({"n": skip + limit}, list_of=user_history(user_id))
            if len(rows) > skip + limit
            else None
        )
        return self._entries(page), following
