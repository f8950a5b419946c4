"""The index's pages: the notification log as references, not copies.

One *page* item per index write, ``p="page"``, ``id`` = the first notification
id it places, holding the ``(oid, ver)`` of the events it places in log order,
grouped by commit (a page holds whole commits only), packed into one binary
attribute. The log is the pages in id order: they tile ``L+1 .. head`` with no
gap and no overlap (see :mod:`infra.dynamodb.indexer` for why), where ``L`` is
the head of the index as older deployments wrote it (``p="log"`` copies up to
``L``, see :func:`read_legacy_head`) and ``head`` is the end of the last page.

Packing (``r``, B): a format byte (1), then per commit ``varint k`` (its number
of events, at least 1) and its ``k`` references in append order (the first is
the commit's lead). A reference is its originator id, ``varint 0`` and the 16
bytes of a UUID written in its canonical text form, or ``varint n+1`` and the
``n`` UTF-8 bytes of any other id, then ``varint ver``. About 19 bytes per
event for UUID streams: a page of 50 events is under 1 KB, one write unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from infra.dynamodb.errors import NotificationLogCorruptedError, translate_errors
from infra.dynamodb.layout import (
    HEAD_LAST,
    LOG_PK,
    LOG_SK,
    head_key,
    n_,
    s_,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, QueryInputTypeDef

    from infra.dynamodb.commits import Commit

Key = tuple[str, int]  # an event's (oid, ver)

PAGE_PARTITION = "page"  # p of every page item
PAGE_COUNT = "n"  # (N) number of events the page places
PAGE_REFS = "r"  # (B) the packed references
PAGE_FORMAT = 1
# A page is cut after the commit that reaches either bound (a single commit
# larger than that still gets a page of its own: at most 100 events).
PAGE_MAX_EVENTS = 500
PAGE_MAX_BYTES = 64 * 1024


# ----- packing ------------------------------------------------------------------


def _varint(value: int, out: bytearray) -> None:
    if value < 0:
        msg = f"cannot pack a negative number ({value})"
        raise ValueError(msg)
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _pack_oid(oid: str, out: bytearray) -> None:
    try:
        parsed = UUID(oid)
    except ValueError:
        parsed = None
    if parsed is not None and str(parsed) == oid:
        _varint(0, out)
        out += parsed.bytes
        return
    encoded = oid.encode()
    _varint(len(encoded) + 1, out)
    out += encoded


def pack(commits: Iterable[Sequence[Key]]) -> bytes:
    out = bytearray([PAGE_FORMAT])
    for keys in commits:
        if not keys:
            msg = "a commit holds at least one event"
            raise ValueError(msg)
        _varint(len(keys), out)
        for oid, ver in keys:
            _pack_oid(oid, out)
            _varint(ver, out)
    return bytes(out)


def unpack(data: bytes) -> list[list[Key]]:
    if not data or data[0] != PAGE_FORMAT:
        msg = f"unknown page format {data[:1]!r}"
        raise NotificationLogCorruptedError(msg)
    commits: list[list[Key]] = []
    at = 1
    while at < len(data):
        count, at = _read_varint(data, at)
        keys: list[Key] = []
        for _ in range(count):
            tag, at = _read_varint(data, at)
            if tag == 0:
                oid = str(UUID(bytes=bytes(data[at : at + 16])))
                at += 16
            else:
                oid = bytes(data[at : at + tag - 1]).decode()
                at += tag - 1
            ver, at = _read_varint(data, at)
            keys.append((oid, ver))
        commits.append(keys)
    return commits


def packed_size(keys: Sequence[Key]) -> int:
    """The bytes ``keys`` take in a page (as one commit)."""
    return len(pack([keys])) - 1


# ----- pages --------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page: the commits it places, from notification id ``first``."""

    first: int
    commits: tuple[tuple[Key, ...], ...]

    @property
    def count(self) -> int:
        return sum(len(keys) for keys in self.commits)

    @property
    def end(self) -> int:
        """The last notification id the page places (``first - 1`` if empty)."""
        return self.first + self.count - 1

    def leads(self) -> Iterator[tuple[Key, int]]:
        """Each commit's lead and its first notification id."""
        log_position = self.first
        for keys in self.commits:
            yield keys[0], log_position
            log_position += len(keys)

    def entries(self) -> Iterator[tuple[int, Key, bool]]:
        """(notification id, event key, whether it ends its commit), in order."""
        log_position = self.first
        for keys in self.commits:
            last = len(keys) - 1
            for n, key in enumerate(keys):
                yield log_position, key, n == last
                log_position += 1

    def item(self) -> dict[str, AttributeValueTypeDef]:
        return {
            LOG_PK: s_(PAGE_PARTITION),
            LOG_SK: n_(self.first),
            PAGE_COUNT: n_(self.count),
            PAGE_REFS: {"B": pack(self.commits)},
        }

    @staticmethod
    def from_item(item: Mapping[str, Any]) -> Page:
        commits = unpack(bytes(item[PAGE_REFS]["B"]))
        page = Page(int(item[LOG_SK]["N"]), tuple(tuple(keys) for keys in commits))
        if page.count != int(item[PAGE_COUNT]["N"]):
            says = item[PAGE_COUNT]["N"]
            msg = f"page {page.first} says it holds {says} events, not {page.count}"
            raise NotificationLogCorruptedError(msg)
        return page


