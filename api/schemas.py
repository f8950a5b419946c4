"""Request and response bodies at the HTTP edge (camelCase JSON)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)
from pydantic.alias_generators import to_camel

ID_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"
# What `date` accepts, exactly: a calendar date (leap days included) as YYYY-MM-DD, optionally
# followed by THH:MM[:SS[.ffffff]] and Z or an offset +HH:MM / -HH:MM. The pattern is stated in
# the OpenAPI document; every value that matches it is a real date (or date-time).
_YEAR = r"(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_LEAP_DAY = (
    r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)-02-29"
)
_TIME = (
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
)
DATE_PATTERN = rf"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_DAY})(?:{_TIME})?$"
_DATE = re.compile(DATE_PATTERN)
# Characters a one-line text (a name, a title) must not hold: C0 and C1 controls (NUL, line
# breaks, tabs, escapes) and the bidirectional overrides and isolates, which can make a name
# read as another (U+202E turns the rest of a line around).
_CONTROLS = "\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
# Characters that show nothing: str.isspace()'s whitespace and the zero-width ones.
_BLANK = (
    "\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    "\u200b-\u200d\u2060\ufeff"
)
# A one-line text, as the OpenAPI document states it: no control character, and at least one
# character that shows.
LINE_PATTERN = f"^[^{_CONTROLS}]*[^{_CONTROLS}{_BLANK}][^{_CONTROLS}]*$"
_HAS_CONTROL = re.compile(f"[{_CONTROLS}]")
_SHOWS = re.compile(f"[^{_CONTROLS}{_BLANK}]")
Status = Literal["draft", "published", "active", "cancelled", "completed"]


def _no_lone_surrogates(value: object) -> object:
    # JSON may escape a lone UTF-16 surrogate ("\\ud800"); no UTF-8 text holds one, so
    # neither the stores nor the responses could carry it.
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            msg = "must not contain unpaired UTF-16 surrogates"
            raise ValueError(msg) from None
    return value


def _integral(value: object) -> object:
    # JSON Schema counts 60.0 as an integer, so the API takes it as 60 (but not 60.5 or "60").
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _one_line(value: str) -> str:
    if _HAS_CONTROL.search(value):
        msg = "must not contain control characters (line breaks, tabs, bidirectional overrides)"
        raise ValueError(msg)
    if not _SHOWS.search(value):
        msg = "must not be all whitespace or invisible characters"
        raise ValueError(msg)
    return value


def _iso_date(value: str) -> str:
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        if len(value) == 10:
            date.fromisoformat(value)
        else:
            datetime.fromisoformat(value)
    except ValueError:
        msg = "must be an ISO 8601 date or date-time, such as 2024-12-15 or 2024-12-15T18:00:00Z"
        raise ValueError(msg) from None
    return value


# Every string of a request body is checked for lone surrogates before anything else. It comes
# last in each Annotated so that it wraps the other constraints (placed first, it would hide
# their patterns from the JSON schema).
UNICODE_TEXT = BeforeValidator(_no_lone_surrogates)
# One line that shows something, as the OpenAPI document states it (checked by _one_line,
# which words its refusals better than a regex could).
ONE_LINE = Field(json_schema_extra={"pattern": LINE_PATTERN})

Identifier = Annotated[
    str,
    StringConstraints(pattern=ID_PATTERN),
    Field(description="1-100 characters of letters, digits, '_' and '-'.", examples=["alice"]),
    UNICODE_TEXT,
]
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    AfterValidator(_one_line),
    ONE_LINE,
    UNICODE_TEXT,
]
Title = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    AfterValidator(_one_line),
    ONE_LINE,
    UNICODE_TEXT,
]
Description = Annotated[str, StringConstraints(max_length=1000), UNICODE_TEXT]
Location = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    AfterValidator(_one_line),
    ONE_LINE,
    UNICODE_TEXT,
]
Organizer = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100),
    AfterValidator(_one_line),
    ONE_LINE,
    UNICODE_TEXT,
]
IsoDate = Annotated[
    str,
    StringConstraints(min_length=10, max_length=32),
    AfterValidator(_iso_date),
    Field(
        # Checked by _iso_date, which words its refusal better than a regex could.
        json_schema_extra={"pattern": DATE_PATTERN},
        description=(
            "An ISO 8601 date, YYYY-MM-DD, or date-time, YYYY-MM-DDTHH:MM[:SS[.ffffff]] with an "
            "optional Z or +HH:MM / -HH:MM offset."
        ),
        examples=["2024-12-15", "2024-12-15T18:00:00Z"],
    ),
    UNICODE_TEXT,
]
Capacity = Annotated[int, Field(ge=1, le=1_000_000_000), BeforeValidator(_integral)]


class _In(BaseModel):
    """Inputs: strict types (no "5" for 5), unknown or read-only fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=False, strict=True, extra="forbid"
    )


