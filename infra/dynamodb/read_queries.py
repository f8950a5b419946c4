"""The read model's queries on DynamoDB: what the API reads from the read tables.

Reads of single items and of the base table use ``ConsistentRead``. Queries of
the GSIs (the event listing, an event's waitlist and registration list) cannot:
DynamoDB updates GSIs asynchronously, usually within a second. Rows of the
``registrations`` table whose status is ``withdrawn`` are the users' history:
every list, count and single read leaves them out, except
``registered_event_ids``, which is that history.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from botocore.exceptions import BotoCoreError, ClientError

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
from projections.memory import MemoryTables, StoredRegistration
from projections.paging import decode_token, encode_token
from projections.views import EventRow, Page, RegistrationRow, UserRow

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

SNAPSHOT_READ_ATTEMPTS = 5


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

    def _waitlist(self, event_id: str) -> tuple[str, ...]:
        return tuple(
            str(item["userId"])
            for item in self._query(
                TableName=self.registrations_table,
                IndexName=ORDER_GSI,
                KeyConditionExpression="eventId = :e AND begins_with(eventOrder, :w)",
                ExpressionAttributeValues={":e": {"S": event_id}, ":w": {"S": "1#"}},
                ProjectionExpression="userId",
            )
        )

    def _event_row(self, item: dict[str, Any]) -> EventRow:
        """The row with its waitlist, as one consistent picture.

        The row (a consistent GetItem) and the waitlist (a GSI query) are two
        reads: a projector commit between them, or a GSI that lags its table,
        could pair counts with a different waitlist. So the row is read again
        after the query and the pair is kept only when the row is unchanged
        and the waitlist has as many people as the row counts (a few tries).
        A row that counts nobody waiting needs no second read.
        """
        if int(item["waitlistCount"]) == 0:
            # The row, read consistently, says nobody waits: its waitlist is
            # empty, whatever a lagging index still shows. One read, not three.
            return event_row(item, ())
        key = {"eventId": {"S": item["eventId"]}}
        waitlist = self._waitlist(item["eventId"])
        for _ in range(SNAPSHOT_READ_ATTEMPTS):
            again = self._get(self.gatherings_table, key)
            if again is None:
                break
            if again == item and len(waitlist) == int(item["waitlistCount"]):
                break
            item = again
            waitlist = self._waitlist(item["eventId"])
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
            tables.events[item["eventId"]] = event_row(item, ())
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
        # (``_event_row``); one deleted meanwhile is left out. The total and
        # the page are two reads, so concurrent writes may make them differ.
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
        total = self._count(**kwargs)
        if token is not None:
            start = decode_token(token, {"e": str})
            kwargs["ExclusiveStartKey"] = {
                "listing": {"S": EVENT_LISTING},
                "eventId": {"S": start["e"]},
            }
        items, more = self._limited(limit, **kwargs)
        found = self._event_items({listed["eventId"] for listed in items})
        rows = [self._event_row(found[e["eventId"]]) for e in items if e["eventId"] in found]
        next_token = encode_token({"e": items[-1]["eventId"]}) if more and items else None
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

    def _titles(self, event_ids: set[str]) -> dict[str, tuple[str, str]]:
        rows = self._event_items(
            event_ids,
            ProjectionExpression="eventId, title, #d",
            ExpressionAttributeNames={"#d": "date"},
        )
        return {event_id: (row["title"], row["date"]) for event_id, row in rows.items()}

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

    def _registration_rows(
        self, items: list[dict[str, Any]], waitlist_positions: dict[str, int] | None = None
    ) -> list[RegistrationRow]:
        titles = self._titles({item["eventId"] for item in items})
        rows = []
        for item in items:
            if item["eventId"] not in titles or item["status"] == WITHDRAWN:
                continue
            title, date = titles[item["eventId"]]
            waitlist_position = None
            if item["status"] == "waitlist":
                waitlist_position = (
                    waitlist_positions[item["userId"]]
                    if waitlist_positions is not None
                    else self._position_in_waitlist(item["eventId"], int(item["sortKey"]))
                )
            rows.append(
                RegistrationRow(
                    user_id=item["userId"],
                    event_id=item["eventId"],
                    status=item["status"],
                    registered_at=datetime.fromisoformat(item["registeredAt"]),
                    event_title=title,
                    event_date=date,
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
        total = self._count(**kwargs)
        if token is not None:
            start = decode_token(token, {"e": str})
            kwargs["ExclusiveStartKey"] = {"userId": {"S": user_id}, "eventId": {"S": start["e"]}}
        items, more = self._limited(limit, **kwargs)
        rows = self._registration_rows(items)
        next_token = encode_token({"e": items[-1]["eventId"]}) if more and items else None
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
            start = decode_token(token, {"o": str, "u": str})
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
            next_token = encode_token({"o": items[-1]["eventOrder"], "u": items[-1]["userId"]})
        return Page(items=rows, next_token=next_token, total=total)
