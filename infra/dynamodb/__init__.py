"""eventsourcing persistence module for Amazon DynamoDB (boto3 low-level client).

Select it with ``PERSISTENCE_MODULE=infra.dynamodb`` (eventsourcing's
``InfrastructureFactory.construct`` imports this module and uses its only
factory class, :class:`DynamoDBFactory`, also exported as ``Factory``).
Configuration is read from the environment: see :class:`DynamoDBFactory`.

Table design
============

Attribute names and item shapes: :mod:`infra.dynamodb.layout`.

``<app>_events``: one item per stream a commit touches (``<app>_snapshots``,
    and events appended before packing: one per event).
    pk ``oid`` (S, originator id), sk ``ver`` (N, the stream's first version
    in the commit); ``topic`` (S), ``state`` (B) of that event, ``e`` the
    stream's further events of the commit (:mod:`infra.dynamodb.packing`).
    An aggregate's events are one item collection, so ``select_events`` is a
    single ConsistentRead Query (gt/lte become key conditions, plus the item
    holding ``gt + 1`` when it is keyed below it; desc is
    ScanIndexForward=False, limit is Limit plus paging), its items expanded.
    The application recorder's events table has a DynamoDB Stream of new
    images, and links the items of each commit: the first (lead) item carries
    the manifest ``m`` (every event's key, in append order), the others ``l``
    (the lead's key).

``<app>_notifications``: the index, written by the stream indexer only.
    pk ``p`` (S), sk ``id`` (N): the notification log as pages of references
    (``p = "page"``, :mod:`infra.dynamodb.pages`) and shard checkpoints
    (``p = "k#<shard>"``); from deployments before pages, copies
    (``p = "log"``), their head (``p = "$head"``) and commit markers
    (``p = "c#<oid>"``), still read.

``<app>_tracking``: pk ``app`` (S, upstream application name), ``nid`` (N):
    one item per upstream application holding the highest processed id.

Appending (``insert_events``)
=============================

One TransactWriteItems (all or nothing) with a Put of each item on
``attribute_not_exists(oid)`` (stream version uniqueness: exact because every
writer keys its item by the version after the last one it read, see
:mod:`infra.dynamodb.packing`), plus the read-table
rows of the append (``inline``) and, for the process recorder, the tracking
item (on condition that the stored position is absent or lower); a single
item with nothing else is one conditional PutItem. Nothing else: no item is
shared by every append, so appends to different streams never contend. A
failed event or tracking condition raises IntegrityError (nothing was
written); transient cancellations (TransactionConflict, throttling) are retried
with jittered backoff, a bounded number of times (then
:class:`~infra.dynamodb.errors.AppendContentionError`). ``insert_events``
returns None: notification ids are assigned by the indexer.

Limits are checked before anything is sent: a transaction holds at most 100
items and 4 MB and an item at most 400 KB, so at most 100 events per call
(the indexer places a commit in one page of references);
:class:`~infra.dynamodb.errors.TooManyEventsError`, ``EventTooLargeError``
(item estimated over 350 KB) and ``TransactionTooLargeError`` (all DataError)
refuse the call whole.

The notification log
====================

:mod:`infra.dynamodb.indexer` reads the events table's stream and writes the
log: dense ids, consistent with every stream's order, each commit contiguous
and indexed exactly once (see its docstring and the README for the argument).
``select_notifications`` first reads the head (the end of the last page, a
ConsistentRead Query) and reads ids up to it only: every page up to the head
is written. It checks that the pages it read tile the range (else it reads
again, then refuses the gap), then fetches the events they reference
(:mod:`infra.dynamodb.feed`), so it returns a gap-free prefix of the log or
nothing. Subscriptions poll the head and then read the same way. The log lags the appends by the
indexer's delay; :meth:`DynamoDBApplicationRecorder.wait_until_indexed` drains
the stream in this process.
"""

from infra.dynamodb.datastore import DynamoDBDatastore, TableSpec, make_client
from infra.dynamodb.errors import (
    AppendContentionError,
    DynamoDBLimitError,
    EventTooLargeError,
    NotificationLogCorruptedError,
    TooManyEventsError,
    TransactionTooLargeError,
)
from infra.dynamodb.event_store import DynamoDBAggregateRecorder
from infra.dynamodb.factory import DynamoDBFactory
from infra.dynamodb.recorders import DynamoDBApplicationRecorder
from infra.dynamodb.subscription import DynamoDBSubscription
from infra.dynamodb.tracking import DynamoDBProcessRecorder, DynamoDBTrackingRecorder

Factory = DynamoDBFactory

__all__ = [
    "AppendContentionError",
    "DynamoDBAggregateRecorder",
    "DynamoDBApplicationRecorder",
    "DynamoDBDatastore",
    "DynamoDBFactory",
    "DynamoDBLimitError",
    "DynamoDBProcessRecorder",
    "DynamoDBSubscription",
    "DynamoDBTrackingRecorder",
    "EventTooLargeError",
    "Factory",
    "NotificationLogCorruptedError",
    "TableSpec",
    "TooManyEventsError",
    "TransactionTooLargeError",
    "make_client",
]
