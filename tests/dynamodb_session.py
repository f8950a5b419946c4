"""DynamoDB Local for the tests: an instance per few test modules.

- If AWS_ENDPOINT_URL_DYNAMODB is set, tests use that endpoint (it must accept
  the dummy credentials in infra.devtools.dynamodb_local.LOCAL_CREDENTIALS).
- Otherwise each pytest-xdist worker starts its own, and replaces it with a
  fresh one every few modules: see ``dynamodb_endpoint`` for why.

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


def _launch() -> DynamoDBLocal:
    ddb = DynamoDBLocal(jvm_options=QUICK_START_JVM_OPTIONS)
    ddb.launch()
    return ddb


def _ready(ddb: DynamoDBLocal) -> DynamoDBLocal:
    try:
        ddb.wait_until_ready()
    except DynamoDBLocalError as e:  # pragma: no cover
        pytest.fail(f"Could not start DynamoDB Local: {e}")
    return ddb


# How many test modules one instance serves before a fresh one replaces it.
MODULES_PER_INSTANCE = 4


class _Instances:
    """This worker's current DynamoDB Local, replaced after ``MODULES_PER_INSTANCE``
    modules: a compromise between a JVM start per module and one instance slowed
    down by every table of the session (see ``dynamodb_endpoint``).

    The next instance is launched as soon as the current one is taken into
    use, so its JVM starts while tests run rather than while they wait.
    """

    def __init__(self) -> None:
        self.current: DynamoDBLocal | None = None
        self.spare: DynamoDBLocal | None = None
        self.served = 0

    def next_module(self) -> str:
        if self.current is None or self.served >= MODULES_PER_INSTANCE:
            self._stop_current()
            self.current = _ready(self.spare or _launch())
            self.spare = _launch()
        self.served += 1
        return self.current.endpoint_url

    def _stop_current(self) -> None:
        if self.current is not None:
            self.current.stop()
        self.current, self.served = None, 0

    def stop(self) -> None:
        self._stop_current()
        if self.spare is not None:
            self.spare.stop()
            self.spare = None


@pytest.fixture(scope="session")
def _dynamodb_instances() -> Iterator[_Instances]:
    instances = _Instances()
    try:
        yield instances
    finally:
        instances.stop()


@pytest.fixture(scope="module")
def dynamodb_endpoint(_dynamodb_instances: _Instances) -> Iterator[str]:
    """A DynamoDB Local shared by at most ``MODULES_PER_INSTANCE`` test modules
    (in each pytest-xdist worker).

    DynamoDB Local slows down as stream-enabled tables pile up in one instance
    (deleting them does not help): measured, single puts go from 3-5 ms on a
    fresh instance to 10-30 ms after a few hundred such tables, and a session
    of about 950 tests creates thousands. A JVM start costs about 2 s with
    ``QUICK_START_JVM_OPTIONS`` (4 s on a busy machine); one per module was
    about 70 starts a run, one per four modules keeps each instance small.
    ``tests/conftest.py`` keeps each module on one worker.
    """
    url = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    if url:
        yield url
        return
    yield _dynamodb_instances.next_module()
