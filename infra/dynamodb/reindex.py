"""``regsvc reindex``: index every commit of the events table that the index
lacks, for records the stream lost (its 24 h retention passed before they were
indexed, a parent shard left the stream first).

It scans the events table (ConsistentRead: it must see every committed append)
and hands each page of items to :meth:`StreamIndexer.index_records` as INSERT
records: commits already in the index are found there (above their ``h``, or
by their marker for commits older than pages) and skipped, the others are
indexed after their streams' earlier commits, as from the stream. So it is
idempotent, safe while the indexer runs (they race for the head like two
indexers), and a second run indexes nothing. An admin's job: the API's role is
not granted Scan on the events table.

Its memory holds the pages it reads (the window is unbounded for the run):
about 100 bytes per event of the log.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from infra.dynamodb.errors import translate_errors
from infra.dynamodb.indexer import StreamIndexer
from infra.dynamodb.layout import EVENT_PK, EVENT_SK
from infra.dynamodb.packing import event_count

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_dynamodb.type_defs import ScanInputTypeDef

    from infra.dynamodb.recorders import DynamoDBApplicationRecorder


def reindex(
    recorder: DynamoDBApplicationRecorder,
    on_progress: Callable[[int], None] | None = None,
    page_size: int = 500,
) -> tuple[int, int]:
    """Indexes what the index lacks; returns (events scanned, events newly indexed)."""
    indexer = StreamIndexer(
        recorder.client,
        recorder.events_table_name,
        recorder.notifications_table_name,
        window_events=2**62,
        window_seconds=math.inf,
    )
    scan: ScanInputTypeDef = {
        "TableName": recorder.events_table_name,
        "Limit": page_size,
        # Every committed append must be seen, or it would stay out of the index.
        "ConsistentRead": True,
    }
    scanned = indexed = 0
    while True:
        with translate_errors():
            response = recorder.client.scan(**scan)
        items = response.get("Items", [])
        records: list[dict[str, Any]] = [
            {
                "eventName": "INSERT",
                "dynamodb": {
                    "Keys": {EVENT_PK: item[EVENT_PK], EVENT_SK: item[EVENT_SK]},
                    "NewImage": item,
                },
            }
            for item in items
        ]
        indexed += indexer.index_records(records)
        scanned += sum(event_count(item) for item in items)
        if on_progress is not None:
            on_progress(scanned)
        last_key = response.get("LastEvaluatedKey")
        if not last_key:
            return scanned, indexed
        scan["ExclusiveStartKey"] = last_key
