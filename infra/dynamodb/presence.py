"""Whether a store's tables are there at all, for ``regsvc``'s reading commands.

Only the command line asks (a mistyped ``DYNAMODB_TABLE_PREFIX`` must not pass
as an empty store); the API never does, so its roles are not granted
``ListTables``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infra.dynamodb.errors import translate_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def any_table_named(client: DynamoDBClient, prefix: str) -> bool:
    """Whether some table's name starts with ``prefix`` (ListTables, paged)."""
    request: dict[str, Any] = {}
    with translate_errors():
        while True:
            page = client.list_tables(**request)
            if any(name.startswith(prefix) for name in page.get("TableNames", [])):
                return True
            if "LastEvaluatedTableName" not in page:
                return False
            request["ExclusiveStartTableName"] = page["LastEvaluatedTableName"]
