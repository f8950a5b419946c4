"""What the production stack defines, in plain Python: table designs and IAM actions.

Kept apart from :mod:`infra.cdk.stack` so that it imports no CDK: the tests on
DynamoDB Local compare the DynamoDB calls the code really makes, table by
table, with the actions granted here, without starting jsii.

Each role gets, per table, the actions its code calls and nothing else. A
transaction (TransactWriteItems) is authorised per contained item, so it
appears here as the actions of its items (Put -> PutItem, Update ->
UpdateItem); ``dynamodb:TransactWriteItems`` is not an IAM action.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

#: Name of the eventsourcing application (``infra.service``), lower-cased by
#: the DynamoDB factory into the event-store table names.
APPLICATION_NAME = "Registrations"

KeyType = Literal["S", "N", "B"]


#: The IAM action that authorises each kind of item of a TransactWriteItems.
TRANSACT_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
#: Every action that writes an item.
WRITE_ACTIONS = frozenset(
    {*TRANSACT_ITEM_ACTIONS.values(), "dynamodb:BatchWriteItem", "dynamodb:DeleteItem"}
)


@dataclass(frozen=True)
class IndexDesign:
    """A global secondary index: its keys and what it projects (``INCLUDE``: the
    keys plus ``attributes``)."""

    name: str
    partition_key: tuple[str, KeyType]
    sort_key: tuple[str, KeyType]
    projection: Literal["ALL", "INCLUDE"] = "ALL"
    attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableDesign:
    """Name (without the prefix), keys, GSIs and stream of one table.

    ``stream``: the table has a DynamoDB Stream of new images.
    ``retired_indexes``: GSIs an earlier version defined, kept only while a
    deployment migrates (the stack's ``keepRetiredIndexes`` context): a deployed
    GSI cannot change its keys or projection in place, and CloudFormation
    creates or deletes one GSI per table per update.
    """

    construct_id: str
    suffix: str
    partition_key: tuple[str, KeyType]
    sort_key: tuple[str, KeyType] | None = None
    indexes: tuple[IndexDesign, ...] = ()
    stream: bool = False
    ttl_attribute: str | None = None
    retired_indexes: tuple[IndexDesign, ...] = ()

    def table_name(self, prefix: str) -> str:
        return f"{prefix}{self.suffix}"


_APP = APPLICATION_NAME.lower()

#: infra/dynamodb/recorders.py and layout.py: events keyed by (oid S, ver N),
#: with a stream of new images that the indexer reads; snapshots alike without
#: a stream; the index (the notification log, its head, commit markers and
#: shard checkpoints) keyed by (p S, id N).
EVENTS_TABLE = TableDesign(
    "StoredEventsTable", f"{_APP}_events", ("oid", "S"), ("ver", "N"), stream=True
)
SNAPSHOTS_TABLE = TableDesign("SnapshotsTable", f"{_APP}_snapshots", ("oid", "S"), ("ver", "N"))
INDEX_TABLE = TableDesign("NotificationsTable", f"{_APP}_notifications", ("p", "S"), ("id", "N"))
EVENT_STORE_TABLES: tuple[TableDesign, ...] = (EVENTS_TABLE, SNAPSHOTS_TABLE, INDEX_TABLE)

#: The event listing (``GET /events``): keys and ``status`` only, so that the
#: count updates of registrations never write it (infra/dynamodb/read_schema.py).
EVENTS_IN_ID_ORDER_INDEX = "listing-eventId-status-index"
#: Its earlier definition (projection ALL), replaced by the one above.
RETIRED_EVENTS_IN_ID_ORDER_INDEX = "listing-eventId-index"
REGISTRATIONS_IN_EVENT_ORDER_INDEX = "eventId-order-index"

#: infra/dynamodb/read_schema.py (``read_table_specs``): every key is a string.
#: Blue's set; a rebuild fills the other set, green (``green-`` after the
#: prefix), and the live pointer in blue's projection_state says which is live.
BLUE_READ_TABLES: tuple[TableDesign, ...] = (
    TableDesign("UsersTable", "users", ("userId", "S")),
    TableDesign(
        "GatheringsTable",
        "gatherings",
        ("eventId", "S"),
        indexes=(
            IndexDesign(
                EVENTS_IN_ID_ORDER_INDEX,
                ("listing", "S"),
                ("eventId", "S"),
                "INCLUDE",
                ("status",),
            ),
        ),
        retired_indexes=(
            IndexDesign(RETIRED_EVENTS_IN_ID_ORDER_INDEX, ("listing", "S"), ("eventId", "S")),
        ),
    ),
    TableDesign(
        "RegistrationsTable",
        "registrations",
        ("userId", "S"),
        ("eventId", "S"),
        indexes=(
            IndexDesign(REGISTRATIONS_IN_EVENT_ORDER_INDEX, ("eventId", "S"), ("eventOrder", "S")),
        ),
    ),
    TableDesign("ProjectionStateTable", "projection_state", ("pk", "S")),
)

GREEN_READ_TABLES: tuple[TableDesign, ...] = tuple(
    replace(design, construct_id=f"Green{design.construct_id}", suffix=f"green-{design.suffix}")
    for design in BLUE_READ_TABLES
)
READ_TABLES: tuple[TableDesign, ...] = BLUE_READ_TABLES + GREEN_READ_TABLES

#: infra/dynamodb/idempotency.py: Idempotency-Key records, deleted by DynamoDB's
#: time to live once expired (reads also treat them as absent).
IDEMPOTENCY_TABLE = TableDesign(
    "IdempotencyTable",
    "idempotency",
    ("scope", "S"),
    ("key", "S"),
    ttl_attribute="expiresAt",
)

#: infra/dynamodb/keys.py: each user's data key (crypto-shredding: erasure
#: removes it). Not rebuildable: losing it loses every name, so it is retained
#: like the event store; but without point-in-time recovery, whose backups
#: would keep an erased user's key for up to 35 days (see the README).
KEYS_TABLE = TableDesign("KeysTable", "keys", ("userId", "S"))

# --- the API Lambda -----------------------------------------------------------

#: The API on the events and snapshots tables (infra/dynamodb/recorders.py):
#: appends are a conditional PutItem (one event) or a transaction of Put items
#: (a commit, with its read-table changes); streams are read with Query, and
#: BatchGetItem checks that the streams a refusal read have not moved on.
#: DescribeTable: the start-up check that the tables exist (and that the events
#: table has its stream). No CreateTable or UpdateTable: the stack creates the
#: tables with their stream, and the code only creates a table, or enables a
#: stream, that DescribeTable reports missing. No UpdateItem: appends no longer
#: move a shared counter.
API_EVENT_TABLE_ACTIONS: tuple[str, ...] = (
    "dynamodb:BatchGetItem",
    "dynamodb:DescribeTable",
    "dynamodb:PutItem",
    "dynamodb:Query",
)

#: The API on the index table: read only. The notification log is written by
#: the indexer Lambda alone; the API reads its head (GetItem), where a commit
#: went (its marker, GetItem; the markers of a history page, BatchGetItem) and
#: the log itself (Query).
API_INDEX_TABLE_ACTIONS: tuple[str, ...] = (
    "dynamodb:BatchGetItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:Query",
)

#: The API on the read tables (infra/dynamodb/read_tables.py): appends carry
#: their read-table changes as Put, Update and Delete items of the same
#: transaction; events are listed by querying a GSI, titles fetched with
#: BatchGetItem; ``GET /admin/projections/{name}/check`` scans every table
#: (read-only). BatchWriteItem (emptying a generation) is only used by rebuilds
#: (``regsvc rebuild``, run by an operator with admin credentials, never by the
#: Lambda), so it is not granted; nor is CreateTable (see above).
READ_MODEL_ACTIONS: tuple[str, ...] = (
    "dynamodb:DescribeTable",
    "dynamodb:Scan",
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
)

#: The API on the idempotency table: a conditional PutItem claims a key, GetItem
#: reads a claim found taken, UpdateItem keeps the response, DeleteItem
#: releases a claim whose response is not kept (or, at an erasure, a kept
#: answer showing the user's name, found with a Scan).
IDEMPOTENCY_ACTIONS: tuple[str, ...] = (
    "dynamodb:DeleteItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Scan",
    "dynamodb:UpdateItem",
)

#: The API on the key table: a conditional PutItem makes a user's key, GetItem
#: reads it (BatchGetItem: the keys of a page of audit entries at once),
#: UpdateItem destroys it (an erasure).
KEY_TABLE_ACTIONS: tuple[str, ...] = (
    "dynamodb:BatchGetItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)

#: The API on the read tables' GSIs (events, registrations): only queries.
READ_MODEL_INDEX_ACTIONS: tuple[str, ...] = ("dynamodb:Query",)

# --- the indexer Lambda ---------------------------------------------------------

#: What the event source mapping calls, with the indexer's role, on the events
#: table's stream. ``dynamodb:ListStreams`` is not granted: IAM authorises it
#: only on "*" (it has no resource-level permissions), and the mapping names
#: its stream, so it never lists streams.
INDEXER_STREAM_ACTIONS: tuple[str, ...] = (
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
)

#: The indexer (``StreamIndexer``, infra/dynamodb/indexer.py) on the events
#: table: it reads, with ConsistentRead, the rest of a commit whose records it
#: holds (BatchGetItem) and a stream's previous event, to index earlier commits
#: first (Query). It never writes events.
INDEXER_EVENT_TABLE_ACTIONS: tuple[str, ...] = (
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
)

#: The indexer on the index table: it reads its pages (Query: the last one,
#: the ones above the head it knows, older ones to check a commit), the head
#: and markers older deployments wrote (GetItem), and puts each page (a
#: conditional PutItem). No DescribeTable: the Lambda creates nothing; no
#: DeleteItem or UpdateItem: the log is append-only. The in-process poller's
#: shard checkpoints (UpdateItem on ``k#`` items) are not written in
#: production: the event source mapping keeps its own position in each shard.
INDEXER_INDEX_TABLE_ACTIONS: tuple[str, ...] = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
)

#: The indexer on the read tables (both generations): after indexing a batch it
#: reads the live pointer (GetItem), and repairs the rows of commits a
#: rebuild's switch left in the replaced generation (infra/dynamodb/repair.py):
#: it reads a stream's rows (GetItem) and writes them in transactions of Put,
#: Update and Delete items.
INDEXER_READ_TABLE_ACTIONS: tuple[str, ...] = (
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)
