"""A DynamoDB call that cannot connect or get an answer is retried only within its
budget (``infra.dynamodb.datastore.bound_retries``); an answer that asks to retry
(throttling) is retried as botocore's standard mode says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

from infra.dynamodb.datastore import make_client


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def client_sending(answer: Any, *, budget: float) -> tuple[Any, list[int]]:
    """A client (as the service makes them, 3 retries: 4 sends) whose every send gets
    ``answer``: raised if it is an exception, else answered."""
    client = make_client(
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        max_attempts=3,
        retry_budget=budget,
    )
    sends: list[int] = []

    def send(request: Any, **_: Any) -> AWSResponse:
        sends.append(1)
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        return AWSResponse(request.url, status, cast(Any, {}), _Raw(json.dumps(body).encode()))

    client.meta.events.register("before-send.dynamodb", cast(Any, send))
    return client, sends


def test_a_call_that_gets_no_answer_is_not_retried_past_its_budget() -> None:
    timeout = ReadTimeoutError(endpoint_url="http://127.0.0.1:9")
    client, sends = client_sending(timeout, budget=0.0)
    with pytest.raises(ReadTimeoutError):
        client.get_item(TableName="t", Key={"k": {"S": "a"}})
    assert len(sends) == 1


def test_within_its_budget_a_call_that_gets_no_answer_is_retried() -> None:
    timeout = ReadTimeoutError(endpoint_url="http://127.0.0.1:9")
    client, sends = client_sending(timeout, budget=60.0)
    with pytest.raises(ReadTimeoutError):
        client.get_item(TableName="t", Key={"k": {"S": "a"}})
    assert len(sends) == 4


def test_throttling_is_retried_whatever_the_budget() -> None:
    throttled = (400, {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException"})
    client, sends = client_sending(throttled, budget=0.0)
    with pytest.raises(client.exceptions.ClientError):
        client.get_item(TableName="t", Key={"k": {"S": "a"}})
    assert len(sends) == 4
