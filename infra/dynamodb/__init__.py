"""eventsourcing persistence module for Amazon DynamoDB (boto3 low-level client).

Select it with ``PERSISTENCE_MODULE=infra.dynamodb`` (eventsourcing's
``InfrastructureFactory.construct`` imports this module and uses its only
factory class, :class:`DynamoDBFactory`, also exported as ``Factory``).
Configuration is read from the environment: see :class:`DynamoDBFactory`.

Table design
============

``<app>_events`` (and ``<app>_snapshots``): one item per stored event.
    pk ``oid`` (S, originator id), sk ``ver`` (N, originator version);
    ``topic`` (S), ``state`` (B), and ``nid`` (N, notification id) when written
    by an application recorder. An aggregate's events are one item collection,
    so ``select_events`` is a single ConsistentRead Query (gt/lte become key
    conditions, desc is ScanIndexForward=False, limit is Limit plus paging).

``<app>_notifications``: the application's notification log, plus its counter.
    pk ``p`` (S), sk ``id`` (N). Notification items have ``p = "log"`` and
    ``id`` = notification id, and carry a copy of ``oid``, ``ver``, ``topic``
    and ``state``, so ``select_notifications`` is one ConsistentRead Query in id
    order (FilterExpression on topic, paging through LastEvaluatedKey).
    The counter item is ``p = "$sequence", id = 0`` with ``last`` (N) = last
    assigned notification id.

``<app>_tracking``: pk ``app`` (S, upstream application name), ``nid`` (N):
    one item per upstream application holding the highest processed id.

Appending (``insert_events``)
=============================

1. ConsistentRead GetItem of the counter -> ``n`` (0 if absent).
2. One TransactWriteItems (all or nothing) with:
   - Update of the counter: ``SET last = n + k`` on condition ``last = n``;
   - per event, a Put of the event item on ``attribute_not_exists(oid)``
     (stream version uniqueness), and a Put of notification ``n + i``;
   - for the process recorder, a Put of the tracking item on condition that
     the stored position is absent or lower.
3. If cancelled: CancellationReasons (one per item) tell why. A failed event
   or tracking condition raises IntegrityError (nothing was written). A failed
   counter condition alone means another writer committed first: we retry with
   the counter value DynamoDB returned (ReturnValuesOnConditionCheckFailure),
   with jittered backoff, a bounded number of times (then
   :class:`~infra.dynamodb.errors.AppendContentionError`, an OperationalError).

Within one process, appends to the same log take a lock first
(:meth:`~infra.dynamodb.datastore.DynamoDBDatastore.append_lock`): they would
commit one at a time anyway, and racing each other through DynamoDB only
wastes round trips and write capacity on transactions that lose the
compare-and-set. The lock is an optimisation, not what guarantees ordering:
appends from other processes still race, and the counter condition decides.

Limits are checked before anything is sent: a transaction holds at most 100
items and 4 MB, an item at most 400 KB. An append of k events needs 2k + 1
items (2k + 2 with tracking), so at most 49 events per call;
:class:`~infra.dynamodb.errors.TooManyEventsError`, ``EventTooLargeError``
(item estimated over 350 KB) and ``TransactionTooLargeError`` (all DataError)
refuse the call whole.

Why readers never see id n+1 before id n
========================================

An append that assigns ids ``n+1 .. n+k`` can only commit while the counter
equals ``n``, and its commit sets the counter to ``n+k``. The counter equals
``n`` only after the append that assigned id ``n`` has committed (counter
values only grow, and each value is set by exactly one committed transaction).
So the transaction writing id ``n+1`` commits strictly after the one writing
id ``n``: commit order is id order, and no id is skipped (a cancelled
transaction writes nothing, including its counter update), so ids are
contiguous.

Readers additionally do not rely on Query being a consistent snapshot (Query is
only read-committed with respect to transactions; GetItem is serializable).
``select_notifications`` first reads the counter ``c`` with a ConsistentRead
GetItem and queries ids ``<= c`` only: every transaction that set the counter
to ``c`` or less has committed, so every id up to ``c`` exists. It then checks
each page's ScannedCount against the width of the id range that page covered;
a shortfall (a committed notification not yet visible to the Query) makes it
re-read, so it returns a gap-free prefix of the log or nothing. Subscriptions
poll the counter and then read the same way.

Cost of this design, and how it would shard
============================================

Every append in an application goes through the single counter item, so
appends are serialised: throughput is bounded by roughly one commit per
(GetItem + TransactWriteItems) round trip, and on AWS by the per-item write
rate of the counter (about 1000 WCU/s for one item; each transactional write
costs 2 WCU), with contention between processes causing retries (a cancelled
transaction still costs a round trip). Group commit (one in-process leader
folding queued appends into one transaction of up to 49 events) would be the
next step within a process. Batching more events into one
append (up to 49) is the cheapest way to raise event throughput. To scale
writes further one would shard the log: S counters ``$sequence#<s>`` and
notification partitions ``log#<s>``, choosing ``s`` by hashing the originator
id, so each stream stays within one shard and per-shard ordering holds; the
application-level position would become a vector (one id per shard) and
followers would consume the S logs independently (or merge them). That does
not fit eventsourcing's single-integer notification id, so it is not done here.
The single notification partition ``p = "log"`` is not a limit by itself
(DynamoDB splits a partition by sort key range; there is no LSI, so no 10 GB
item collection limit), but for very large logs one could bucket it, e.g.
``p = "log#<id // 1_000_000>"``, reading across buckets in order.
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
from infra.dynamodb.factory import DynamoDBFactory
from infra.dynamodb.recorders import (
    DynamoDBAggregateRecorder,
    DynamoDBApplicationRecorder,
    DynamoDBProcessRecorder,
    DynamoDBSubscription,
    DynamoDBTrackingRecorder,
)

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