NEXT_PAGE = "Pass back as nextToken for the next page; null on the last page (every list)."


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class UserCreate(_In):
    user_id: Identifier
    name: Annotated[Name, Field(examples=["Alice Example"])]

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"userId": "alice", "name": "Alice Example"}]}
    )


class User(_Out):
    user_id: str
    name: str | None = Field(description="Null once the user is erased.")
    erased: bool = Field(
        default=False,
        description="True once the user's personal data was erased "
        "(`POST /admin/users/{userId}/erase`).",
    )
    created_at: datetime
    updated_at: datetime

    @model_serializer(mode="wrap")
    def _name_always(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # An erased user's name is null, shown even where None values are left out.
        shown: dict[str, Any] = handler(self)
        shown.setdefault("name", None)
        return shown


class Erasure(_Out):
    user_id: str
    erased: bool = Field(description="Always true: the user's personal data is erased.")
    erased_at: datetime = Field(description="When the erasure was recorded (the first time).")


class EventCreate(_In):
    event_id: Identifier | None = Field(default=None, description="A UUID when absent.")
    title: Title
    description: Description = ""
    date: IsoDate
    location: Location | None = None
    capacity: Capacity
    organizer: Organizer | None = None
    status: Status = "active"
    waitlist_enabled: bool = False

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "eventId": "pycon-2024",
                    "title": "PyCon meetup",
                    "description": "Talks and pizza",
                    "date": "2024-12-15",
                    "location": "Berlin",
                    "capacity": 50,
                    "organizer": "Python Berlin",
                    "status": "active",
                    "waitlistEnabled": True,
                }
            ]
        }
    )


def _update_schema(schema: dict[str, Any]) -> None:
    """An update sends at least one field, and none of them as null (the route refuses both)."""
    for field in schema.get("properties", {}).values():
        options = [option for option in field.pop("anyOf", []) if option != {"type": "null"}]
        if len(options) == 1:
            field.update(options[0])
        field.pop("default", None)
    schema["minProperties"] = 1
    schema["examples"] = [{"capacity": 60, "title": "PyCon meetup (bigger room)"}]


class EventUpdate(_In):
    """A partial update: only the fields sent change; counts are never client-writable."""

    title: Title | None = None
    description: Description | None = None
    date: IsoDate | None = None
    location: Location | None = None
    capacity: Capacity | None = None
    organizer: Organizer | None = None
    status: Status | None = None
    waitlist_enabled: bool | None = None

    model_config = ConfigDict(json_schema_extra=_update_schema)


class Event(_Out):
    event_id: str
    title: str
    description: str
    date: str
    location: str | None
    capacity: int
    organizer: str | None
    status: Status
    waitlist_enabled: bool
    registered_count: int
    waitlist: list[str] = Field(description="userIds waiting, first in line first.")
    waitlist_count: int
    available_spots: int
    created_at: datetime
    updated_at: datetime


class EventList(_Out):
    events: list[Event]
    total: int = Field(
        description=(
            "How many events (with the status asked for) there are in all pages. On DynamoDB "
            "it is counted from an index, which may lag a write by about a second."
        )
    )
    next_token: str | None = Field(description=NEXT_PAGE)


class RegistrationCreate(_In):
    event_id: Identifier

    model_config = ConfigDict(json_schema_extra={"examples": [{"eventId": "pycon-2024"}]})


class EventRegistrationCreate(_In):
    """The body of the event-centric POST /events/{eventId}/registrations."""

    user_id: Identifier

    model_config = ConfigDict(json_schema_extra={"examples": [{"userId": "alice"}]})


class Registration(_Out):
    user_id: str
    event_id: str
    status: Literal["confirmed", "waitlist"]
    registered_at: datetime
    event_title: str
    event_date: str
    waitlist_position: int | None = Field(
        default=None,
        # Left out, not null, for a confirmed registration.
        exclude_if=lambda position: position is None,
        description="1-based place in line; present only when waitlisted.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "userId": "alice",
                    "eventId": "pycon-2024",
                    "status": "confirmed",
                    "registeredAt": "2024-12-01T10:00:00.000000Z",
                    "eventTitle": "PyCon 2024",
                    "eventDate": "2024-12-15",
                },
                {
                    "userId": "bob",
                    "eventId": "pycon-2024",
                    "status": "waitlist",
                    "registeredAt": "2024-12-01T10:05:00.000000Z",
                    "eventTitle": "PyCon 2024",
                    "eventDate": "2024-12-15",
                    "waitlistPosition": 1,
                },
            ]
        }
    )


