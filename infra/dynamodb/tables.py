"""Table definitions and the one path that creates DynamoDB tables.

Every table the service uses (the event store's, the read tables, the
idempotency table) is described by a :class:`TableSpec` and created by
:func:`ensure_tables`: created when missing (on-demand billing), waited for
until it and its GSIs are ACTIVE, brought up to its spec when it exists (a GSI
the spec adds is created, a retired one deleted, a missing stream enabled) and,
for tables it created, its time to live turned on.

Errors are botocore's (``ClientError``, ``BotoCoreError``) and
:class:`TableNotReadyError`: each caller names them at its own boundary (the
event store as eventsourcing's persistence errors, the read tables as
``StoreUnavailableError``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.literals import ScalarAttributeTypeType

logger = logging.getLogger(__name__)

Projection = Literal["ALL", "KEYS_ONLY", "INCLUDE"]

#: How long a table (or an index being built) may take to become ACTIVE.
CREATE_TABLE_TIMEOUT_SECONDS = 300.0


class TableNotReadyError(Exception):
    """A table or one of its indexes did not become ACTIVE in time."""


@dataclass(frozen=True)
class IndexSpec:
    """A global secondary index: string keys, and what it projects.

    ``projection`` ``INCLUDE`` projects the keys plus ``attributes``. A write
    writes the index only when it changes one of the index's keys or projected
    attributes, so a narrow projection keeps frequent updates of other
    attributes off the index's partitions.
    """

    name: str
    pk: str
    sk: str
    projection: Projection = "ALL"
    attributes: tuple[str, ...] = ()

    def projected(self) -> frozenset[str] | None:
        """The attributes the index holds besides the keys (None: all of them)."""
        if self.projection == "ALL":
            return None
        return frozenset(self.attributes)

    def request(self) -> dict[str, Any]:
        projection: dict[str, Any] = {"ProjectionType": self.projection}
        if self.projection == "INCLUDE":
            projection["NonKeyAttributes"] = list(self.attributes)
        return {
            "IndexName": self.name,
            "KeySchema": [
                {"AttributeName": self.pk, "KeyType": "HASH"},
                {"AttributeName": self.sk, "KeyType": "RANGE"},
            ],
            "Projection": projection,
        }


@dataclass(frozen=True)
class TableSpec:
    """One table: a partition key, an optional sort key, its GSIs, stream and TTL."""

    name: str
    pk: str
    pk_type: ScalarAttributeTypeType
    sk: str | None = None
    sk_type: ScalarAttributeTypeType = "N"
    # A DynamoDB Stream of new item images (the events table's, which the
    # indexer reads); False: no stream.
    stream: bool = False
    indexes: tuple[IndexSpec, ...] = ()
    # The time-to-live attribute (N, epoch seconds), if any.
    ttl: str | None = None
    # Names of GSIs an earlier version defined: deleted once ``indexes`` are
    # ACTIVE (a deployed GSI's keys or projection cannot change in place).
    retired_indexes: tuple[str, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.pk,) if self.sk is None else (self.pk, self.sk)

    def attribute_definitions(self) -> list[dict[str, str]]:
        types: dict[str, str] = {self.pk: self.pk_type}
        if self.sk is not None:
            types[self.sk] = self.sk_type
        for index in self.indexes:
            types.setdefault(index.pk, "S")
            types.setdefault(index.sk, "S")
        return [{"AttributeName": name, "AttributeType": types[name]} for name in sorted(types)]

    def create_request(self) -> dict[str, Any]:
        request: dict[str, Any] = {
            "TableName": self.name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": self.attribute_definitions(),
            "KeySchema": [
                {"AttributeName": name, "KeyType": kind}
                for name, kind in zip(self.keys, ("HASH", "RANGE"), strict=False)
            ],
        }
        if self.indexes:
            request["GlobalSecondaryIndexes"] = [index.request() for index in self.indexes]
        if self.stream:
            request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
        return request


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _describe(client: DynamoDBClient, name: str) -> dict[str, Any] | None:
    try:
        table: Any = client.describe_table(TableName=name)["Table"]
    except ClientError as error:
        if _code(error) == "ResourceNotFoundException":
            return None
        raise
    return dict(table)


def _wait_until_active(client: DynamoDBClient, name: str, timeout: float) -> dict[str, Any]:
    """Waits until the table and every GSI are ACTIVE (not boto3's table_exists
    waiter: it sleeps 20 s between polls)."""
    deadline = time.monotonic() + timeout
    interval = 0.05
    while True:
        table = _describe(client, name)
        if (
            table is not None
            and table.get("TableStatus") == "ACTIVE"
            and all(
                index.get("IndexStatus") == "ACTIVE"
                for index in table.get("GlobalSecondaryIndexes", [])
            )
        ):
            return table
        if time.monotonic() > deadline:
            states = {
                i["IndexName"]: i.get("IndexStatus")
                for i in (table or {}).get("GlobalSecondaryIndexes", [])
            }
            msg = f"Table {name} is not ACTIVE after {timeout} s (indexes: {states})"
            raise TableNotReadyError(msg)
        time.sleep(interval)
        interval = min(interval * 2, 2.0)


def _create(client: DynamoDBClient, spec: TableSpec) -> bool:
    logger.info("creating table %s", spec.name)
    try:
        client.create_table(**spec.create_request())
    except ClientError as error:
        # Another process (or an earlier start) created it first: fine, we
        # only wait for it to be ACTIVE.
        if _code(error) != "ResourceInUseException":
            raise
        return False
    return True


def _update_indexes(
    client: DynamoDBClient, spec: TableSpec, table: dict[str, Any], timeout: float
) -> None:
    """Creates the spec's GSIs the table lacks, then deletes its retired ones
    (UpdateTable takes one GSI creation or deletion at a time).

    Retired GSIs are deleted only on a table this call migrated (it built a
    replacement): a table whose new GSIs exist already was brought up to date
    by whoever manages it, such as the CDK stack, which drops the retired ones
    itself (a deletion made here would leave its template out of step)."""
    present = {index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])}
    missing = [index for index in spec.indexes if index.name not in present]
    if not missing:
        return
    for index in missing:
        logger.warning("creating index %s of table %s", index.name, spec.name)
        update: Any = {
            "TableName": spec.name,
            "AttributeDefinitions": spec.attribute_definitions(),
            "GlobalSecondaryIndexUpdates": [{"Create": index.request()}],
        }
        client.update_table(**update)
        _wait_until_active(client, spec.name, timeout)
    for name in spec.retired_indexes:
        if name not in present:
            continue
        logger.warning("deleting retired index %s of table %s", name, spec.name)
        client.update_table(
            TableName=spec.name, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": name}}]
        )
        deadline = time.monotonic() + timeout
        while any(
            index["IndexName"] == name
            for index in (_describe(client, spec.name) or {}).get("GlobalSecondaryIndexes", [])
        ):
            if time.monotonic() > deadline:
                msg = f"Index {name} of table {spec.name} still exists after {timeout} s"
                raise TableNotReadyError(msg)
            time.sleep(0.1)


def _ensure_stream(client: DynamoDBClient, spec: TableSpec, table: dict[str, Any]) -> None:
    """Enables the table's stream of new images when it has none (a table made
    before the indexer existed)."""
    stream = table.get("StreamSpecification", {})
    if stream.get("StreamEnabled"):
        if stream.get("StreamViewType") not in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
            msg = f"Table {spec.name} has a stream without new images; the indexer needs them"
            raise TableNotReadyError(msg)
        return
    logger.warning("enabling the DynamoDB stream of table %s (new images)", spec.name)
    client.update_table(
        TableName=spec.name,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )


def ensure_tables(
    client: DynamoDBClient,
    specs: Sequence[TableSpec],
    *,
    timeout: float = CREATE_TABLE_TIMEOUT_SECONDS,
) -> None:
    """Creates the missing tables, waits until all are ACTIVE and brings existing
    ones up to their spec. Idempotent and safe to race: a concurrent creator's
    ResourceInUseException means "exists"."""
    created: set[str] = set()
    for spec in specs:
        if _describe(client, spec.name) is None and _create(client, spec):
            created.add(spec.name)
    for spec in specs:
        table = _wait_until_active(client, spec.name, timeout)
        if spec.name in created:
            if spec.ttl is not None:
                client.update_time_to_live(
                    TableName=spec.name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl},
                )
            continue
        # An existing table (created by the stack, an earlier start or an
        # earlier version of this code).
        _update_indexes(client, spec, table, timeout)
        if spec.stream:
            _ensure_stream(client, spec, table)
            _wait_until_active(client, spec.name, timeout)
