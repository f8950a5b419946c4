"""What both stores of the state-based yardstick share: the API's errors,
views and counters, and the ``Store`` protocol each store implements."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any, Protocol

# The service's own request and response models: every server of the benchmark
# validates and serialises exactly what the service does.
from api.schemas import (
    EventCreate,
    EventUpdate,
    UserCreate,
)

OPEN_STATUSES = ("active", "published")

Row = dict[str, Any]
EVENT_FIELDS = (
    "title",
    "description",
    "date",
    "location",
    "capacity",
    "organizer",
    "status",
    "waitlistEnabled",
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def user_not_found() -> ApiError:
    return ApiError(404, "USER_NOT_FOUND", "User not found")


def event_not_found() -> ApiError:
    return ApiError(404, "EVENT_NOT_FOUND", "Event not found")


def registration_not_found() -> ApiError:
    return ApiError(404, "REGISTRATION_NOT_FOUND", "No registration for this user and event")


def already(status: str) -> ApiError:
    if status == "confirmed":
        return ApiError(409, "ALREADY_REGISTERED", "The user is already registered")
    return ApiError(409, "ALREADY_ON_WAITLIST", "The user is already on the waitlist")


def not_open() -> ApiError:
    return ApiError(409, "EVENT_NOT_OPEN", "The event is not open for registration")


def event_full() -> ApiError:
    return ApiError(409, "EVENT_FULL", "The event is full and has no waitlist")


def capacity_below(count: int) -> ApiError:
    return ApiError(409, "CAPACITY_BELOW_REGISTERED", f"{count} are registered already")


def contention() -> ApiError:
    return ApiError(409, "CONCURRENT_MODIFICATION", "Too much contention on this event, retry")


def event_view(event: Row, waitlist: list[str]) -> Row:
    return {
        **event,
        "waitlist": waitlist,
        "waitlistCount": len(waitlist),
        "availableSpots": max(0, event["capacity"] - event["registeredCount"]),
    }


def registration_view(
    user_id: str, event_id: str, status: str, at: str, event: Row, waitlist_position: int | None
) -> Row:
    view = {
        "userId": user_id,
        "eventId": event_id,
        "status": status,
        "registeredAt": at,
        "eventTitle": event["title"],
        "eventDate": event["date"],
    }
    if status == "waitlist":
        view["waitlistPosition"] = waitlist_position
    return view


class Stats:
    """Requests per operation; on DynamoDB also the capacity units they consumed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops: dict[str, dict[str, float]] = {}

    def bump(self, op: str, **counts: float) -> None:
        with self.lock:
            entry = self.ops.setdefault(
                op, {"requests": 0, "calls": 0, "readUnits": 0.0, "writeUnits": 0.0, "retries": 0}
            )
            for key, value in counts.items():
                entry[key] += value

    def snapshot(self, store: str) -> Row:
        with self.lock:
            ops = {name: dict(entry) for name, entry in self.ops.items()}
        keys = ("requests", "calls", "readUnits", "writeUnits", "retries")
        total = {k: sum(entry[k] for entry in ops.values()) for k in keys}
        return {"store": store, "ops": ops, "total": total}


STATS = Stats()


class Store(Protocol):
    def create_user(self, body: UserCreate) -> Row: ...
    def get_user(self, user_id: str) -> Row: ...
    def create_event(self, body: EventCreate) -> Row: ...
    def get_event(self, event_id: str) -> Row: ...
    def list_events(self, status: str | None, limit: int) -> tuple[list[Row], int]:
        """The first ``limit`` events (with ``status``) and how many there are in all."""
        ...

    def update_event(self, event_id: str, body: EventUpdate) -> Row: ...
    def delete_event(self, event_id: str) -> None: ...
    def register(self, user_id: str, event_id: str) -> Row: ...
    def leave(self, user_id: str, event_id: str) -> None: ...
    def get_registration(self, user_id: str, event_id: str) -> Row: ...
    def user_registrations(self, user_id: str) -> list[Row]: ...
    def event_registrations(self, event_id: str) -> list[Row]: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


def event_changes(body: EventUpdate) -> Row:
    data = body.model_dump(by_alias=True, exclude_unset=True)
    return {k: v for k, v in data.items() if v is not None}