class RegistrationList(_Out):
    registrations: list[Registration]
    total: int = Field(description="How many registrations there are in all pages.")
    next_token: str | None = Field(description=NEXT_PAGE)


class FeedLag(_Out):
    """How far the ordered feed (the notification log) is behind the writes.

    On DynamoDB an indexer reads the events table's stream and gives each event
    its position after the write; on SQLite the log is the events table itself,
    so it never lags.
    """

    indexed_position: int = Field(
        validation_alias="head", description="The newest position the feed has assigned."
    )
    pending_records: int = Field(
        description="Written events read from the stream but not yet in the feed."
    )
    oldest_pending_seconds: float | None = Field(
        description=(
            "Age of the oldest of those (from its stream record's creation time, "
            "or from the indexer's last empty read if later); null when there are none."
        )
    )
    seconds_since_caught_up: float | None = Field(
        description=(
            "Since the indexer last found the stream at its tip with nothing left to index "
            "(null before that first happens): the feed lacks at most what was written since."
        )
    )
    indexer_running: bool = Field(validation_alias="running")
    last_error: str | None = Field(
        description="The indexer's last failure, if it has not recovered."
    )


class Ready(_Out):
    status: Literal["ready"]
    checks: list[str] = Field(description="The checks that passed.")


class Health(_Out):
    status: Literal["ok", "degraded"]
    store: str
    projection_position: int | None = Field(
        description="The read tables' position; null while the store does not answer."
    )
    event_store_position: int | None = Field(
        description="The event store's last notification id; null while the store does not answer."
    )
    feed: FeedLag | None = Field(
        default=None,
        description="The ordered feed's lag (DynamoDB, where an indexer runs in this process).",
    )
    consumed_capacity: dict[str, float] | None = Field(
        default=None,
        description="DynamoDB capacity units this process consumed since it started.",
    )
    problem: str | None = Field(
        default=None, description="Why `status` is `degraded` (the store did not answer)."
    )


class EntryMetadata(_Out):
    request_id: str | None = Field(description="X-Request-ID of the request that caused it.")
    actor: str | None = Field(
        description="The API key's name, `anonymous`, `cli:<user>` or `system` (null before "
        "events carried metadata)."
    )
    hash: str | None = Field(
        description=(
            "SHA-256 (hex) chaining this event to the previous event of its stream; null on "
            "events recorded before events were sealed."
        )
    )


