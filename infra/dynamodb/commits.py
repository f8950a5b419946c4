"""Commits as the events table holds them, and stream records as the indexer
receives them: each event item's key, its commit's lead (``l``, or itself), the
lead's manifest (``m``), the commit's ``h``; records decoded from a Lambda
event's base64 or boto3's bytes."""

from __future__ import annotations

import base64
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infra.dynamodb.layout import COMMIT_LEAD, COMMIT_MANIFEST, EVENT_PK, EVENT_SK, HEAD_HINT

if TYPE_CHECKING:
    from collections.abc import Mapping

    Item = dict[str, Any]

Key = tuple[str, int]  # an event's (oid, ver)

logger = logging.getLogger(__name__)


@dataclass
class Commit:
    """One appended commit: its lead event's key, its events in append order,
    and ``h`` (None when its writer wrote none)."""

    lead: Key
    keys: list[Key]
    hint: int | None

    def min_versions(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for oid, ver in self.keys:
            if oid not in found or ver < found[oid]:
                found[oid] = ver
        return found


class LRU(OrderedDict[Any, Any]):
    """A bounded memo: what the indexer knows is indexed (a cache, never the
    authority: DynamoDB's conditions are)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def remember(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def key_of(item: Mapping[str, Any]) -> Key:
    return str(item[EVENT_PK]["S"]), int(item[EVENT_SK]["N"])


def pair_of(value: Mapping[str, Any]) -> Key:
    oid, ver = value["L"]
    return str(oid["S"]), int(ver["N"])


def lead_of(item: Mapping[str, Any]) -> Key:
    """The key of the lead event of the commit that wrote ``item``.

    An item with neither a manifest nor a lead reference (written before
    commits were linked) is a commit of its own.
    """
    if COMMIT_LEAD in item:
        return pair_of(item[COMMIT_LEAD])
    return key_of(item)


def manifest_of(lead_item: Mapping[str, Any]) -> list[Key]:
    if COMMIT_MANIFEST in lead_item:
        return [pair_of(entry) for entry in lead_item[COMMIT_MANIFEST]["L"]]
    return [key_of(lead_item)]


def _decode_value(value: Mapping[str, Any]) -> Any:
    """A Lambda event carries binary values as base64 text; boto3 gives bytes."""
    if "B" in value and isinstance(value["B"], str):
        return {"B": base64.b64decode(value["B"])}
    if "L" in value:
        return {"L": [_decode_value(v) for v in value["L"]]}
    if "M" in value:
        return {"M": {k: _decode_value(v) for k, v in value["M"].items()}}
    return dict(value)


def decode_image(image: Mapping[str, Any]) -> Item:
    return {name: _decode_value(value) for name, value in image.items()}


def hint_of(item: Mapping[str, Any]) -> int | None:
    """``h`` of the commit that wrote ``item``: a lower bound of the index's head
    when it was appended (None: appended before writers wrote one)."""
    value = item.get(HEAD_HINT)
    return int(value["N"]) if value is not None else None


def image_of(record: Mapping[str, Any]) -> Item | None:
    """The event item a stream record carries, decoded (None: none to index)."""
    name = record.get("eventName")
    data = record.get("dynamodb", {})
    if name == "REMOVE":
        logger.warning(
            "An event item was deleted from the events table; the index keeps it",
            extra={"keys": str(data.get("Keys"))},
        )
        return None
    if name == "MODIFY":
        # Not a new event: only ``regsvc seal-names`` rewrites an event item
        # (infra/dynamodb/history_rewrite.py), whose INSERT was indexed before.
        logger.info(
            "An event item was rewritten; not indexed again",
            extra={"keys": str(data.get("Keys"))},
        )
        return None
    image = data.get("NewImage")
    if image is None:
        logger.error(
            "Stream record without a new image (the stream must be NEW_IMAGE); skipped",
            extra={"keys": str(data.get("Keys")), "sequence": data.get("SequenceNumber")},
        )
        return None
    return decode_image(image)
