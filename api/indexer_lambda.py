"""AWS Lambda entry point of the stream indexer (``api.indexer_lambda.handler``).

In production an event source mapping on the events table's DynamoDB Stream
(``infra/cdk/stack.py``) invokes this function with one shard's records at a
time, in stream order, as ``event["Records"]``. The handler hands them to
the DynamoDB kit's stream indexer (``StreamIndexer.index_records``), which
gives each event its position in the notification log (the index table)
exactly once, and logs one JSON line per batch: how many records came, how
many events were newly indexed, the log's head.

On failure the handler raises, and the mapping retries the batch (forever,
splitting it in halves: see the stack). Why raise rather than return
``{"batchItemFailures": [...]}`` from the first record:

- there is nothing finer to report. ``index_records`` writes whole commits
  (and the earlier commits they depend on) in pages; when it fails,
  the reason (throttling, contention, DynamoDB unavailable, a corrupt table)
  belongs to the batch, not to one record, and re-running the whole batch is
  always safe and cheap: commits already indexed are recognised by their
  pages (in memory in a warm environment) and never get a second position;
- a raised error is a failed invocation: it counts in the function's
  ``Errors`` metric and Lambda logs it, so a stuck shard shows; a reported
  partial failure is a successful invocation and would hide it.

The indexer is built once per execution environment (cold start) from the
same settings and wiring as the API (``infra.wiring.build_stream_indexer``,
which asks the store's kit), and keeps what it learnt (the head, the pages
it read) between invocations.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from infra.kit import RecordIndexer
from infra.logs import configure_logging, flush_logs
from infra.settings import Settings
from infra.wiring import build_stream_indexer

logger = logging.getLogger(__name__)

__all__ = ["build_stream_indexer", "handler"]


@cache
def _indexer() -> RecordIndexer:
    settings = Settings()
    configure_logging(settings.log_level)
    return build_stream_indexer(settings)


def _batch(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What identifies a batch in the log: its size, first and last records."""
    sequences = [r.get("dynamodb", {}).get("SequenceNumber") for r in records]
    return {
        "records": len(records),
        "firstSequenceNumber": sequences[0] if sequences else None,
        "lastSequenceNumber": sequences[-1] if sequences else None,
        "eventSourceARN": records[0].get("eventSourceARN") if records else None,
    }


def handler(event: Mapping[str, Any], context: object = None) -> None:
    """Indexes one batch of DynamoDB Streams records; raises when it cannot
    (the event source mapping then retries the batch)."""
    try:
        _index(event)
    finally:
        flush_logs()  # the process may be frozen once this returns


def _index(event: Mapping[str, Any]) -> None:
    records: list[Mapping[str, Any]] = list(event.get("Records") or [])
    indexer = _indexer()
    batch = _batch(records)
    started = time.perf_counter()
    try:
        indexed = indexer.index_records(records)
    except Exception:
        logger.exception(
            "Indexing a batch of stream records failed; the event source mapping retries it",
            extra=batch,
        )
        raise
    logger.info(
        "Indexed a batch of stream records",
        extra={
            **batch,
            "indexedEvents": indexed,
            "head": indexer.head,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