class AuditEntry(_Out):
    """One stored domain event."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "position": 42,
                    "stream": "0b8a6c1e-5f7d-5e2a-9c3b-1d4e6f8a0b2c",
                    "version": 7,
                    "type": "SeatTaken",
                    "occurredAt": "2024-12-01T10:00:00.123456Z",
                    "data": {"userId": "alice"},
                    "metadata": {
                        "requestId": "3f2b9c0e8a1d4e6f9b7a5c3d1e0f2a4b",
                        "actor": "anonymous",
                        "hash": "9d1c" + "0" * 60,
                    },
                }
            ]
        }
    )

    position: int | None = Field(
        description=(
            "Position in the log: stable, never reused; from 1. In a history, null for an "
            "event the DynamoDB indexer has not placed yet (a fraction of a second)."
        )
    )
    stream: str = Field(description="The aggregate (stream) it belongs to.")
    version: int = Field(description="Its version in that stream (the first is 1).")
    type: str = Field(description="Stable name of the domain event, such as `SeatTaken`.")
    occurred_at: str | None = Field(description="ISO 8601 UTC with microseconds and `Z`.")
    data: dict[str, Any] = Field(description="The payload as recorded, keys in camelCase.")
    metadata: EntryMetadata
    # Only on an event whose stored state cannot be decoded (altered in the store).
    undecodable: bool | None = Field(
        default=None,
        description=(
            "Present (true) only when the stored state cannot be decoded (altered in the "
            "store; /audit/verify names it): `data` is then empty, `occurredAt` and "
            "`metadata` null, and `raw` holds the stored bytes."
        ),
    )
    raw: str | None = Field(
        default=None,
        description="Base64 of the stored bytes; only with `undecodable`.",
    )
    sealed: dict[str, str] | None = Field(
        default=None,
        description=(
            "Only on an entry holding sealed personal data (`UserCreated`): the stored, "
            "sealed value of each personal field, which `data` shows opened (or null, with "
            "`data.erased` true, once the user is erased). To recompute the chain from the "
            "entry, drop `data.erased` and put these values back into `data`."
        ),
    )


class AuditLogPage(_Out):
    entries: list[AuditEntry]
    next: int | None = Field(
        description="The `after` of the following page; null once this page reaches the head."
    )


class History(_Out):
    history: list[AuditEntry]
    next_token: str | None = Field(description=NEXT_PAGE)


class UserState(_Out):
    user: User
    registrations: list[Registration] = Field(
        description="Their registrations then, with each event's title and date as they were."
    )


class Projection(_Out):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "read-tables",
                    "position": 1200,
                    "head": 1200,
                    "lag": 0,
                    "lagSeconds": 0.0,
                    "state": "live",
                },
                {
                    "name": "read-tables",
                    "position": 1200,
                    "head": 1200,
                    "lag": 0,
                    "lagSeconds": 0.0,
                    "state": "rebuilding",
                    "progress": 0.25,
                },
                {
                    "name": "read-tables",
                    "position": 1200,
                    "head": 1200,
                    "lag": 0,
                    "lagSeconds": 0.0,
                    "state": "failed",
                    "error": "StoreUnavailableError: the read tables cannot be reached",
                },
                {
                    "name": "read-tables",
                    "position": 1200,
                    "head": 1200,
                    "lag": 0,
                    "lagSeconds": 0.0,
                    "state": "interrupted",
                    "progress": 0.25,
                    "resume": (
                        "POST /admin/projections/read-tables/rebuild (or `regsvc rebuild`, "
                        "or start a server) resumes it from its position"
                    ),
                },
            ]
        }
    )

    name: str
    position: int = Field(
        validation_alias="log_position", description="The last log position folded into it."
    )
    head: int = Field(description="The log's last position.")
    lag: int = Field(description="Events in the log not folded into it yet.")
    lag_seconds: float = Field(
        description="Age of the oldest event not folded yet (0 when there is none)."
    )
    state: Literal["live", "rebuilding", "interrupted", "failed"]
    progress: float | None = Field(
        default=None,
        description=(
            "While rebuilding (or interrupted): 0-1, how much of the log the new tables hold "
            "(the live tables keep serving meanwhile, at `position`)."
        ),
    )
    error: str | None = Field(
        default=None, description="When failed: what went wrong (a new rebuild resumes it)."
    )
    resume: str | None = Field(
        default=None,
        description="When interrupted (its process died, its lease lapsed): how to resume it.",
    )


class Difference(_Out):
    table: Literal["users", "gatherings", "streams", "registrations", "user_events"] = Field(
        description=(
            "The read table, as the stores name it: `gatherings` holds the events (its key "
            "is the eventId)."
        )
    )
    key: str = Field(description="The row's key (`user/event` for two-part keys).")
    live: dict[str, Any] | None = Field(description="The row in the live tables (null: missing).")
    expected: dict[str, Any] | None = Field(
        description="The row in a fresh fold of the log (null: it should not exist)."
    )


class DriftCheck(_Out):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ok": False,
                    "position": 1200,
                    "rows": 640,
                    "differences": [
                        {
                            "table": "gatherings",
                            "key": "pycon-2024",
                            "live": {"eventId": "pycon-2024", "registeredCount": 41},
                            "expected": {"eventId": "pycon-2024", "registeredCount": 42},
                        }
                    ],
                    "truncated": False,
                }
            ]
        }
    )

    ok: bool
    position: int = Field(description="The log position the live tables were compared at.")
    rows: int = Field(description="Rows of the live tables compared.")
    differences: list[Difference] = Field(description="At most 1000, in table and key order.")
    truncated: bool = Field(description="Whether there were more than 1000 differences.")


class Projections(_Out):
    projections: list[Projection]


class BrokenLink(_Out):
    position: int
    stream: str
    version: int
    reason: str


class VerifyReport(_Out):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ok": False,
                    "checked": 1200,
                    "unsealed": 0,
                    "digest": "5be0" + "0" * 60,
                    "firstBroken": {
                        "position": 42,
                        "stream": "0b8a6c1e-5f7d-5e2a-9c3b-1d4e6f8a0b2c",
                        "version": 7,
                        "reason": "its digest does not match its content",
                    },
                }
            ]
        }
    )

    ok: bool
    checked: int = Field(description="Events checked.")
    unsealed: int = Field(
        description="Events recorded before events were sealed (covered by later links)."
    )
    digest: str = Field(description="The feed's digest: every event's digest chained in order.")
    first_broken: BrokenLink | None = Field(description="The first link that does not hold.")


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorInfo(_Out):
    code: str
    message: str
    details: list[ErrorDetail]
    timestamp: datetime
    path: str
    request_id: str


class ErrorBody(BaseModel):
    error: ErrorInfo
