"""The key table on DynamoDB (``infra/personal_data.py``).

Table ``<prefix>keys``, key ``userId`` (S): ``key`` (B) the user's stored data
key, removed at erasure, when ``erasedAt`` (N, epoch seconds) is set instead
(a tombstone: no key is ever made again for that userId). The CDK stack
declares the same table (``infra/cdk/stack.py``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError
from eventsourcing.persistence import PersistenceError

from domain.errors import StoreUnavailableError
from infra.dynamodb.datastore import batch_get
from infra.dynamodb.errors import error_code
from infra.dynamodb.tables import TableNotReadyError, TableSpec, ensure_tables

if TYPE_CHECKING:
    from collections.abc import Collection

    from mypy_boto3_dynamodb import DynamoDBClient


def keys_table_spec(prefix: str) -> TableSpec:
    return TableSpec(f"{prefix}keys", "userId", "S")


def _unavailable(error: Exception) -> StoreUnavailableError:
    return StoreUnavailableError(f"The key table is unavailable: {error}")


class DynamoDBKeyStore:
    def __init__(self, client: DynamoDBClient, prefix: str) -> None:
        self.client = client
        self.table = keys_table_spec(prefix).name
        try:
            ensure_tables(client, [keys_table_spec(prefix)])
        except (ClientError, BotoCoreError, TableNotReadyError) as error:
            raise _unavailable(error) from error

    def create(self, user_id: str, stored_key: bytes) -> bytes | None:
        try:
            self.client.put_item(
                TableName=self.table,
                Item={"userId": {"S": user_id}, "key": {"B": stored_key}},
                # Why: a user's key is made once. A concurrent first seal must not
                # replace the key another already sealed with, and an erased user's
                # tombstone must never get a key again.
                ConditionExpression="attribute_not_exists(userId)",
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise _unavailable(error) from error
        except BotoCoreError as error:
            raise _unavailable(error) from error
        else:
            return stored_key
        return self.get(user_id)

    def get(self, user_id: str) -> bytes | None:
        try:
            response = self.client.get_item(
                TableName=self.table,
                Key={"userId": {"S": user_id}},
                # Decides whether a name opens: an erasure just made must be seen.
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as error:
            raise _unavailable(error) from error
        item = response.get("Item")
        if item is None or "key" not in item:
            return None
        return bytes(item["key"]["B"])

    def get_many(self, user_ids: Collection[str]) -> dict[str, bytes]:
        try:
            items = batch_get(
                self.client,
                self.table,
                [{"userId": {"S": user_id}} for user_id in dict.fromkeys(user_ids)],
                # Decides whether names open: an erasure just made must be seen.
                ConsistentRead=True,
            )
        except PersistenceError as error:
            raise _unavailable(error) from error
        return {item["userId"]["S"]: bytes(item["key"]["B"]) for item in items if "key" in item}

    def destroy(self, user_id: str) -> None:
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"userId": {"S": user_id}},
                # No condition: destroying is idempotent, and a user without a row
                # gets a tombstone. The first erasure's time is kept.
                UpdateExpression="REMOVE #k SET erasedAt = if_not_exists(erasedAt, :now)",
                ExpressionAttributeNames={"#k": "key"},
                ExpressionAttributeValues={":now": {"N": f"{time.time():.3f}"}},
            )
        except (ClientError, BotoCoreError) as error:
            raise _unavailable(error) from error

    def close(self) -> None:
        """The client is the read model's; nothing to release here."""
