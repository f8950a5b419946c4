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
from dataclasses import MISSING, dataclass, fields
from datetime import datetime
from typing import Any, get_type_hints

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from pydantic.alias_generators import to_camel

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


#: An events item's attributes: each field of ``EventRow`` (a gathering's
#: details and its counts) in camelCase, by field name. A new detail is one
#: more attribute; an item written before it lacks it and reads its default.
EVENT_ATTRIBUTES = {f.name: to_camel(f.name) for f in fields(EventRow) if f.name != "waitlist"}
_EVENT_TYPES = get_type_hints(EventRow)


def attribute_name(field: str) -> str:
    """An events item's attribute for ``field`` of ``EventRow``."""
    return EVENT_ATTRIBUTES[field]


def event_attributes(row: EventRow) -> dict[str, Any]:
    """The attributes of ``row``'s events item (None values are left out when written)."""
    return {
        attribute: _attribute_value(getattr(row, name))
        for name, attribute in EVENT_ATTRIBUTES.items()
    }


def _attribute_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def event_row(found: dict[str, Any], waitlist: tuple[str, ...]) -> EventRow:
    values = {
        name: _field_value(_EVENT_TYPES[name], found[attribute])
        for name, attribute in EVENT_ATTRIBUTES.items()
        if attribute in found  # absent: None when written, or older than the field
    }
    return EventRow(**_defaults_of_absent(values), waitlist=waitlist)


def _field_value(kind: Any, value: Any) -> Any:
    if kind is datetime:
        return datetime.fromisoformat(value)
    if kind is int or kind is bool:  # numbers arrive as Decimal
        return kind(value)
    return value


def _defaults_of_absent(values: dict[str, Any]) -> dict[str, Any]:
    """An attribute left out (a None value is not written) reads as the
    field's default, or None when it has none."""
    for f in fields(EventRow):
        if f.name not in values and f.name in EVENT_ATTRIBUTES:
            values[f.name] = None if f.default is MISSING else f.default
    return values


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
