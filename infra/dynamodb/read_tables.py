"""The read tables on DynamoDB: Users, Events, Registrations, and the projector's state.

The package's read-table modules, by responsibility:

- ``read_schema.py``: the tables, their keys and GSIs, and row mapping;
- ``live_pointer.py``: which generation (blue or green) is live;
- ``read_changes.py``: the fold's row changes as transaction items;
- ``read_queries.py``: what the API reads;
- this module: the read model (``DynamoDBReadModel``): its tables, and
  catch-up's exactly-once commits.

Exactly once: a batch of row changes and the new tracking position commit in
one ``TransactWriteItems`` whose tracking update is conditional on the
position the batch started from. A transaction holds at most 100 items and
never two operations on one item, so the writer merges every change to one
item into one operation and commits a batch in chunks of whole events, each
chunk advancing the position; a crash between chunks resumes after the last.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from botocore.exceptions import BotoCoreError, ClientError

from domain.errors import StoreUnavailableError
from infra.dynamodb.live_pointer import LivePointer
from infra.dynamodb.read_changes import ROWS_PER_CHANGE, ReadTableChanges
from infra.dynamodb.read_queries import ReadQueries
from infra.dynamodb.read_schema import (
    EVENTS_GSI,
    GENERATIONS,
    ORDER_GSI,
    POSITION_KEY,
    TableSet,
    plain,
    read_table_specs,
    table_set,
    unavailable,
)
from infra.dynamodb.tables import TableNotReadyError, TableSpec, ensure_tables
from projections.ports import Commit

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

__all__ = [
    "EVENTS_GSI",
    "GENERATIONS",
    "MAX_ITEMS_PER_CHUNK",
    "ORDER_GSI",
    "POSITION_KEY",
    "DynamoDBReadModel",
    "LivePointer",
    "ReadTableChanges",
    "TableSet",
    "ensure_read_tables",
    "plain",
    "read_table_specs",
    "table_set",
    "unavailable",
]

logger = logging.getLogger(__name__)

# A catch-up chunk holds whole commits of at most this many row changes, plus
# the tracking item: within DynamoDB's 100 items per transaction. One commit
# (an append) never changes more rows than its own transaction held.
MAX_ITEMS_PER_CHUNK = 98
# Rounds of a fill's chunk finding rows ahead of the log before giving up.
MAX_SKIP_ROUNDS = 10


class _RowsAheadError(Exception):
    """Internal: a fill's gatherings rows (stream, eventId) already hold more of
    their stream than the chunk expected (see ``_commit_chunk``)."""

    def __init__(self, rows: list[tuple[UUID, str]]) -> None:
        super().__init__(str(rows))
        self.rows = rows


def ensure_read_tables(client: DynamoDBClient, specs: Sequence[TableSpec]) -> None:
    """``tables.ensure_tables``, its errors named as the read tables' own."""
    try:
        ensure_tables(client, specs)
    except (ClientError, BotoCoreError, TableNotReadyError) as error:
        raise unavailable(error) from error


def warn_of_earlier_tables(client: DynamoDBClient, prefix: str) -> None:
    """Logs each read table of the earlier layout (the gatherings' table was
    called ``events``, beside the event store's ``<app>_events``). DynamoDB
    cannot rename a table: one ``regsvc rebuild`` fills the renamed tables from
    the log, after which the earlier ones are no longer read and may be deleted."""
    for generation in GENERATIONS:
        names = table_set(prefix, generation)
        earlier = names.gatherings.removesuffix("gatherings") + "events"
        try:
            client.describe_table(TableName=earlier)
        except ClientError:
            continue  # absent (or not ours to describe): nothing to say
        logger.warning(
            "read table %s is of the earlier layout and no longer read: run "
            "`regsvc rebuild` once to fill %s from the log, then delete it",
            earlier,
            names.gatherings,
        )


