"""A DynamoDB call that cannot connect or get an answer is retried only within its
budget (``infra.dynamodb.datastore.bound_retries``); an answer that asks to retry
(throttling) is retried as botocore's standard mode says."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

from infra.dynamodb.datastore import make_client
from tests.wire import http_answer


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
        return http_answer(request.url, status, json.dumps(body).encode())

    client.meta.events.register("before-send.dynamodb", cast(Any, send))
    return client, sends


@pytest.mark.parametrize(
    ("budget", "sends_made"),
    [(0.0, 1), (60.0, 4)],
    ids=["past-its-budget-not-retried", "within-its-budget-retried"],
)
def test_a_call_that_gets_no_answer_is_retried_only_within_its_budget(
    budget: float, sends_made: int
) -> None:
    timeout = ReadTimeoutError(endpoint_url="http://127.0.0.1:9")
    client, sends = client_sending(timeout, budget=budget)
    with pytest.raises(ReadTimeoutError):
        client.get_item(TableName="t", Key={"k": {"S": "a"}})
    assert len(sends) == sends_made


def test_throttling_is_retried_whatever_the_budget() -> None:
    throttled = (400, {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException"})
    client, sends = client_sending(throttled, budget=0.0)
    with pytest.raises(client.exceptions.ClientError):
        client.get_item(TableName="t", Key={"k": {"S": "a"}})
    assert len(sends) == 4
