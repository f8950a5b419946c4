"""The state-based yardstick on DynamoDB (see ``bench.baseline``)."""

from __future__ import annotations

import os
import random
import time
import uuid
from contextlib import suppress
from typing import Any

# The service's own request and response models: every server of the benchmark
# validates and serialises exactly what the service does.
from api.schemas import (
    EventCreate,
    EventUpdate,
    UserCreate,
)
from bench.baseline.common import (
    OPEN_STATUSES,
    STATS,
    ApiError,
    Row,
    already,
    capacity_below,
    contention,
    event_changes,
    event_full,
    event_not_found,
    event_view,
    not_open,
    now_iso,
    registration_not_found,
    registration_view,
    user_not_found,
)
from infra.dynamodb.capacity import learn_shapes, write_units

READ_CALLS = frozenset({"get_item", "query", "scan", "batch_get_item", "transact_get_items"})
PROMOTE_AT_ONCE = 90  # items per transaction stay under DynamoDB's 100


class DynamoStore:
    """Users(userId), Events(eventId; registeredCount, waitlist), Registrations(userId, eventId;
    GSI byEvent). Every change touching an event is one TransactWriteItems whose conditions
    re-check what the decision was based on; a cancelled one is re-read and decided again."""

    def __init__(self) -> None:
        import boto3
        from botocore.config import Config

        from infra.devtools.simulated_latency import add_simulated_latency, latency_from_env

        self.client: Any = boto3.session.Session().client(
            "dynamodb",
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or None,
            region_name=os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1",
            config=Config(max_pool_connections=64, retries={"max_attempts": 5, "mode": "standard"}),
        )
        # Measured alike with the service: the same simulated round trip per call.
        add_simulated_latency(self.client, latency_from_env(os.environ))
        self.cancelled = self.client.exceptions.TransactionCanceledException
        self.condition_failed = self.client.exceptions.ConditionalCheckFailedException
        prefix = os.environ.get("DYNAMODB_TABLE_PREFIX", "baseline-")
        self.users, self.events = f"{prefix}Users", f"{prefix}Events"
        self.registrations = f"{prefix}Registrations"
        self.max_attempts = 64
        self._create_tables()

    def _call(self, op: str, method: str, **params: Any) -> Any:
        params["ReturnConsumedCapacity"] = "TOTAL"
        try:
            response = getattr(self.client, method)(**params)
        except self.client.exceptions.ClientError as e:
            self._account(op, method, params, e.response.get("ConsumedCapacity"), written=False)
            raise
        self._account(op, method, params, response.get("ConsumedCapacity"), written=True)
        return response

    def _account(self, op: str, method: str, params: Row, consumed: Any, *, written: bool) -> None:
        """Reads as DynamoDB reports them; writes by AWS's rule, the service's
        own function (``infra.dynamodb.capacity``), GSI writes included."""
        if method in READ_CALLS:
            entries = consumed if isinstance(consumed, list) else [consumed] if consumed else []
            units = sum(float(e.get("CapacityUnits", 0.0)) for e in entries)
            STATS.bump(op, calls=1, readUnits=units)
            return
        operation = self.client.meta.method_to_api_mapping[method]
        units = sum(write_units(operation, params).values()) if written else 0.0
        STATS.bump(op, calls=1, writeUnits=units)

    def _create_tables(self) -> None:
        existing = set(self.client.list_tables().get("TableNames", []))
        by_event = {
            "IndexName": "byEvent",
            "Projection": {"ProjectionType": "ALL"},
            "KeySchema": [
                {"AttributeName": "eventId", "KeyType": "HASH"},
                {"AttributeName": "userId", "KeyType": "RANGE"},
            ],
        }
        specs: list[tuple[str, list[tuple[str, str]], list[Row]]] = [
            (self.users, [("userId", "HASH")], []),
            (self.events, [("eventId", "HASH")], []),
            (self.registrations, [("userId", "HASH"), ("eventId", "RANGE")], [by_event]),
        ]
        for name, keys, indexes in specs:
            if name in existing:
                continue
            extra = {"GlobalSecondaryIndexes": indexes} if indexes else {}
            with suppress(self.client.exceptions.ResourceInUseException):
                self.client.create_table(
                    TableName=name,
                    BillingMode="PAY_PER_REQUEST",
                    KeySchema=[{"AttributeName": a, "KeyType": t} for a, t in keys],
                    AttributeDefinitions=[
                        {"AttributeName": a, "AttributeType": "S"} for a, _ in keys
                    ],
                    **extra,
                )
        for name, _, _ in specs:
            self.client.get_waiter("table_exists").wait(
                TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        # The write rule needs each table's keys and GSIs (with their projections).
        learn_shapes(self.client, [name for name, _, _ in specs])

    @staticmethod
    def _backoff(attempt: int) -> None:
        time.sleep(random.uniform(0, min(0.05, 0.002 * 2 ** min(attempt, 5))))

    @staticmethod
    def _s(value: str | None) -> Row:
        return {"NULL": True} if value is None else {"S": value}

    @staticmethod
    def _event(item: Row) -> Row:
        def text(key: str) -> str | None:
            return item[key].get("S") if key in item else None

        return {
            "eventId": text("eventId"),
            "title": text("title"),
            "description": text("description") or "",
            "date": text("date"),
            "location": text("location"),
            "capacity": int(item["capacity"]["N"]),
            "organizer": text("organizer"),
            "status": text("status"),
            "waitlistEnabled": item["waitlistEnabled"]["BOOL"],
            "registeredCount": int(item["registeredCount"]["N"]),
            "waitlist": [x["S"] for x in item.get("waitlist", {}).get("L", [])],
            "createdAt": text("createdAt"),
            "updatedAt": text("updatedAt"),
        }

    def _get_event(self, op: str, event_id: str) -> Row:
        item = self._call(
            op,
            "get_item",
            TableName=self.events,
            Key={"eventId": {"S": event_id}},
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            raise event_not_found()
        return self._event(item)

    def _user_exists(self, op: str, user_id: str) -> bool:
        response = self._call(
            op,
            "get_item",
            TableName=self.users,
            Key={"userId": {"S": user_id}},
            ConsistentRead=True,
            ProjectionExpression="userId",
        )
        return "Item" in response

    def _get_registration(self, op: str, user_id: str, event_id: str) -> Row | None:
        item: Row | None = self._call(
            op,
            "get_item",
            TableName=self.registrations,
            ConsistentRead=True,
            Key={"userId": {"S": user_id}, "eventId": {"S": event_id}},
        ).get("Item")
        return item

    @staticmethod
    def _view(event: Row) -> Row:
        waitlist = event.pop("waitlist")
        return event_view(event, waitlist)

    def create_user(self, body: UserCreate) -> Row:
        STATS.bump("createUser", requests=1)
        at = now_iso()
        try:
            self._call(
                "createUser",
                "put_item",
                TableName=self.users,
                ConditionExpression="attribute_not_exists(userId)",
                Item={
                    "userId": {"S": body.user_id},
                    "name": {"S": body.name},
                    "createdAt": {"S": at},
                    "updatedAt": {"S": at},
                },
            )
        except self.condition_failed:
            raise ApiError(409, "DUPLICATE_USER", "The userId is taken") from None
        return {"userId": body.user_id, "name": body.name, "createdAt": at, "updatedAt": at}

    def get_user(self, user_id: str) -> Row:
        STATS.bump("getUser", requests=1)
        item = self._call(
            "getUser",
            "get_item",
            TableName=self.users,
            Key={"userId": {"S": user_id}},
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            raise user_not_found()
        return {k: item[k]["S"] for k in ("userId", "name", "createdAt", "updatedAt")}

    def create_event(self, body: EventCreate) -> Row:
        STATS.bump("createEvent", requests=1)
        at, event_id = now_iso(), body.event_id or str(uuid.uuid4())
        item = {
            "eventId": {"S": event_id},
            "title": {"S": body.title},
            "description": {"S": body.description},
            "date": {"S": body.date},
            "location": self._s(body.location),
            "capacity": {"N": str(body.capacity)},
            "organizer": self._s(body.organizer),
            "status": {"S": body.status},
            "waitlistEnabled": {"BOOL": body.waitlist_enabled},
            "registeredCount": {"N": "0"},
            "waitlist": {"L": []},
            "createdAt": {"S": at},
            "updatedAt": {"S": at},
        }
        try:
            self._call(
                "createEvent",
                "put_item",
                TableName=self.events,
                Item=item,
                ConditionExpression="attribute_not_exists(eventId)",
            )
        except self.condition_failed:
            raise ApiError(409, "DUPLICATE_EVENT", "The eventId is taken") from None
        return self._view(self._event(item))

    def get_event(self, event_id: str) -> Row:
        STATS.bump("getEvent", requests=1)
        return self._view(self._get_event("getEvent", event_id))

    def list_events(self, status: str | None, limit: int) -> tuple[list[Row], int]:
        STATS.bump("listEvents", requests=1)
        params: Row = {"TableName": self.events}
        if status:
            params |= {
                "FilterExpression": "#s = :s",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":s": {"S": status}},
            }
        events: list[Row] = []
        while True:
            response = self._call("listEvents", "scan", **params)
            events += [self._event(i) for i in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        events.sort(key=lambda e: e["eventId"])
        return [self._view(e) for e in events[:limit]], len(events)

    def _promotions(self, event_id: str, heads: list[str], at: str) -> list[Row]:
        return [
            {
                "Update": {
                    "TableName": self.registrations,
                    "Key": {"userId": {"S": head}, "eventId": {"S": event_id}},
                    "UpdateExpression": "SET #s = :confirmed, promotedAt = :at",
                    "ConditionExpression": "#s = :waitlist",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {
                        ":confirmed": {"S": "confirmed"},
                        ":waitlist": {"S": "waitlist"},
                        ":at": {"S": at},
                    },
                }
            }
            for head in heads
        ]

    def update_event(self, event_id: str, body: EventUpdate) -> Row:
        op = "updateEvent"
        STATS.bump(op, requests=1)
        changes = event_changes(body)
        for attempt in range(self.max_attempts):
            event = self._get_event(op, event_id)
            count, waitlist = event["registeredCount"], event["waitlist"]
            capacity = changes.get("capacity", event["capacity"])
            if capacity < count:
                raise capacity_below(count)
            heads = waitlist[: max(0, min(capacity - count, len(waitlist), PROMOTE_AT_ONCE))]
            at = now_iso()
            names = {"#updatedAt": "updatedAt", "#rc": "registeredCount"}
            values: Row = {":at": {"S": at}, ":count": {"N": str(count)}}
            sets = ["#updatedAt = :at"]
            for i, (key, value) in enumerate(changes.items()):
                names[f"#f{i}"] = key
                if isinstance(value, bool):
                    values[f":v{i}"] = {"BOOL": value}
                elif isinstance(value, int):
                    values[f":v{i}"] = {"N": str(value)}
                else:
                    values[f":v{i}"] = {"S": value}
                sets.append(f"#f{i} = :v{i}")
            conditions = ["attribute_exists(eventId)", "#rc = :count"]
            remove = ""
            if heads:
                values[":n"] = {"N": str(len(heads))}
                sets.append("#rc = #rc + :n")
                for i, head in enumerate(heads):
                    values[f":h{i}"] = {"S": head}
                    conditions.append(f"waitlist[{i}] = :h{i}")
                remove = " REMOVE " + ", ".join(f"waitlist[{i}]" for i in range(len(heads)))
            update = {
                "TableName": self.events,
                "Key": {"eventId": {"S": event_id}},
                "UpdateExpression": "SET " + ", ".join(sets) + remove,
                "ConditionExpression": " AND ".join(conditions),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
            try:
                if heads:
                    items = [{"Update": update}, *self._promotions(event_id, heads, at)]
                    self._call(op, "transact_write_items", TransactItems=items)
                else:
                    self._call(op, "update_item", **update)
            except (self.cancelled, self.condition_failed):
                STATS.bump(op, retries=1)
                self._backoff(attempt)
                continue
            self._fill(op, event_id)  # more than PROMOTE_AT_ONCE seats opened at once
            return self._view(self._get_event(op, event_id))
        raise contention()

    def _fill(self, op: str, event_id: str) -> None:
        for attempt in range(self.max_attempts):
            event = self._get_event(op, event_id)
            waitlist, count = event["waitlist"], event["registeredCount"]
            free = event["capacity"] - count
            heads = waitlist[: max(0, min(free, len(waitlist), PROMOTE_AT_ONCE))]
            if not heads:
                return
            values: Row = {":count": {"N": str(count)}, ":n": {"N": str(len(heads))}}
            values |= {f":h{i}": {"S": h} for i, h in enumerate(heads)}
            update = {
                "TableName": self.events,
                "Key": {"eventId": {"S": event_id}},
                "UpdateExpression": "SET #rc = #rc + :n REMOVE "
                + ", ".join(f"waitlist[{i}]" for i in range(len(heads))),
                "ConditionExpression": " AND ".join(
                    ["#rc = :count"] + [f"waitlist[{i}] = :h{i}" for i in range(len(heads))]
                ),
                "ExpressionAttributeNames": {"#rc": "registeredCount"},
                "ExpressionAttributeValues": values,
            }
            items = [{"Update": update}, *self._promotions(event_id, heads, now_iso())]
            try:
                self._call(op, "transact_write_items", TransactItems=items)
            except self.cancelled:
                STATS.bump(op, retries=1)
                self._backoff(attempt)

    def register(self, user_id: str, event_id: str) -> Row:
        op = "register"
        STATS.bump(op, requests=1)
        if not self._user_exists(op, user_id):
            raise user_not_found()
        for attempt in range(self.max_attempts):
            event = self._get_event(op, event_id)
            if event["status"] not in OPEN_STATUSES:
                raise not_open()
            count, capacity, waitlist = (
                event["registeredCount"],
                event["capacity"],
                event["waitlist"],
            )
            if user_id in waitlist:
                raise already("waitlist")
            names = {"#rc": "registeredCount", "#cap": "capacity", "#st": "status"}
            values: Row = {":open1": {"S": OPEN_STATUSES[0]}, ":open2": {"S": OPEN_STATUSES[1]}}
            is_open = "#st IN (:open1, :open2)"
            if count < capacity and not waitlist:
                status = "confirmed"
                update = {
                    "UpdateExpression": "SET #rc = #rc + :one",
                    "ConditionExpression": f"{is_open} AND #rc < #cap AND size(waitlist) = :zero",
                    "ExpressionAttributeValues": values | {":one": {"N": "1"}, ":zero": {"N": "0"}},
                }
            elif event["waitlistEnabled"]:
                status = "waitlist"
                names["#we"] = "waitlistEnabled"
                update = {
                    "UpdateExpression": "SET waitlist = list_append(waitlist, :me)",
                    "ConditionExpression": f"{is_open} AND #we = :true AND "
                    "(#rc >= #cap OR size(waitlist) > :zero) AND NOT contains(waitlist, :user)",
                    "ExpressionAttributeValues": values
                    | {
                        ":me": {"L": [{"S": user_id}]},
                        ":user": {"S": user_id},
                        ":true": {"BOOL": True},
                        ":zero": {"N": "0"},
                    },
                }
            else:
                previous = self._get_registration(op, user_id, event_id)
                if previous is not None:
                    raise already(previous["status"]["S"])
                raise event_full()
            at = now_iso()
            items = [
                {
                    "Update": {
                        "TableName": self.events,
                        "Key": {"eventId": {"S": event_id}},
                        "ExpressionAttributeNames": names,
                        **update,
                    }
                },
                {
                    "Put": {
                        "TableName": self.registrations,
                        "ConditionExpression": "attribute_not_exists(userId)",
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        "Item": {
                            "userId": {"S": user_id},
                            "eventId": {"S": event_id},
                            "status": {"S": status},
                            "registeredAt": {"S": at},
                        },
                    }
                },
            ]
            try:
                self._call(op, "transact_write_items", TransactItems=items)
            except self.cancelled as e:
                reasons: list[Any] = e.response.get("CancellationReasons") or [{}, {}]
                if reasons[1].get("Code") == "ConditionalCheckFailed":
                    old = reasons[1].get("Item") or self._get_registration(op, user_id, event_id)
                    raise already(old["status"]["S"] if old else status) from None
                STATS.bump(op, retries=1)
                if any(r.get("Code") == "TransactionConflict" for r in reasons):
                    self._backoff(attempt)
                continue  # the event moved on: read it again and decide again
            waitlist_position = len(waitlist) + 1 if status == "waitlist" else None
            return registration_view(user_id, event_id, status, at, event, waitlist_position)
        raise contention()

    def leave(self, user_id: str, event_id: str) -> None:
        op = "leave"
        STATS.bump(op, requests=1)
        for attempt in range(self.max_attempts):
            previous = self._get_registration(op, user_id, event_id)
            if previous is None:
                raise registration_not_found()
            status = previous["status"]["S"]
            event = self._get_event(op, event_id)
            waitlist = event["waitlist"]
            event_key = {"TableName": self.events, "Key": {"eventId": {"S": event_id}}}
            delete = {
                "Delete": {
                    "TableName": self.registrations,
                    "Key": {"userId": {"S": user_id}, "eventId": {"S": event_id}},
                    "ConditionExpression": "#s = :status",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":status": {"S": status}},
                }
            }
            at = now_iso()
            if status == "waitlist":
                if user_id not in waitlist:  # a promotion is under way: read again
                    STATS.bump(op, retries=1)
                    self._backoff(attempt)
                    continue
                i = waitlist.index(user_id)
                change = {
                    **event_key,
                    "UpdateExpression": f"REMOVE waitlist[{i}] SET updatedAt = :at",
                    "ConditionExpression": f"waitlist[{i}] = :user",
                    "ExpressionAttributeValues": {":user": {"S": user_id}, ":at": {"S": at}},
                }
                items = [delete, {"Update": change}]
            elif waitlist:  # the freed seat goes to the head of the waitlist, in the same step
                change = {
                    **event_key,
                    "UpdateExpression": "REMOVE waitlist[0] SET updatedAt = :at",
                    "ConditionExpression": "waitlist[0] = :head",
                    "ExpressionAttributeValues": {":head": {"S": waitlist[0]}, ":at": {"S": at}},
                }
                items = [delete, {"Update": change}, *self._promotions(event_id, waitlist[:1], at)]
            else:
                change = {
                    **event_key,
                    "UpdateExpression": "SET #rc = #rc - :one, updatedAt = :at",
                    "ConditionExpression": "size(waitlist) = :zero AND #rc > :zero",
                    "ExpressionAttributeNames": {"#rc": "registeredCount"},
                    "ExpressionAttributeValues": {
                        ":one": {"N": "1"},
                        ":zero": {"N": "0"},
                        ":at": {"S": at},
                    },
                }
                items = [delete, {"Update": change}]
            try:
                self._call(op, "transact_write_items", TransactItems=items)
            except self.cancelled as e:
                STATS.bump(op, retries=1)
                reasons = e.response.get("CancellationReasons") or []
                if any(r.get("Code") == "TransactionConflict" for r in reasons):
                    self._backoff(attempt)
                continue
            return
        raise contention()

    def delete_event(self, event_id: str) -> None:
        STATS.bump("deleteEvent", requests=1)
        try:
            self._call(
                "deleteEvent",
                "delete_item",
                TableName=self.events,
                Key={"eventId": {"S": event_id}},
                ConditionExpression="attribute_exists(eventId) AND "
                "registeredCount = :zero AND size(waitlist) = :zero",
                ExpressionAttributeValues={":zero": {"N": "0"}},
            )
        except self.condition_failed:
            self._get_event("deleteEvent", event_id)  # 404 when it is gone
            raise ApiError(409, "EVENT_HAS_REGISTRATIONS", "People are registered") from None

    def get_registration(self, user_id: str, event_id: str) -> Row:
        op = "getRegistration"
        STATS.bump(op, requests=1)
        item = self._get_registration(op, user_id, event_id)
        if item is None:
            raise registration_not_found()
        event = self._get_event(op, event_id)
        status = item["status"]["S"]
        waitlist = event["waitlist"]
        waitlist_position = waitlist.index(user_id) + 1 if user_id in waitlist else None
        return registration_view(
            user_id, event_id, status, item["registeredAt"]["S"], event, waitlist_position
        )

    def _titles(self, op: str, event_ids: list[str]) -> dict[str, Row]:
        out: dict[str, Row] = {}
        ids = list(dict.fromkeys(event_ids))
        for i in range(0, len(ids), 100):
            request: Row | None = {
                self.events: {
                    "Keys": [{"eventId": {"S": e}} for e in ids[i : i + 100]],
                    "ConsistentRead": True,
                    "ProjectionExpression": "eventId, title, #d",
                    "ExpressionAttributeNames": {"#d": "date"},
                }
            }
            while request:
                response = self._call(op, "batch_get_item", RequestItems=request)
                for item in response["Responses"].get(self.events, []):
                    out[item["eventId"]["S"]] = {
                        "title": item["title"]["S"],
                        "date": item["date"]["S"],
                    }
                request = response.get("UnprocessedKeys") or None
        return out

    def _query(self, op: str, **params: Any) -> list[Row]:
        items: list[Row] = []
        while True:
            response = self._call(op, "query", **params)
            items += response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return items
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def user_registrations(self, user_id: str) -> list[Row]:
        op = "userRegistrations"
        STATS.bump(op, requests=1)
        if not self._user_exists(op, user_id):
            raise user_not_found()
        items = self._query(
            op,
            TableName=self.registrations,
            ConsistentRead=True,
            KeyConditionExpression="userId = :u",
            ExpressionAttributeValues={":u": {"S": user_id}},
        )
        titles = self._titles(op, [i["eventId"]["S"] for i in items]) if items else {}
        return [
            registration_view(
                user_id,
                i["eventId"]["S"],
                i["status"]["S"],
                i["registeredAt"]["S"],
                titles.get(i["eventId"]["S"], {"title": "", "date": ""}),
                None,
            )
            for i in items
        ]

    def event_registrations(self, event_id: str) -> list[Row]:
        op = "eventRegistrations"
        STATS.bump(op, requests=1)
        event = self._get_event(op, event_id)
        items = self._query(
            op,
            TableName=self.registrations,
            IndexName="byEvent",
            KeyConditionExpression="eventId = :e",
            ExpressionAttributeValues={":e": {"S": event_id}},
        )
        place = {u: i for i, u in enumerate(event["waitlist"])}
        items.sort(
            key=lambda i: (
                i["status"]["S"] != "confirmed",
                place.get(i["userId"]["S"], 0),
                i["registeredAt"]["S"],
            )
        )
        return [
            registration_view(
                i["userId"]["S"],
                event_id,
                i["status"]["S"],
                i["registeredAt"]["S"],
                event,
                place.get(i["userId"]["S"], 0) + 1,
            )
            for i in items
        ]

    def ping(self) -> None:
        self.client.describe_table(TableName=self.events)

    def close(self) -> None:
        self.client.close()