# ----- reading pages ------------------------------------------------------------


def _page_query(
    table: str, condition: str, values: dict[str, AttributeValueTypeDef], *, consistent: bool
) -> QueryInputTypeDef:
    return {
        "TableName": table,
        "KeyConditionExpression": condition,
        "ExpressionAttributeNames": (
            {"#p": LOG_PK, "#id": LOG_SK} if "#id" in condition else {"#p": LOG_PK}
        ),
        "ExpressionAttributeValues": {":p": s_(PAGE_PARTITION), **values},
        "ConsistentRead": consistent,
    }


def last_page(client: DynamoDBClient, table: str, *, consistent: bool = True) -> Page | None:
    """The page with the highest id: the log's head is its end."""
    query = _page_query(table, "#p = :p", {}, consistent=consistent)
    query["ScanIndexForward"] = False
    query["Limit"] = 1
    with translate_errors():
        items = client.query(**query).get("Items", [])
    return Page.from_item(items[0]) if items else None


def first_page(client: DynamoDBClient, table: str) -> Page | None:
    query = _page_query(table, "#p = :p", {}, consistent=True)
    query["Limit"] = 1
    with translate_errors():
        items = client.query(**query).get("Items", [])
    return Page.from_item(items[0]) if items else None


def page_at(client: DynamoDBClient, table: str, log_position: int) -> Page | None:
    """The page placing ``log_position`` or, when none does (it is above the head),
    the last page below it."""
    query = _page_query(table, "#p = :p AND #id <= :at", {":at": n_(log_position)}, consistent=True)
    query["ScanIndexForward"] = False
    query["Limit"] = 1
    with translate_errors():
        items = client.query(**query).get("Items", [])
    return Page.from_item(items[0]) if items else None


def pages_after(
    client: DynamoDBClient,
    table: str,
    after: int,
    upto: int | None = None,
    *,
    batch: int = 16,
) -> Iterator[Page]:
    """The pages whose first id is above ``after`` (and at most ``upto``), in id
    order, read lazily ``batch`` at a time with ConsistentRead: whoever reads
    them decides on them (what is indexed, what a follower processes next)."""
    if upto is not None and upto <= after:
        return
    values: dict[str, AttributeValueTypeDef] = {":lo": n_(after)}
    condition = "#p = :p AND #id > :lo"
    if upto is not None:
        condition = "#p = :p AND #id BETWEEN :lo AND :hi"
        values = {":lo": n_(after + 1), ":hi": n_(upto)}
    query = _page_query(table, condition, values, consistent=True)
    query["Limit"] = batch
    while True:
        with translate_errors():
            response = client.query(**query)
        for item in response.get("Items", []):
            yield Page.from_item(item)
        last_key = response.get("LastEvaluatedKey")
        if not last_key:
            return
        query["ExclusiveStartKey"] = last_key


def read_legacy_head(client: DynamoDBClient, table: str) -> int:
    """The head as deployments before pages wrote it (``p="$head"``): the log's
    ids up to it are ``p="log"`` copies; 0 when there is none."""
    with translate_errors():
        response = client.get_item(
            TableName=table,
            Key=head_key(),
            # Where pages start: must see the last write of the old indexer.
            ConsistentRead=True,
        )
    item = response.get("Item")
    return int(item[HEAD_LAST]["N"]) if item and HEAD_LAST in item else 0


def locate(
    client: DynamoDBClient, table: str, wanted: Mapping[Key, int], *, head: int | None = None
) -> dict[Key, int]:
    """Where each wanted commit was placed: its lead's notification id, for the
    leads found in a page. ``wanted`` maps each lead to a lower bound of the
    head when the commit was appended (the commit can only be in a page whose
    first id is above it). Reads each needed page once, from the lowest bound
    up to the head (or ``head``), skipping ranges no wanted lead can be in."""
    found: dict[Key, int] = {}
    read_upto = -1  # pages with a first id up to here are read
    for lead, bound in sorted(wanted.items(), key=lambda entry: entry[1]):
        if lead in found:
            continue
        for page in pages_after(client, table, max(bound, read_upto), head):
            read_upto = page.first
            for key, log_position in page.leads():
                if key in wanted:
                    found[key] = log_position
            if lead in found:
                break
        else:
            break  # read to the head: the rest are not indexed either
    return found


def fitting_a_page(remaining: Sequence[Commit]) -> list[Commit]:
    """The longest prefix of whole commits that fits a page (at least one)."""
    group: list[Commit] = []
    events, size = 0, 64  # key and names
    for commit in remaining:
        commit_size = packed_size(commit.keys)
        if group and (
            events + len(commit.keys) > PAGE_MAX_EVENTS or size + commit_size > PAGE_MAX_BYTES
        ):
            break
        group.append(commit)
        events += len(commit.keys)
        size += commit_size
    return group
