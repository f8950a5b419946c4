"""Capacity units are counted as AWS charges them, also where DynamoDB Local under-reports."""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

from infra.devtools.dynamodb_local import LOCAL_CREDENTIALS
from infra.dynamodb import make_client
from infra.dynamodb.capacity import (
    PROCESS_TOTALS,
    _record,
    instrument,
    shared_among,
    start_request_meter,
    transaction_write_units,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@pytest.fixture
def client(dynamodb_endpoint: str) -> Iterator[tuple[DynamoDBClient, str, str]]:
    made = make_client(
        endpoint_url=dynamodb_endpoint,
        region_name=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    instrument(made)
    names = (f"cap-{uuid.uuid4().hex[:10]}-a", f"cap-{uuid.uuid4().hex[:10]}-b")
    for name in names:
        made.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    yield made, names[0], names[1]
    for name in names:
        made.delete_table(TableName=name)


def test_a_transaction_is_charged_two_units_per_started_kilobyte_of_every_item(
    client: tuple[DynamoDBClient, str, str],
) -> None:
    dynamodb, first, second = client
    big = "x" * 1500  # two started kilobytes
    before = PROCESS_TOTALS.by_table()

    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": first, "Item": {"k": {"S": "1"}, "v": {"S": big}}}},
            {"Put": {"TableName": first, "Item": {"k": {"S": "2"}, "v": {"S": big}}}},
            {"Put": {"TableName": second, "Item": {"k": {"S": "3"}}}},
            {
                "Update": {
                    "TableName": second,
                    "Key": {"k": {"S": "4"}},
                    "UpdateExpression": "SET v = :v",
                    "ExpressionAttributeValues": {":v": {"S": "y"}},
                }
            },
        ]
    )

    after = PROCESS_TOTALS.by_table()
    # DynamoDB Local itself reports 4 units for the first table (one item's worth).
    assert after[first]["writeUnits"] - before.get(first, {}).get("writeUnits", 0) == 8
    assert after[second]["writeUnits"] - before.get(second, {}).get("writeUnits", 0) == 4


def test_a_single_put_per_table_counts_what_dynamodb_local_reports(
    client: tuple[DynamoDBClient, str, str],
) -> None:
    dynamodb, first, _ = client
    item = {"k": {"S": "1"}, "v": {"S": "z" * 3000}}
    reported = dynamodb.transact_write_items(
        TransactItems=[{"Put": {"TableName": first, "Item": item}}],
        ReturnConsumedCapacity="TOTAL",
    )["ConsumedCapacity"]

    assert transaction_write_units([{"Put": {"TableName": first, "Item": item}}]) == {
        first: reported[0]["CapacityUnits"]
    }


def test_a_save_shared_by_several_requests_is_split_among_them_by_their_events() -> None:
    one, three = contextvars.Context(), contextvars.Context()
    meters = [one.run(start_request_meter), three.run(start_request_meter)]

    with shared_among([one, three, None, three, three]):
        _record(
            {"ConsumedCapacity": {"TableName": "events", "WriteCapacityUnits": 8.0}},
            SimpleNamespace(name="PutItem"),
            {},
        )

    assert [meter.totals()["writeUnits"] for meter in meters] == [2.0, 6.0]
