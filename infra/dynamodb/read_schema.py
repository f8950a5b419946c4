"""The read tables on DynamoDB: their definitions, and how a row maps to a view.

Tables (names carry the configured prefix; twice, see ``GENERATIONS``):

- ``users``: key ``userId``; ``v``, its user stream's version.
- ``gatherings``: key ``eventId``; details and the counters ``registeredCount``
  and ``waitlistCount``; ``v``, the version of the gathering's stream its rows
  (this one and the gathering's registrations) hold (``read_changes.py``).
  Every row carries ``listing = "event"``: GSI
  ``EVENTS_GSI`` (``listing``, ``eventId``, projecting ``status`` only) lists
  all events in eventId order (``GET /events``, filtered by status).
- ``registrations``: key (``userId``, ``eventId``); ``status`` (``confirmed``,
  ``waitlist``, or ``withdrawn`` once the user left: the row stays, it is
  the user's history), ``sortKey``, ``registeredAt`` and, while the
  registration holds a place, ``eventOrder`` (``"0#<seat order>"`` for
  confirmed, ``"1#<ticket>"`` for waiting, zero-padded). GSI ``ORDER_GSI``
  (``eventId``, ``eventOrder``) is sparse: it lists an event's current
  registrations confirmed first, then the waitlist FIFO.
- ``projection_state``: ``pk = "position#read-tables"`` holds a catch-up's
  tracking position; ``pk = "stream#<uuid>"`` maps a gathering's stream to its
  eventId (and, once it is deleted, ``deleted``: the version that deleted
  it); in blue's only, the live pointer (``live_pointer.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from domain.errors import StoreUnavailableError
from infra.dynamodb.tables import IndexSpec, TableSpec
from projections.views import EventRow, UserRow

logger = logging.getLogger(__name__)

POSITION_KEY = "position#read-tables"
ORDER_GSI = "eventId-order-index"

#: The event listing (``GET /events``): partition key ``listing``, sort key
#: ``eventId``, projecting ``status`` alone (the status filter and the total
#: read it; each listed row is then read from the table, consistently).
#: Projecting only what create, delete and a status change write keeps every
#: registration's count update (``registeredCount``, ``waitlistCount``,
#: ``updatedAt``) off the index: DynamoDB writes a GSI only when a write
#: changes its keys or projected attributes.
#:
#: Its partition key is one constant, so one partition holds every listed
#: event. That is acceptable because only commands on one gathering's
#: existence or status write it (create, delete, publish/cancel...), each once,
#: at rates far below a partition's 1,000 WCU/s (about 1 WCU per such command:
#: the projected entry is under 100 bytes); registrations, leaves and capacity
#: changes never do. Sharding the key would make every listing page a merge of
#: shards and its ``nextToken`` a vector of keys, for no gain at such rates.
EVENTS_GSI = "listing-eventId-status-index"
#: The listing's earlier definition (projection ALL: every count update wrote
#: it). A deployed GSI's projection cannot change in place, so the new one has
#: a new name and the old one is deleted once it is built (README, "Tables,
#: keys and conditions").
RETIRED_EVENTS_GSI = "listing-eventId-index"
EVENT_LISTING = "event"
#: The attributes of a gatherings row that the listing GSI keys or projects.
LISTED_ATTRIBUTES = ("listing", "eventId", "status")

#: A registrations row whose user left: kept as their history, out of the
#: lists (and out of ORDER_GSI: it has no ``eventOrder``).
WITHDRAWN = "withdrawn"

#: The two sets of read tables: one is live, a rebuild fills the other.
GENERATIONS = ("blue", "green")

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def serialize(value: Any) -> dict[str, Any]:
    return dict(_serializer.serialize(value))


def item(values: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item of plain values (None values left out)."""
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def plain(found: dict[str, Any]) -> dict[str, Any]:
    """Plain values of a DynamoDB item."""
    return {k: _deserializer.deserialize(v) for k, v in found.items()}


def order(status: str, sort_key: int) -> str:
    """``eventOrder``: confirmed first (by seat order), then the waitlist (FIFO)."""
    return f"{0 if status == 'confirmed' else 1}#{sort_key:020d}"


def user_row(found: dict[str, Any]) -> UserRow:
    return UserRow(
        user_id=found["userId"],
        name=found["name"],
        created_at=datetime.fromisoformat(found["createdAt"]),
        updated_at=datetime.fromisoformat(found["updatedAt"]),
    )


def event_row(found: dict[str, Any], waitlist: tuple[str, ...]) -> EventRow:
    return EventRow(
        event_id=found["eventId"],
        title=found["title"],
        description=found.get("description", ""),
        date=found["date"],
        location=found.get("location"),
        organizer=found.get("organizer"),
        status=found["status"],
        capacity=int(found["capacity"]),
        waitlist_enabled=bool(found["waitlistEnabled"]),
        registered_count=int(found["registeredCount"]),
        waitlist_count=int(found["waitlistCount"]),
        created_at=datetime.fromisoformat(found["createdAt"]),
        updated_at=datetime.fromisoformat(found["updatedAt"]),
        waitlist=waitlist,
    )


@dataclass(frozen=True)
class TableSet:
    """The names of one generation's read tables."""

    generation: str
    users: str
    gatherings: str
    registrations: str
    state: str


def table_set(prefix: str, generation: str) -> TableSet:
    """Blue keeps the tables' original names; green's carry ``green-`` after the prefix."""
    p = prefix if generation == "blue" else f"{prefix}{generation}-"
    return TableSet(
        generation, f"{p}users", f"{p}gatherings", f"{p}registrations", f"{p}projection_state"
    )


def read_table_specs(prefix: str, generations: Sequence[str] = GENERATIONS) -> list[TableSpec]:
    specs = []
    for generation in generations:
        names = table_set(prefix, generation)
        specs += [
            TableSpec(names.users, "userId", "S"),
            TableSpec(
                names.gatherings,
                "eventId",
                "S",
                indexes=(IndexSpec(EVENTS_GSI, "listing", "eventId", "INCLUDE", ("status",)),),
                retired_indexes=(RETIRED_EVENTS_GSI,),
            ),
            TableSpec(
                names.registrations,
                "userId",
                "S",
                "eventId",
                "S",
                indexes=(IndexSpec(ORDER_GSI, "eventId", "eventOrder"),),
            ),
            TableSpec(names.state, "pk", "S"),
        ]
    return specs


def unavailable(error: Exception) -> StoreUnavailableError:
    logger.error("read tables unavailable: %s", error)
    return StoreUnavailableError(f"The read tables are unavailable: {error}")
