"""DynamoDB's wire format for tests that answer a boto3 client themselves (a
``before-send`` hook returning the answer: no network, botocore parses it)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any, cast

from botocore.awsrequest import AWSResponse


def on_the_wire(value: Any) -> Any:
    """What DynamoDB sends for a parsed value: bytes as base64 text, times as epoch seconds."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: on_the_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [on_the_wire(v) for v in value]
    if hasattr(value, "timestamp"):
        return value.timestamp()
    return value


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def http_answer(
    url: str, status: int, body: bytes, headers: dict[str, str] | None = None
) -> AWSResponse:
    """The HTTP answer a ``before-send`` hook gives botocore instead of sending."""
    return AWSResponse(url, status, cast(Any, headers or {}), _Raw(body))
