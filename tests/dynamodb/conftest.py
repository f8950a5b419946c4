"""Fixtures shared by the DynamoDB store's own tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.dynamodb.utils import new_datastore

if TYPE_CHECKING:
    from collections.abc import Iterator

    from infra.dynamodb import DynamoDBDatastore


@pytest.fixture
def datastore(dynamodb_endpoint: str) -> Iterator[DynamoDBDatastore]:
    """A datastore on tables no other test uses (a unique prefix)."""
    ds = new_datastore(dynamodb_endpoint)
    yield ds
    ds.close()