class DynamoDBReadModel(ReadQueries):
    """The read tables on DynamoDB (real AWS or DynamoDB Local)."""

    local = False  # every query is a round trip: see ReadModel.local

    def __init__(
        self,
        client: DynamoDBClient,
        prefix: str,
        *,
        create_tables: bool = True,
        generation: str | None = None,
    ) -> None:
        """``generation`` binds the model to one set of tables (a rebuild's);
        without it, the model follows the live pointer."""
        self.client = client
        self.prefix = prefix
        self.generation = generation
        self.pointer = LivePointer(client, table_set(prefix, "blue").state)
        self._streams: dict[str, str] = {}
        self._streams_lock = threading.Lock()
        if create_tables:
            # Blue holds the live pointer and is live until a first rebuild;
            # a rebuild creates green when it first needs it (the CDK stack
            # defines both).
            ensure_read_tables(client, read_table_specs(prefix, ("blue",)))
            warn_of_earlier_tables(client, prefix)

    def tables(self) -> TableSet:
        """The tables read: the bound generation's, or the live one's."""
        return table_set(self.prefix, self.generation or self.pointer.live())

    def tables_for_append(self) -> TableSet:
        """The tables an append folds into (waits while a switch is fenced)."""
        return table_set(self.prefix, self.generation or self.pointer.for_append())

    def close(self) -> None:
        self.client.close()

    # -- tracking and writes -------------------------------------------------

    def log_position(self) -> int | None:
        """None while the tables are live (every append folds into them inline);
        during a rebuild, the notification id the rebuild has reached."""
        item = self._get(self.state_table, {"pk": {"S": POSITION_KEY}})
        return int(item["position"]) if item else None

    def go_live(self, log_position: int) -> None:
        """Ends a rebuild that reached the log's head: appends fold inline again."""
        try:
            self.client.delete_item(
                TableName=self.state_table,
                Key={"pk": {"S": POSITION_KEY}},
                # Only the rebuild that got there ends it.
                ConditionExpression="#p = :p",
                ExpressionAttributeNames={"#p": "position"},
                ExpressionAttributeValues={":p": {"N": str(log_position)}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise unavailable(error) from error
        except BotoCoreError as error:
            raise unavailable(error) from error

    def event_id_for(self, stream_id: UUID) -> str:
        with self._streams_lock:
            found = self._streams.get(stream_id.hex)
        if found is None:
            item = self._get(self.state_table, {"pk": {"S": f"stream#{stream_id.hex}"}})
            if item is None:
                msg = f"No gathering is known for stream {stream_id}"
                raise LookupError(msg)
            found = str(item["eventId"])
            with self._streams_lock:
                self._streams[stream_id.hex] = found
        return found

    def apply(
        self,
        expected: int,
        commits: Sequence[Commit],
        new_log_position: int,
        *,
        lease_owner: str | None = None,
    ) -> bool:
        """``lease_owner``: on a rebuild's tables, the holder of its lease."""
        guarded = lease_owner is not None
        writer = ReadTableChanges(self, guarded=guarded)
        chunk: list[Commit] = []
        committed_up_to = expected
        for n, commit in enumerate(commits):
            # Cut only between commits, so readers never see half of a command;
            # a chunk ends before it could pass DynamoDB's 100 items (the fold
            # changes at most ROWS_PER_CHANGE rows per domain event).
            bound = writer.size() + ROWS_PER_CHANGE * len(commit)
            if n and writer.size() and bound > MAX_ITEMS_PER_CHUNK:
                last = commits[n - 1][-1].log_position
                if not self._commit_chunk(writer, chunk, committed_up_to, last, lease_owner):
                    return False
                committed_up_to = last
                writer = ReadTableChanges(self, guarded=guarded)
                chunk = []
            chunk.append(commit)
            for change in commit:
                change.write(writer)
        return self._commit_chunk(writer, chunk, committed_up_to, new_log_position, lease_owner)

    def _commit_chunk(
        self,
        writer: ReadTableChanges,
        chunk: Sequence[Commit],
        expected: int,
        log_position: int,
        lease_owner: str | None,
    ) -> bool:
        """Commits ``writer`` (``chunk`` folded). A rebuild's fill conditions each
        gatherings row on its version (``read_changes.py``): an append built for
        these tables when they were live before may land while they are being
        filled again, once the fill passed its stream's previous version; its
        rows are then here already and must not be applied twice. A row found
        ahead is read and the chunk folded again without what it holds."""
        skip: dict[UUID, int] = {}
        for _ in range(MAX_SKIP_ROUNDS):
            try:
                return self._commit(writer, expected, log_position, lease_owner)
            except _RowsAheadError as ahead:
                for stream, event_id in ahead.rows:
                    skip[stream] = self._held(stream, event_id)
            writer = ReadTableChanges(self, guarded=writer.guarded, skip=skip)
            for commit in chunk:
                for change in commit:
                    change.write(writer)
        msg = "Rows of the tables being rebuilt kept moving ahead of the log"
        raise StoreUnavailableError(msg)

    def _held(self, stream: UUID, event_id: str) -> int:
        """The version of ``stream`` its rows here hold (a deleted gathering's:
        the version that deleted it)."""
        row = self._get(self.gatherings_table, {"eventId": {"S": event_id}})
        if row is not None:
            return int(row.get("v", 0))
        name = self._get(self.state_table, {"pk": {"S": f"stream#{stream.hex}"}})
        return int(name.get("deleted", 0)) if name else 0

    def _commit(
        self, writer: ReadTableChanges, expected: int, log_position: int, lease_owner: str | None
    ) -> bool:
        labelled = list(writer.labelled())
        items = [item for item, _ in labelled]
        tracking: TransactWriteItemTypeDef = {
            "Update": {
                "TableName": self.state_table,
                "Key": {"pk": {"S": POSITION_KEY}},
                "UpdateExpression": "SET #p = :new",
                # Exactly once: the batch applies only on top of the position
                # it was read after (a rebuild started by ``reset``); a
                # concurrent projector that got there first makes this
                # transaction fail as a whole.
                "ConditionExpression": "#p = :expected",
                "ExpressionAttributeNames": {"#p": "position"},
                "ExpressionAttributeValues": {
                    ":new": {"N": str(log_position)},
                    ":expected": {"N": str(expected)},
                },
            }
        }
        if lease_owner is not None:
            update: Any = tracking["Update"]
            # A rebuild's batch: only while its process holds the lease, and
            # renewing it (another process takes over a lapsed lease).
            update["UpdateExpression"] += ", #h = :now"
            update["ConditionExpression"] += " AND #o = :owner"
            update["ExpressionAttributeNames"] |= {"#h": "heartbeat", "#o": "owner"}
            update["ExpressionAttributeValues"] |= {
                ":now": {"N": repr(time.time())},
                ":owner": {"S": lease_owner},
            }
        try:
            self.client.transact_write_items(TransactItems=[*items, tracking])
        except ClientError as error:
            reasons = error.response.get("CancellationReasons", [])
            if reasons and reasons[-1].get("Code") == "ConditionalCheckFailed":
                return False
            ahead = [
                (stream, event_id)
                for (_, stream), reason in zip(labelled, reasons, strict=False)
                if stream and reason.get("Code") == "ConditionalCheckFailed"
                for event_id, (row_stream, _, _) in writer.versions.items()
                if row_stream.hex == stream
            ]
            if ahead:
                raise _RowsAheadError([(UUID(hex=s), e) for s, e in ahead]) from error
            raise unavailable(error) from error
        except BotoCoreError as error:
            raise unavailable(error) from error
        with self._streams_lock:
            self._streams.update(writer.streams)
        return True

    def reset(self) -> None:
        """Empties the live tables in place and restarts their catch-up at position 0
        (the fold's tests; admins rebuild with ``projections.rebuild.Rebuilder``,
        which never empties what the API serves). Appends keep folding inline
        meanwhile, so nothing may write while this runs."""
        self._put_position(0)
        self.empty()

    def empty(self) -> None:
        """Deletes every row and stream name (not the tracking or pointer items)."""
        for table, keys in (
            (self.users_table, ("userId",)),
            (self.gatherings_table, ("eventId",)),
            (self.registrations_table, ("userId", "eventId")),
        ):
            kwargs: dict[str, Any] = {"TableName": table, "ProjectionExpression": ", ".join(keys)}
            while True:
                page = self.client.scan(**kwargs)
                for start in range(0, len(page["Items"]), 25):
                    batch = page["Items"][start : start + 25]
                    requests: Any = [{"DeleteRequest": {"Key": item}} for item in batch]
                    pending: Any = {table: requests}
                    while pending:
                        response = self.client.batch_write_item(RequestItems=pending)
                        pending = response.get("UnprocessedItems")
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        with self._streams_lock:
            self._streams.clear()
        self._delete_stream_names()

    def _put_position(self, log_position: int) -> None:
        try:
            self.client.put_item(
                TableName=self.state_table,
                Item={"pk": {"S": POSITION_KEY}, "position": {"N": str(log_position)}},
            )
        except (ClientError, BotoCoreError) as error:
            raise unavailable(error) from error

    def _delete_stream_names(self) -> None:
        kwargs: dict[str, Any] = {"TableName": self.state_table, "ProjectionExpression": "pk"}
        while True:
            page = self.client.scan(**kwargs)
            for item in page["Items"]:
                if item["pk"]["S"].startswith("stream#"):
                    self.client.delete_item(TableName=self.state_table, Key={"pk": item["pk"]})
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
