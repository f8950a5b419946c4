"""Helpers shared by the DynamoDB tests."""

from __future__ import annotations

import uuid
from typing import Any

from infra.devtools.dynamodb_local import LOCAL_CREDENTIALS
from infra.dynamodb import DynamoDBDatastore, make_client


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
