"""One DynamoDB Local per test session (per xdist worker), unless
AWS_ENDPOINT_URL_DYNAMODB points at a running one (which must accept the dummy
credentials in infra.dynamodb_local.LOCAL_CREDENTIALS).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from infra.dynamodb_local import DynamoDBLocal, DynamoDBLocalError

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    url = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    if url:
        yield url
        return
    try:
        ddb = DynamoDBLocal()
        ddb.start()
    except DynamoDBLocalError as e:  # pragma: no cover
        pytest.fail(f"Could not start DynamoDB Local: {e}")
    try:
        yield ddb.endpoint_url
    finally:
        ddb.stop()
