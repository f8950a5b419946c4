"""Helpers shared by the DynamoDB tests."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from infra.devtools.dynamodb_local import LOCAL_CREDENTIALS
from infra.dynamodb import (
    DynamoDBApplicationRecorder,
    DynamoDBDatastore,
    DynamoDBProcessRecorder,
    make_client,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import StoredEvent


def unique_prefix() -> str:
    """A table name prefix no other test uses (tests share one DynamoDB Local)."""
    return f"t{uuid.uuid4().hex[:12]}_"


def local_env(endpoint_url: str, **extra: str) -> dict[str, str]:
    """Environment for DynamoDBFactory against DynamoDB Local, isolated by a
    unique table prefix.
    """
    return {
        "PERSISTENCE_MODULE": "infra.dynamodb",
        "DYNAMODB_ENDPOINT_URL": endpoint_url,
        "DYNAMODB_TABLE_PREFIX": unique_prefix(),
        **LOCAL_CREDENTIALS,
        **extra,
    }


def new_datastore(endpoint_url: str, **kwargs: Any) -> DynamoDBDatastore:
    client_kwargs = {
        k: kwargs.pop(k) for k in ("connect_timeout", "read_timeout", "max_attempts") if k in kwargs
    }
    client = make_client(
        endpoint_url=endpoint_url,
        region_name=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        **client_kwargs,
    )
    kwargs.setdefault("table_prefix", unique_prefix())
    kwargs.setdefault("poll_interval", 0.02)
    return DynamoDBDatastore(client, **kwargs)


class SynchronouslyIndexedRecorder(DynamoDBApplicationRecorder):
    """The application recorder as eventsourcing's conformance suites expect it:
    ``insert_events`` returns the notification ids of the events it wrote, and
    they are readable as soon as it returns.

    The real recorder returns None: ids are assigned afterwards, by the stream
    indexer. This subclass waits for the indexer (draining the stream in this
    process) after each insert and returns the ids the index gave the commit,
    so the suites' assertions about the log hold unchanged, against the index.
    """

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        super().insert_events(stored_events, **kwargs)
        return indexed_ids(self, stored_events)


class SynchronouslyIndexedProcessRecorder(DynamoDBProcessRecorder):
    """The process recorder as the conformance suites expect it (see
    :class:`SynchronouslyIndexedRecorder`)."""

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        super().insert_events(stored_events, **kwargs)
        return indexed_ids(self, stored_events)


def indexed_ids(
    recorder: DynamoDBApplicationRecorder, stored_events: Sequence[StoredEvent]
) -> list[int]:
    """Waits until the commit of ``stored_events`` is indexed; returns its ids."""
    if not stored_events:
        return []
    recorder.wait_until_indexed()
    ids = recorder.indexed_positions(stored_events)
    assert ids is not None, "the indexer drained the stream but did not index this commit"
    return ids
