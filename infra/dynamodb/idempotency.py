"""Idempotency records on DynamoDB (see ``infra/idempotency.py``).

Table ``<prefix>idempotency``, key (``scope`` S, ``key`` S): ``fp`` the
request's fingerprint, ``st`` ``in_progress`` or ``done``, ``lease`` (N, epoch
seconds) until when an in-progress request holds the key, ``expiresAt`` (N,
epoch seconds; the table's TTL attribute, which DynamoDB deletes lazily, so
reads treat a passed ``expiresAt`` as absent), and for a done request its
``status``, ``headers`` (JSON) and ``body`` (B).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from domain.errors import StoreUnavailableError
from infra.dynamodb.errors import error_code
from infra.dynamodb.tables import TableNotReadyError, TableSpec, ensure_tables
from infra.idempotency import Claim, StoredResponse, shows_personal_data

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def idempotency_table_spec(prefix: str) -> TableSpec:
    return TableSpec(f"{prefix}idempotency", "scope", "S", "key", "S", ttl="expiresAt")


def _unavailable(error: Exception) -> StoreUnavailableError:
    return StoreUnavailableError(f"The idempotency table is unavailable: {error}")


class DynamoDBIdempotencyStore:
    def __init__(self, client: DynamoDBClient, prefix: str, *, ttl_seconds: float) -> None:
        self.client = client
        self.table = idempotency_table_spec(prefix).name
        self.ttl_seconds = ttl_seconds
        try:
            ensure_tables(client, [idempotency_table_spec(prefix)])
        except (ClientError, BotoCoreError, TableNotReadyError) as error:
            raise _unavailable(error) from error

    def _key(self, scope: str, key: str) -> dict[str, Any]:
        return {"scope": {"S": scope}, "key": {"S": key}}

    def claim(self, scope: str, key: str, fingerprint: str, *, lease_seconds: float) -> Claim:
        now = time.time()
        item = {
            **self._key(scope, key),
            "fp": {"S": fingerprint},
            "st": {"S": "in_progress"},
            "lease": {"N": f"{now + lease_seconds:.3f}"},
            "expiresAt": {"N": str(int(now + self.ttl_seconds) + 1)},
        }
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                # Why: a live record holds the key (its request runs, or its response
                # is to be replayed) and must survive. Only a missing record, one past
                # its time to live (TTL deletes lazily), or an in-progress record whose
                # lease ran out (its request died unfinished) may be replaced.
                ConditionExpression=(
                    "attribute_not_exists(#k) OR #exp < :now OR (#st = :prog AND #lease < :now)"
                ),
                ExpressionAttributeNames={
                    "#k": "key",
                    "#exp": "expiresAt",
                    "#st": "st",
                    "#lease": "lease",
                },
                ExpressionAttributeValues={
                    ":now": {"N": f"{now:.3f}"},
                    ":prog": {"S": "in_progress"},
                },
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise _unavailable(error) from error
        except BotoCoreError as error:
            raise _unavailable(error) from error
        else:
            return Claim("new")
        found = self._get(scope, key)
        if found is None:  # deleted (released) in between: claim again
            return self.claim(scope, key, fingerprint, lease_seconds=lease_seconds)
        return found

    def _get(self, scope: str, key: str) -> Claim | None:
        try:
            response = self.client.get_item(
                TableName=self.table,
                Key=self._key(scope, key),
                # Decides whether a request runs: must see the latest claim.
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as error:
            raise _unavailable(error) from error
        item = response.get("Item")
        if item is None:
            return None
        fingerprint = str(item["fp"]["S"])
        if item["st"]["S"] != "done":
            return Claim("in_progress", fingerprint)
        headers = tuple((str(k), str(v)) for k, v in json.loads(item["headers"]["S"]))
        body = bytes(item["body"]["B"])
        return Claim("done", fingerprint, StoredResponse(int(item["status"]["N"]), headers, body))

    def complete(self, scope: str, key: str, response: StoredResponse) -> None:
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(scope, key),
                UpdateExpression=(
                    "SET #st = :done, #status = :status, #h = :h, #b = :b, #exp = :exp"
                ),
                ExpressionAttributeNames={
                    "#st": "st",
                    "#status": "status",
                    "#h": "headers",
                    "#b": "body",
                    "#exp": "expiresAt",
                },
                ExpressionAttributeValues={
                    ":done": {"S": "done"},
                    ":status": {"N": str(response.status)},
                    ":h": {"S": json.dumps(response.headers)},
                    ":b": {"B": response.body},
                    ":exp": {"N": str(int(time.time() + self.ttl_seconds) + 1)},
                },
            )
        except (ClientError, BotoCoreError) as error:
            raise _unavailable(error) from error

    def release(self, scope: str, key: str) -> None:
        try:
            self.client.delete_item(
                TableName=self.table,
                Key=self._key(scope, key),
                # Why: only our own unfinished claim is released, never a response
                # that is kept for replays.
                ConditionExpression="#st = :prog",
                ExpressionAttributeNames={"#st": "st"},
                ExpressionAttributeValues={":prog": {"S": "in_progress"}},
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise _unavailable(error) from error
        except BotoCoreError as error:
            raise _unavailable(error) from error

    def sweep(self, limit: int) -> int:
        """Nothing to do: the table's TTL (``expiresAt``) deletes expired records, in
        the background and at no write cost, and ``claim`` treats one not deleted
        yet as absent."""
        return 0

    def forget(self, user_id: str) -> int:
        """Deletes every kept answer showing the user's personal data. A scan (an
        erasure is rare, and the table holds a day or so of answers), paged."""
        doomed: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": self.table,
            # Consistent: an answer kept just before the erasure must be found.
            "ConsistentRead": True,
            "FilterExpression": "#st = :done",
            "ExpressionAttributeNames": {"#st": "st"},
            "ExpressionAttributeValues": {":done": {"S": "done"}},
        }
        try:
            while True:
                page = self.client.scan(**request)
                for item in page.get("Items", []):
                    body = item.get("body", {}).get("B")
                    if shows_personal_data(body, user_id):
                        doomed.append({"scope": item["scope"], "key": item["key"]})
                if "LastEvaluatedKey" not in page:
                    break
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            for key in doomed:
                self.client.delete_item(TableName=self.table, Key=key)
        except (ClientError, BotoCoreError) as error:
            raise _unavailable(error) from error
        return len(doomed)

    def close(self) -> None:
        """The client is the read model's; nothing to release here."""
