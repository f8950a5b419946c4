"""The state-based yardstick: the same REST API on current-state rows, no events.

What a good team would build instead of an event-sourced service, so that the
benchmark can show what event sourcing costs. It is a yardstick, not the
product. Each change is one transaction that re-checks what it decided on:

- SQLite (``STORE=sqlite``, file ``$DATA_DIR/baseline.sqlite3``): WAL with
  ``synchronous=FULL`` (every commit durable, like the service), writes in
  ``BEGIN IMMEDIATE`` transactions taken in turn by the process's threads,
  reads in one snapshot each. Tables ``users``, ``events`` (with
  ``registered_count``) and ``registrations`` (status and a per-event ``seq``
  that orders the waitlist).
- DynamoDB (``STORE=dynamodb``, ``AWS_ENDPOINT_URL_DYNAMODB``, tables
  ``$DYNAMODB_TABLE_PREFIX{Users,Events,Registrations}``): the event item holds
  ``registeredCount`` and the waitlist (a list of userIds); every change that
  touches an event is one ``TransactWriteItems`` conditional on the state it
  was decided on, re-read and retried when that moved. Every call asks for
  ``ReturnConsumedCapacity``. ``DYNAMODB_SIMULATED_LATENCY_MS`` delays every
  call as the service's setting of that name does (a benchmark tool).

``GET /_stats``: requests per operation and, on DynamoDB, the capacity units
they consumed (``readUnits`` / ``writeUnits`` in ``total``): reads as DynamoDB
reports them, writes by AWS's rule through the service's own function
(``infra.dynamodb.capacity.write_units``, GSI writes included), from the
request: exact for items under 1 KB; an update of the event item once its
waitlist passes 1 KB is counted as of 1 KB (``bench.dynamodb_capacity`` and
``bench.dynamodb_census`` read the items and count it exactly).

    STORE=sqlite DATA_DIR=/tmp/b PORT=8001 python -m bench.baseline

Its parts, split by store as ``infra/`` is: ``common.py`` (errors, views,
counters, the ``Store`` protocol), ``sqlite.py``, ``dynamodb.py``, and
``app.py`` (the HTTP app over the store ``STORE`` names).
"""

from bench.baseline.app import app, make_store
from bench.baseline.common import Store
from bench.baseline.dynamodb import DynamoStore
from bench.baseline.sqlite import SqliteStore

__all__ = ["DynamoStore", "SqliteStore", "Store", "app", "make_store"]
