"""The read model's queries on DynamoDB: what the API reads from the read tables.

Reads of single items and of the base table use ``ConsistentRead``. Queries of
the GSIs (the event listing, an event's waitlist and registration list) cannot:
DynamoDB updates GSIs asynchronously, usually within a second; an event's
waitlist is served only when it matches its row's count and digest
(``waitlists.py``), and cached by row version. Rows of the
``registrations`` table whose status is ``withdrawn`` are the users' history:
every list, count and single read leaves them out, except
``registered_event_ids``, which is that history.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from botocore.exceptions import BotoCoreError, ClientError

from domain.errors import StoreUnavailableError
from infra.dynamodb.read_schema import (
    EVENT_LISTING,
    EVENTS_GSI,
    ORDER_GSI,
    WITHDRAWN,
    TableSet,
    event_row,
    order,
    plain,
    unavailable,
    user_row,
)
from infra.dynamodb.waitlists import Waiting, WaitlistCache, cache_key, verified
from projections.memory import MemoryTables, StoredRegistration
from projections.paging import (
    decode_token,
    encode_token,
    event_registrations_list,
    events_list,
    user_registrations_list,
)
from projections.views import EventRow, Page, RegistrationRow, UserRow

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

SNAPSHOT_READ_ATTEMPTS = 5
#: Before reading a row again whose waitlist the index did not show yet: this,
#: doubled on each try (the index usually catches up within a second).
SETTLE_PAUSE_S = 0.01
#: A user's place in a longer waitlist not cached is counted on the index
#: (one COUNT query) rather than read from the whole waitlist.
PLACE_FROM_WHOLE_WAITLIST = 1_000
#: A list's first page reads up to this many items: a list no longer than
#: that is counted by the same read (no COUNT query).
READ_AHEAD = 100


def _holding(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` of a registrations query, leaving withdrawn rows (the users'
    history) out."""
    values = kwargs.get("ExpressionAttributeValues", {})
    names = kwargs.get("ExpressionAttributeNames", {})
    return kwargs | {
        "FilterExpression": "#st <> :withdrawn",
        "ExpressionAttributeNames": names | {"#st": "status"},
        "ExpressionAttributeValues": values | {":withdrawn": {"S": WITHDRAWN}},
    }


