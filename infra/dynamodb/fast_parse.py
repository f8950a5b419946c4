"""Reads' answers parsed in one pass, instead of by botocore's model walk.

botocore parses every JSON answer by walking the operation's output shape,
a few Python calls per member of every attribute value: 2.6 ms for a
BatchGetItem of 20 gatherings rows, a third of the server's CPU for a page
of ``GET /events`` (py-spy). The wire format of an item is already what a
low-level client returns, except for binary values (``B``, ``BS``: base64 on
the wire, bytes once parsed) and timestamps (epoch seconds on the wire,
datetimes once parsed). So for the answers a read gets (GetItem,
BatchGetItem, Query, Scan, and DynamoDB Streams' GetRecords), a
``before-parse`` hook decodes the JSON once and converts only those, by
position: items are walked as items (an attribute may be called ``B``),
values as attribute values. The result equals botocore's own parse
(``tests/dynamodb/test_fast_parse.py`` compares the two on generated
answers); the hook leaves botocore nothing to parse but ``{}``, then
botocore adds ``ResponseMetadata`` as always. Errors (status 300 and up) and
every other operation are parsed by botocore.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from botocore.utils import parse_timestamp

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]

_UNIQUE_ID = "regsvc-fast-parse"


def attribute_value(value: AttributeValue) -> AttributeValue:
    """One attribute value as botocore parses it (binary decoded, nested values too)."""
    if len(value) != 1:
        return value  # not an attribute value DynamoDB sends; leave it as sent
    ((kind, inner),) = value.items()
    if kind == "B":
        return {"B": base64.b64decode(inner)}
    if kind == "M":
        return {"M": item(inner)}
    if kind == "L":
        return {"L": [attribute_value(v) for v in inner]}
    if kind == "BS":
        return {"BS": [base64.b64decode(v) for v in inner]}
    return value


def item(raw: Item) -> Item:
    """An item (attribute name to value)."""
    return {name: attribute_value(value) for name, value in raw.items()}


def _items(raw: list[Item]) -> list[Item]:
    return [item(i) for i in raw]


def _items_by_table(raw: dict[str, list[Item]]) -> dict[str, list[Item]]:
    return {table: _items(items) for table, items in raw.items()}


def _keys_by_table(raw: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        table: {**request, "Keys": _items(request.get("Keys", []))}
        for table, request in raw.items()
    }


def _record(raw: dict[str, Any]) -> dict[str, Any]:
    change = raw.get("dynamodb")
    if change is None:
        return raw
    parsed = dict(change)
    for images in ("Keys", "NewImage", "OldImage"):
        if images in parsed:
            parsed[images] = item(parsed[images])
    if "ApproximateCreationDateTime" in parsed:
        parsed["ApproximateCreationDateTime"] = parse_timestamp(
            parsed["ApproximateCreationDateTime"]
        )
    return {**raw, "dynamodb": parsed}


def _records(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_record(r) for r in raw]


# Per operation, the members that hold items or attribute values, and how to parse each.
_MEMBERS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "GetItem": {"Item": item},
    "Query": {"Items": _items, "LastEvaluatedKey": item},
    "Scan": {"Items": _items, "LastEvaluatedKey": item},
    "BatchGetItem": {"Responses": _items_by_table, "UnprocessedKeys": _keys_by_table},
    "GetRecords": {"Records": _records},
}


def parse_answer(operation: str, body: bytes) -> dict[str, Any]:
    """A successful answer of ``operation`` (one of the reads above), parsed."""
    parsed: dict[str, Any] = json.loads(body) if body else {}
    for member, parse in _MEMBERS[operation].items():
        if member in parsed:
            parsed[member] = parse(parsed[member])
    return parsed


def _before_parse(
    operation_model: Any,
    response_dict: dict[str, Any],
    customized_response_dict: dict[str, Any],
    **_: Any,
) -> None:
    operation = operation_model.name
    if operation not in _MEMBERS or response_dict.get("status_code", 500) >= 300:
        return  # botocore parses errors (and their modeled fields) itself
    body = response_dict.get("body")
    if not isinstance(body, bytes):
        return
    customized_response_dict.update(parse_answer(operation, body))
    response_dict["body"] = b"{}"  # nothing left for botocore but its ResponseMetadata


def install(client: Any) -> None:
    """Parses ``client``'s read answers (a DynamoDB or DynamoDB Streams client) in one pass."""
    service = client.meta.service_model.service_id.hyphenize()
    for operation in _MEMBERS:
        if operation in client.meta.service_model.operation_names:
            event = f"before-parse.{service}.{operation}"
            client.meta.events.unregister(event, unique_id=_UNIQUE_ID)
            client.meta.events.register(event, _before_parse, unique_id=_UNIQUE_ID)
