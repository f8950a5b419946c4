"""DynamoDB Local for the tests: a fresh instance per test module.

- If AWS_ENDPOINT_URL_DYNAMODB is set, tests use that endpoint (it must accept
  the dummy credentials in infra.devtools.dynamodb_local.LOCAL_CREDENTIALS).
- Otherwise each test module (in each pytest-xdist worker) starts its own and
  stops it after: see ``dynamodb_endpoint`` for why.

Tests isolate themselves with unique table prefixes, so a module's tests share
their instance safely.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from infra.devtools.dynamodb_local import (
    QUICK_START_JVM_OPTIONS,
    DynamoDBLocal,
    DynamoDBLocalError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


def _start() -> DynamoDBLocal:
    ddb = DynamoDBLocal(jvm_options=QUICK_START_JVM_OPTIONS)
    try:
        ddb.start()
    except DynamoDBLocalError as e:  # pragma: no cover
        pytest.fail(f"Could not start DynamoDB Local: {e}")
    return ddb


@pytest.fixture(scope="module")
def dynamodb_endpoint() -> Iterator[str]:
    """A fresh DynamoDB Local for each test module (in each pytest-xdist worker).

    DynamoDB Local slows down as stream-enabled tables pile up in one instance
    (deleting them does not help): measured, single puts go from 3-5 ms on a
    fresh instance to 10-30 ms after a few hundred such tables, and a session
    of about 800 tests creates thousands. An instance per module costs a JVM
    start (about 2 s with ``QUICK_START_JVM_OPTIONS``) and keeps every module
    on a fresh one; ``tests/conftest.py`` keeps each module on one worker, so
    a module starts one instance, not one per worker.
    """
    url = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    if url:
        yield url
        return
    ddb = _start()
    try:
        yield ddb.endpoint_url
    finally:
        ddb.stop()