class ReadQueries:
    """The queries of ``DynamoDBReadModel`` (``projections.ports.ReadModel``)."""

    client: DynamoDBClient
    #: Verified waitlists by row version (``waitlists.py``).
    waitlists: WaitlistCache

    def tables(self) -> TableSet:
        raise NotImplementedError

    @property
    def users_table(self) -> str:
        return self.tables().users

    @property
    def gatherings_table(self) -> str:
        return self.tables().gatherings

    @property
    def registrations_table(self) -> str:
        return self.tables().registrations

    @property
    def state_table(self) -> str:
        return self.tables().state

    def _get(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            found = self.client.get_item(TableName=table, Key=key, ConsistentRead=True)
        except (ClientError, BotoCoreError) as error:
            raise unavailable(error) from error
        item = found.get("Item")
        return plain(item) if item else None

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item of a query, following LastEvaluatedKey."""
        while True:
            try:
                page = self.client.query(**kwargs)
            except (ClientError, BotoCoreError) as error:
                raise unavailable(error) from error
            for item in page.get("Items", []):
                yield plain(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _count(self, **kwargs: Any) -> int:
        total = 0
        while True:
            try:
                page = self.client.query(Select="COUNT", **kwargs)
            except (ClientError, BotoCoreError) as error:
                raise unavailable(error) from error
            total += page.get("Count", 0)
            if "LastEvaluatedKey" not in page:
                return total
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def get_user(self, user_id: str) -> UserRow | None:
        item = self._get(self.users_table, {"userId": {"S": user_id}})
        return None if item is None else user_row(item)

    def _waiting(self, event_id: str) -> list[Waiting]:
        """The event's waitlist as ``ORDER_GSI`` shows it (in ticket order)."""
        return [
            Waiting(str(item["userId"]), int(item["sortKey"]))
            for item in self._query(
                TableName=self.registrations_table,
                IndexName=ORDER_GSI,
                KeyConditionExpression="eventId = :e AND begins_with(eventOrder, :w)",
                ExpressionAttributeValues={":e": {"S": event_id}, ":w": {"S": "1#"}},
                ProjectionExpression="userId, sortKey",
            )
        ]

    def _verified_waitlist(self, item: dict[str, Any]) -> tuple[str, ...] | None:
        """The waitlist of the gatherings row ``item`` when it can be known for
        sure in at most one query: from the cache, or a query of the index that
        the row's digest verifies (then cached). None for a row that does not
        keep the digest, or when the index does not (yet) show its waitlist."""
        key = cache_key(self.gatherings_table, item)
        if key is None:
            return None
        cached = self.waitlists.get(key)
        if cached is not None:
            return cached
        found = verified(item, self._waiting(item["eventId"]))
        if found is not None:
            self.waitlists.put(key, found)
        return found

    def _event_row(self, item: dict[str, Any]) -> EventRow | None:
        """The row with its waitlist, as one consistent picture (None: the row
        was deleted meanwhile).

        The row (a consistent GetItem) and the waitlist (a GSI query) are two
        reads: a projector commit between them, or a GSI that lags its table,
        could pair counts with a different waitlist. A row that counts nobody
        waiting needs no second read.
        """
        if int(item["waitlistCount"]) == 0:
            # The row, read consistently, says nobody waits: its waitlist is
            # empty, whatever a lagging index still shows. One read, not three.
            return event_row(item, ())
        if cache_key(self.gatherings_table, item) is None:
            return self._reread_event_row(item)
        return self._digested_event_row(item)

    def _digested_event_row(self, item: dict[str, Any]) -> EventRow | None:
        """A row that keeps its waitlist's digest (``waitlists.py``) is paired only
        with a waitlist that matches its count and digest: cached for its
        version, or queried and verified. While the index disagrees, the row is
        read again and the index queried again (a few tries, pausing longer each
        time), then the read fails as unavailable rather than serve a waitlist
        that is not the row's."""
        key = {"eventId": {"S": item["eventId"]}}
        for attempt in range(SNAPSHOT_READ_ATTEMPTS):
            if attempt:
                time.sleep(SETTLE_PAUSE_S * 2**attempt)
                again = self._get(self.gatherings_table, key)
                if again is None:
                    return None
                item = again
                if int(item["waitlistCount"]) == 0:
                    return event_row(item, ())
            found = self._verified_waitlist(item)
            if found is not None:
                return event_row(item, found)
        logger.warning("event %s: the index did not show the row's waitlist", item["eventId"])
        msg = f"The waitlist of event {item['eventId']} could not be read; please retry"
        raise StoreUnavailableError(msg)

    def _reread_event_row(self, item: dict[str, Any]) -> EventRow:
        """A row without the digest (tables filled before it existed) is read
        again after the query and kept when unchanged and the waitlist has as
        many people as it counts (a few tries)."""
        key = {"eventId": {"S": item["eventId"]}}
        waitlist = tuple(w.user_id for w in self._waiting(item["eventId"]))
        for _ in range(SNAPSHOT_READ_ATTEMPTS):
            again = self._get(self.gatherings_table, key)
            if again is None:
                break
            if again == item and len(waitlist) == int(item["waitlistCount"]):
                break
            item = again
            waitlist = tuple(w.user_id for w in self._waiting(item["eventId"]))
        else:
            logger.warning("event %s: waitlist and counts did not settle", item["eventId"])
        return event_row(item, waitlist)

    def _scan(self, table: str) -> Iterator[dict[str, Any]]:
        """Every item of a table (consistent reads), following LastEvaluatedKey."""
        kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        while True:
            try:
                page = self.client.scan(**kwargs)
            except (ClientError, BotoCoreError) as error:
                raise unavailable(error) from error
            for item in page.get("Items", []):
                yield plain(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def dump(self) -> MemoryTables:
        """Every row, table after table (the drift check allows for writes meanwhile)."""
        tables = MemoryTables()
        for item in self._scan(self.users_table):
            tables.users[item["userId"]] = user_row(item)
        for item in self._scan(self.gatherings_table):
            tables.gatherings[item["eventId"]] = event_row(item, ())
        for item in self._scan(self.state_table):
            if item["pk"].startswith("stream#"):
                tables.streams[UUID(item["pk"].removeprefix("stream#"))] = item["eventId"]
        for item in self._scan(self.registrations_table):
            key = (item["userId"], item["eventId"])
            # Every row, withdrawn or not, is a registration the user made.
            tables.user_events.add(key)
            if item["status"] != WITHDRAWN:
                tables.registrations[key] = StoredRegistration(
                    item["status"],
                    int(item["sortKey"]),
                    datetime.fromisoformat(item["registeredAt"]),
                )
        return tables

    def get_event(self, event_id: str) -> EventRow | None:
        item = self._get(self.gatherings_table, {"eventId": {"S": event_id}})
        return None if item is None else self._event_row(item)

    def event_exists(self, event_id: str) -> bool:
        try:
            found = self.client.get_item(
                TableName=self.gatherings_table,
                Key={"eventId": {"S": event_id}},
                ConsistentRead=True,
                ProjectionExpression="eventId",
            )
        except (ClientError, BotoCoreError) as error:
            raise unavailable(error) from error
        return "Item" in found

    def list_events(self, status: str | None, limit: int, token: str | None) -> Page[EventRow]:
        # Events in eventId order come from EVENTS_GSI, which holds only their
        # keys and status (so that count updates do not write it). A GSI query
        # cannot be ConsistentRead: an event created, deleted or given another
        # status moments ago may be missing from (or still in) the listing and
        # the total until DynamoDB updates the index, usually within a second.
        # Each listed row is then read consistently from the table
        # (``_event_row``); one deleted meanwhile is left out. A first page
        # that holds the whole listing is its own total; otherwise the total
        # and the page are two reads, so concurrent writes may make them differ.
        kwargs: dict[str, Any] = {
            "TableName": self.gatherings_table,
            "IndexName": EVENTS_GSI,
            "KeyConditionExpression": "listing = :l",
            "ExpressionAttributeValues": {":l": {"S": EVENT_LISTING}},
        }
        if status is not None:
            kwargs["FilterExpression"] = "#s = :s"
            kwargs["ExpressionAttributeNames"] = {"#s": "status"}
            kwargs["ExpressionAttributeValues"][":s"] = {"S": status}
        start = None
        if token is not None:
            after = decode_token(token, {"e": str}, list_of=events_list(status))["e"]
            start = {"listing": {"S": EVENT_LISTING}, "eventId": {"S": after}}
        items, more, total = self._page_and_total(limit, kwargs, start)
        found = self._event_items({listed["eventId"] for listed in items})
        rows = [
            row
            for e in items
            if e["eventId"] in found and (row := self._event_row(found[e["eventId"]])) is not None
        ]
        next_token = (
            encode_token({"e": items[-1]["eventId"]}, list_of=events_list(status))
            if more and items
            else None
        )
        return Page(items=rows, next_token=next_token, total=total)

    def _event_items(self, event_ids: set[str], **read: Any) -> dict[str, dict[str, Any]]:
        """The gatherings rows of ``event_ids`` that exist (BatchGetItem, consistent
        reads, asking again for the keys DynamoDB left unprocessed); ``read``:
        the request's other fields (``ProjectionExpression``...)."""
        found: dict[str, dict[str, Any]] = {}
        pending = sorted(event_ids)
        for start in range(0, len(pending), 100):
            keys = [{"eventId": {"S": e}} for e in pending[start : start + 100]]
            request: Any = {self.gatherings_table: {"Keys": keys, "ConsistentRead": True, **read}}
            while request:
                try:
                    response = self.client.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as error:
                    raise unavailable(error) from error
                for item in response.get("Responses", {}).get(self.gatherings_table, []):
                    row = plain(item)
                    found[row["eventId"]] = row
                request = response.get("UnprocessedKeys") or None
        return found

    def _titles(self, event_ids: set[str]) -> dict[str, dict[str, Any]]:
        """Each event's title and date, and what finds its waitlist (``waitlists.py``)."""
        return self._event_items(
            event_ids,
            ProjectionExpression=(
                "eventId, title, #d, v, waitlistCount, waitlistDigest, waitlistDigestKept"
            ),
            ExpressionAttributeNames={"#d": "date"},
        )

    def _position_in_waitlist(self, event_id: str, sort_key: int) -> int:
        """1 + how many wait ahead of the ticket ``sort_key`` (counted on the GSI)."""
        return self._count(
            TableName=self.registrations_table,
            IndexName=ORDER_GSI,
            KeyConditionExpression="eventId = :e AND eventOrder BETWEEN :head AND :mine",
            ExpressionAttributeValues={
                ":e": {"S": event_id},
                ":head": {"S": "1#"},
                ":mine": {"S": order("waitlist", sort_key)},
            },
        )

    def _place(self, registration: dict[str, Any], event: dict[str, Any]) -> int:
        """The waiting ``registration``'s place in its event's waitlist: from the
        waitlist of the event's row as read (``_verified_waitlist``) when it
        holds the user (queried only for waitlists of at most
        ``PLACE_FROM_WHOLE_WAITLIST``), else counted on the GSI."""
        count = int(event.get("waitlistCount", 0))
        key = cache_key(self.gatherings_table, event)
        if count > 0 and key is not None:
            waitlist = self.waitlists.get(key)
            if waitlist is None and count <= PLACE_FROM_WHOLE_WAITLIST:
                waitlist = self._verified_waitlist(event)
            if waitlist is not None and registration["userId"] in waitlist:
                return waitlist.index(registration["userId"]) + 1
        return self._position_in_waitlist(registration["eventId"], int(registration["sortKey"]))

    def _registration_rows(
        self, items: list[dict[str, Any]], waitlist_positions: dict[str, int] | None = None
    ) -> list[RegistrationRow]:
        events = self._titles({item["eventId"] for item in items})
        rows = []
        for item in items:
            event = events.get(item["eventId"])
            if event is None or item["status"] == WITHDRAWN:
                continue
            waitlist_position = None
            if item["status"] == "waitlist":
                waitlist_position = (
                    waitlist_positions[item["userId"]]
                    if waitlist_positions is not None
                    else self._place(item, event)
                )
            rows.append(
                RegistrationRow(
                    user_id=item["userId"],
                    event_id=item["eventId"],
                    status=item["status"],
                    registered_at=datetime.fromisoformat(item["registeredAt"]),
                    event_title=event["title"],
                    event_date=event["date"],
                    waitlist_position=waitlist_position,
                )
            )
        return rows

    def get_registration(self, user_id: str, event_id: str) -> RegistrationRow | None:
        item = self._get(
            self.registrations_table, {"userId": {"S": user_id}, "eventId": {"S": event_id}}
        )
        rows = self._registration_rows([item]) if item else []
        return rows[0] if rows else None

    def _limited(self, limit: int, **kwargs: Any) -> tuple[list[dict[str, Any]], bool]:
        items: list[dict[str, Any]] = []
        for item in self._query(Limit=limit + 1, **kwargs):
            items.append(item)
            if len(items) > limit:
                return items[:limit], True
        return items, False

    def _page_and_total(
        self, limit: int, kwargs: dict[str, Any], start: dict[str, Any] | None
    ) -> tuple[list[dict[str, Any]], bool, int]:
        """A page of the query ``kwargs`` (from ``start``), whether more follow,
        and how many items the whole query holds. A first page reads ahead up to
        ``READ_AHEAD`` items in one call: when they are the whole query they are
        its total too (one read instead of two, and the two agree); otherwise
        what follows them is counted."""
        if start is not None:
            items, more = self._limited(limit, ExclusiveStartKey=start, **kwargs)
            return items, more, self._count(**kwargs)
        try:
            first = self.client.query(Limit=max(limit + 1, READ_AHEAD), **kwargs)
        except (ClientError, BotoCoreError) as error:
            raise unavailable(error) from error
        items = [plain(item) for item in first.get("Items", [])]
        total = len(items)
        rest = first.get("LastEvaluatedKey")
        if rest is not None:
            total += self._count(ExclusiveStartKey=rest, **kwargs)
            if len(items) < limit:  # a filter left most of the read-ahead out
                items += self._limited(limit - len(items), ExclusiveStartKey=rest, **kwargs)[0]
        page = items[:limit]
        return page, total > len(page), total

    def list_user_registrations(
        self, user_id: str, limit: int, token: str | None
    ) -> Page[RegistrationRow]:
        kwargs: dict[str, Any] = {
            "TableName": self.registrations_table,
            "KeyConditionExpression": "userId = :u",
            "ExpressionAttributeValues": {":u": {"S": user_id}},
            "ConsistentRead": True,
        }
        kwargs = _holding(kwargs)
        start = None
        if token is not None:
            after = decode_token(token, {"e": str}, list_of=user_registrations_list(user_id))["e"]
            start = {"userId": {"S": user_id}, "eventId": {"S": after}}
        items, more, total = self._page_and_total(limit, kwargs, start)
        rows = self._registration_rows(items)
        next_token = (
            encode_token({"e": items[-1]["eventId"]}, list_of=user_registrations_list(user_id))
            if more and items
            else None
        )
        return Page(items=rows, next_token=next_token, total=total)

    def registered_event_ids(self, user_id: str) -> list[str]:
        # Every row of the user, withdrawn ones included: the rows are their
        # history (in eventId order, the table's sort key).
        items = self._query(
            TableName=self.registrations_table,
            KeyConditionExpression="userId = :u",
            ExpressionAttributeValues={":u": {"S": user_id}},
            ProjectionExpression="eventId",
            # An audit reads what was committed.
            ConsistentRead=True,
        )
        return [str(item["eventId"]) for item in items]

    def list_event_registrations(
        self, event_id: str, limit: int, token: str | None
    ) -> Page[RegistrationRow]:
        event = self._get(self.gatherings_table, {"eventId": {"S": event_id}})
        total = 0 if event is None else int(event["registeredCount"]) + int(event["waitlistCount"])
        kwargs: dict[str, Any] = {
            "TableName": self.registrations_table,
            "IndexName": ORDER_GSI,
            "KeyConditionExpression": "eventId = :e",
            "ExpressionAttributeValues": {":e": {"S": event_id}},
        }
        if token is not None:
            start = decode_token(
                token, {"o": str, "u": str}, list_of=event_registrations_list(event_id)
            )
            kwargs["ExclusiveStartKey"] = {
                "eventId": {"S": event_id},
                "eventOrder": {"S": start["o"]},
                "userId": {"S": start["u"]},
            }
        items, more = self._limited(limit, **kwargs)
        waiting = [item for item in items if item["status"] == "waitlist"]
        waitlist_positions: dict[str, int] = {}
        if waiting:
            first = self._position_in_waitlist(event_id, int(waiting[0]["sortKey"]))
            waitlist_positions = {item["userId"]: first + n for n, item in enumerate(waiting)}
        rows = self._registration_rows(items, waitlist_positions)
        next_token = None
        if more and items:
            next_token = encode_token(
                {"o": items[-1]["eventOrder"], "u": items[-1]["userId"]},
                list_of=event_registrations_list(event_id),
            )
        return Page(items=rows, next_token=next_token, total=total)
