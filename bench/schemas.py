"""Request and response bodies shared by the benchmark's own servers.

The same contract as the service's ``api/schemas.py`` (camelCase JSON, strict
types, unknown fields refused, ids ``^[A-Za-z0-9_-]{1,100}$``), written again
here so that the yardsticks do not import the code they are measured against.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

ID_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"
Status = Literal["draft", "published", "active", "cancelled", "completed"]
OPEN_STATUSES = ("active", "published")


def _not_blank(value: str) -> str:
    if value.isspace():
        msg = "must not be all whitespace"
        raise ValueError(msg)
    return value


def _iso_date(value: str) -> str:
    try:
        if len(value) == 10:
            date.fromisoformat(value)
        else:
            datetime.fromisoformat(value)
    except ValueError:
        msg = "must be an ISO 8601 date or date-time"
        raise ValueError(msg) from None
    return value


Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Text200 = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(_not_blank)
]
Text100 = Annotated[
    str, StringConstraints(min_length=1, max_length=100), AfterValidator(_not_blank)
]
Description = Annotated[str, StringConstraints(max_length=1000)]
IsoDate = Annotated[str, StringConstraints(min_length=10, max_length=40), AfterValidator(_iso_date)]
Capacity = Annotated[int, Field(ge=1, le=1_000_000_000)]


class _In(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=False, strict=True, extra="forbid"
    )


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class UserCreate(_In):
    user_id: Identifier
    name: Text200


class EventCreate(_In):
    event_id: Identifier | None = None
    title: Text200
    description: Description = ""
    date: IsoDate
    location: Text200 | None = None
    capacity: Capacity
    organizer: Text100 | None = None
    status: Status = "active"
    waitlist_enabled: bool = False


class EventUpdate(_In):
    title: Text200 | None = None
    description: Description | None = None
    date: IsoDate | None = None
    location: Text200 | None = None
    capacity: Capacity | None = None
    organizer: Text100 | None = None
    status: Status | None = None
    waitlist_enabled: bool | None = None


class RegistrationCreate(_In):
    event_id: Identifier


class User(_Out):
    user_id: str
    name: str
    created_at: datetime
    updated_at: datetime


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
    waitlist: list[str]
    waitlist_count: int
    available_spots: int
    created_at: datetime
    updated_at: datetime


class EventList(_Out):
    events: list[Event]
    next_token: str | None = None


class Registration(_Out):
    user_id: str
    event_id: str
    status: Literal["confirmed", "waitlist"]
    registered_at: datetime
    event_title: str
    event_date: str
    waitlist_position: int | None = None


class RegistrationList(_Out):
    registrations: list[Registration]
    total: int
    next_token: str | None = None
