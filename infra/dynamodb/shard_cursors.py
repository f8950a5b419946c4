"""The events table's stream as its shards (``StreamShards``): which shards
exist and in what order to read them (a child only after its parent is done),
each shard's checkpoint in the index table (``p="k#<shard>"``) and its current
iterator, and the GetRecords errors a reader recovers from
(``ExpiredIteratorException``, ``TrimmedDataAccessException``, a shard gone).
The poller that reads them is ``infra/dynamodb/shards.py``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from eventsourcing.persistence import IntegrityError, OperationalError

from infra.dynamodb.errors import error_code, translate, translate_errors
from infra.dynamodb.layout import CHECKPOINT_DONE, CHECKPOINT_SEQUENCE, checkpoint_key, n_, s_

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

logger = logging.getLogger(__name__)

# Sequence numbers are decimal strings of 21 to 40 digits; zero-padded to this
# width they compare as strings in the same order as numbers.
SEQUENCE_WIDTH = 40
# GetRecords returns at most 1 MB; a page near it was cut by size, not by the tip.
PAGE_BYTES_NEAR_FULL = 900_000


@dataclass
class _Shard:
    shard_id: str
    parent: str | None


class StreamShards:
    """The stream's shards with their lineage, checkpoints and iterators.

    Checkpoints (the last indexed sequence number of each shard, and whether a
    closed shard is done) live in the index table, so a new reader resumes
    where the last one stopped.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        streams_client: DynamoDBStreamsClient,
        *,
        events_table: str,
        index_table: str,
        records_per_read: int,
        refresh_seconds: float,
        on_finish: Callable[[str], None] = lambda shard_id: None,
    ) -> None:
        self.client = client
        self.streams = streams_client
        self.events_table = events_table
        self.index_table = index_table
        self.records_per_read = records_per_read
        self.refresh_seconds = refresh_seconds
        self.on_finish = on_finish
        self._stream_arn: str | None = None
        self._shards: dict[str, _Shard] = {}
        self._read_at = float("-inf")
        self.iterators: dict[str, str] = {}
        self.checkpoints: dict[str, str | None] = {}  # shard -> last indexed sequence number
        self.done: set[str] = set()
        self._warned_parents: set[str] = set()
        self.trimmed = 0
        """Shards whose records expired from the stream before they were read."""
        self.changed = False
        """Shards opened or closed, or a read to renew, since the poller last reset it."""

    def forget(self, shard_id: str, *, checkpoint: bool = False) -> None:
        """Reads the shard from its checkpoint next time (re-read with ``checkpoint``)."""
        self.iterators.pop(shard_id, None)
        if checkpoint:
            self.checkpoints.pop(shard_id, None)

    def arn(self) -> str:
        if self._stream_arn is None:
            with translate_errors():
                table = self.client.describe_table(TableName=self.events_table)
            arn = table["Table"].get("LatestStreamArn")
            if not arn:
                msg = f"Table {self.events_table} has no stream to index"
                raise OperationalError(msg)
            self._stream_arn = arn
        return self._stream_arn

    def refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._read_at < self.refresh_seconds:
            return
        arn = self.arn()
        shards: dict[str, _Shard] = {}
        start: str | None = None
        with translate_errors():
            while True:
                if start is None:
                    response = self.streams.describe_stream(StreamArn=arn)
                else:
                    response = self.streams.describe_stream(
                        StreamArn=arn, ExclusiveStartShardId=start
                    )
                description = response["StreamDescription"]
                for shard in description.get("Shards", []):
                    shard_id = shard["ShardId"]
                    shards[shard_id] = _Shard(shard_id, shard.get("ParentShardId"))
                start = description.get("LastEvaluatedShardId")
                if not start:
                    break
        if set(shards) != set(self._shards):
            self.changed = True
        self._shards = shards
        self._read_at = now

    def readable(self) -> list[str]:
        """Shards not yet done whose parent is done (or gone), parents first,
        then by shard id: a child's records follow its parent's."""
        ordered: list[str] = []
        depth: dict[str, int] = {}

        def level(shard_id: str) -> int:
            if shard_id not in depth:
                parent = self._shards[shard_id].parent
                depth[shard_id] = 0
                depth[shard_id] = (
                    level(parent) + 1 if parent is not None and parent in self._shards else 0
                )
            return depth[shard_id]

        for shard_id in sorted(self._shards, key=lambda s: (level(s), s)):
            if self.is_done(shard_id):
                continue
            parent = self._shards[shard_id].parent
            if parent is not None and not self.is_done(parent):
                if parent in self._shards:
                    continue  # the parent's records come first
                if parent not in self._warned_parents:
                    self._warned_parents.add(parent)
                    logger.error(
                        "Parent shard left the stream before the indexer finished it: "
                        "records it held may be missing from the index (events of "
                        "streams written again are recovered as predecessors)",
                        extra={"shard": shard_id, "parent": parent},
                    )
            ordered.append(shard_id)
        return ordered

    def is_done(self, shard_id: str) -> bool:
        if shard_id in self.done:
            return True
        self.load_checkpoint(shard_id)
        return shard_id in self.done

    def load_checkpoint(self, shard_id: str) -> str | None:
        if shard_id in self.checkpoints:
            return self.checkpoints[shard_id]
        with translate_errors():
            response = self.client.get_item(
                TableName=self.index_table,
                Key=checkpoint_key(shard_id),
                # Where to resume: the latest checkpoint of any poller.
                ConsistentRead=True,
            )
        item = response.get("Item") or {}
        sequence = item["r"]["S"] if "r" in item else None
        if item.get(CHECKPOINT_DONE):
            self.done.add(shard_id)
        self.checkpoints[shard_id] = sequence
        return sequence

    def iterator(self, shard_id: str) -> str | None:
        iterator = self.iterators.get(shard_id)
        if iterator is not None:
            return iterator
        arn = self.arn()
        sequence = self.load_checkpoint(shard_id)
        try:
            if sequence is None:
                response = self.streams.get_shard_iterator(
                    StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )
            else:
                response = self.streams.get_shard_iterator(
                    StreamArn=arn,
                    ShardId=shard_id,
                    ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                    SequenceNumber=sequence,
                )
        except ClientError as e:
            code = error_code(e)
            if code == "TrimmedDataAccessException":
                self.trimmed += 1
                logger.error(
                    "The stream no longer holds records after this shard's checkpoint "
                    "(older than the 24 h retention): events written meanwhile may be "
                    "missing from the index; reading on from the oldest record left",
                    extra={"shard": shard_id, "checkpoint": sequence},
                )
                with translate_errors():
                    response = self.streams.get_shard_iterator(
                        StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                    )
            elif code == "ResourceNotFoundException":
                logger.warning("Shard is gone from the stream", extra={"shard": shard_id})
                self.refresh(force=True)
                return None
            else:
                raise translate(e) from e
        except BotoCoreError as e:
            raise translate(e) from e
        found = response.get("ShardIterator")
        if found is None:  # a closed shard with nothing after the checkpoint
            self.finish(shard_id)
            return None
        self.iterators[shard_id] = found
        return found

    def full(self, records: Sequence[Mapping[str, Any]]) -> bool:
        """Whether a page is as large as one GetRecords gives (``records_per_read``
        records, or about the 1 MB AWS caps a page at): more may be waiting."""
        size = sum(int(r.get("dynamodb", {}).get("SizeBytes", 0)) for r in records)
        return len(records) >= self.records_per_read or size >= PAGE_BYTES_NEAR_FULL

    def get_records(
        self, shard_id: str, iterator: str
    ) -> tuple[list[dict[str, Any]], str | None] | None:
        try:
            response = self.streams.get_records(ShardIterator=iterator, Limit=self.records_per_read)
        except ClientError as e:
            code = error_code(e)
            if code == "ExpiredIteratorException":
                logger.warning(
                    "Shard iterator expired; resuming from the checkpoint",
                    extra={"shard": shard_id},
                )
                self.iterators.pop(shard_id, None)
                self.changed = True
                return None
            if code == "TrimmedDataAccessException":
                self.iterators.pop(shard_id, None)
                self.checkpoints.pop(shard_id, None)
                self.changed = True
                return None  # the iterator is renewed (and the loss logged) next round
            if code == "ResourceNotFoundException":
                self.iterators.pop(shard_id, None)
                self.refresh(force=True)
                return None
            raise translate(e) from e
        except BotoCoreError as e:
            raise translate(e) from e
        records = [dict(r) for r in response.get("Records", [])]
        return records, response.get("NextShardIterator")

    def checkpoint(self, shard_id: str, sequence: str, *, done: bool = False) -> None:
        values: dict[str, AttributeValueTypeDef] = {
            ":q": s_(sequence.zfill(SEQUENCE_WIDTH)),
            ":r": s_(sequence),
        }
        update = "SET #q = :q, #r = :r"
        if done:
            update += ", #d = :d"
            values[":d"] = n_(1)
        try:
            with translate_errors():
                self.client.update_item(
                    TableName=self.index_table,
                    Key=checkpoint_key(shard_id),
                    UpdateExpression=update,
                    # WHY: a checkpoint only moves forward. Another poller may
                    # have indexed further; moving it back would only cost a
                    # longer re-read after a restart, but forward-only keeps
                    # "everything up to q is indexed" the one meaning of q.
                    ConditionExpression="attribute_not_exists(#q) OR #q <= :q",
                    ExpressionAttributeNames={"#q": CHECKPOINT_SEQUENCE, "#r": "r"}
                    | ({"#d": CHECKPOINT_DONE} if done else {}),
                    ExpressionAttributeValues=values,
                )
        except IntegrityError:
            return  # another poller checkpointed further: fine
        self.checkpoints[shard_id] = sequence

    def finish(self, shard_id: str) -> None:
        """A closed shard read to its end (and indexed): its children may start."""
        sequence = self.checkpoints.get(shard_id) or "0"
        self.checkpoint(shard_id, sequence, done=True)
        self.done.add(shard_id)
        self.iterators.pop(shard_id, None)
        self.on_finish(shard_id)  # a done shard is read no more: its lease lapses
        self.changed = True
        self._read_at = float("-inf")  # look for its children
        logger.info("Stream shard fully indexed", extra={"shard": shard_id})
