"""Capacity units are counted by AWS's rule, also where DynamoDB Local under-reports.

The rule (``write_cost``) is tested on item images alone; the meter and the
shapes it learns, on DynamoDB Local.
"""

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
    IndexShape,
    TableShape,
    _record,
    instrument,
    learn_shapes,
    shape_of,
    shared_among,
    start_request_meter,
    transaction_write_units,
    update_changes,
    write_cost,
    write_units,
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


# ----- the rule, on item images -----

ORDERS = TableShape(
    "orders",
    ("userId", "orderId"),
    (
        IndexShape("everything", ("shop", "orderId"), "ALL"),
        IndexShape("keys", ("shop", "orderId"), "KEYS_ONLY"),
        IndexShape("totals", ("shop", "orderId"), "INCLUDE", frozenset({"total"})),
    ),
)
PLAIN = TableShape("plain", ("userId", "orderId"))


def order(**attributes: str) -> dict[str, dict[str, str]]:
    return {"userId": {"S": "u1"}, "orderId": {"S": "o1"}} | {
        name: {"S": value} for name, value in attributes.items()
    }


def padded(size: int, **attributes: str) -> dict[str, dict[str, str]]:
    """An order of exactly ``size`` bytes (names plus values), with ``attributes``."""
    item = order(**attributes, note="")
    from infra.dynamodb.layout import item_size

    item["note"] = {"S": "x" * (size - item_size(item))}
    assert item_size(item) == size
    return item


def test_a_put_of_a_new_item_costs_one_unit_per_started_kilobyte() -> None:
    assert write_cost(PLAIN, None, padded(1024)).units == 1
    assert write_cost(PLAIN, None, padded(1025)).units == 2
    assert write_cost(PLAIN, None, order()).units == 1


def test_an_update_within_one_kilobyte_costs_one_unit() -> None:
    assert write_cost(PLAIN, padded(300), padded(900)).units == 1


def test_an_update_is_charged_on_the_larger_of_the_item_before_and_after() -> None:
    assert write_cost(PLAIN, padded(900), padded(1100)).units == 2
    assert write_cost(PLAIN, padded(2100), padded(900)).units == 3
    assert write_cost(PLAIN, padded(2100), None).units == 3  # a delete: the old item


def test_a_transaction_doubles_every_item_a_condition_check_included() -> None:
    assert write_cost(PLAIN, padded(900), padded(1100), transactional=True).units == 4
    assert write_cost(PLAIN, padded(100), padded(100), check=True).units == 2


def test_an_index_is_written_only_when_its_projected_entry_changes() -> None:
    before, after = order(shop="s1", total="10"), order(shop="s1", total="12")
    changed = {w.index for w in write_cost(ORDERS, before, after).indexes}
    assert changed == {"everything", "totals"}  # KEYS_ONLY projects no total

    note = order(shop="s1", total="10", note="gift")
    assert {w.index for w in write_cost(ORDERS, before, note).indexes} == {"everything"}


def test_index_writes_are_charged_per_started_kilobyte_of_the_entry_and_not_doubled() -> None:
    cost = write_cost(ORDERS, None, padded(1500, shop="s1"), transactional=True)
    assert cost.units == 4
    assert {w.index: w.units for w in cost.indexes} == {"everything": 2, "keys": 1, "totals": 1}
    assert cost.total == 8


def test_a_put_with_the_index_key_is_one_index_write_and_without_it_none() -> None:
    writes = write_cost(ORDERS, None, order(shop="s1")).indexes
    assert [(w.index, w.kind, w.key) for w in writes] == [
        ("everything", "put", "s1"),
        ("keys", "put", "s1"),
        ("totals", "put", "s1"),
    ]
    assert write_cost(ORDERS, None, order(total="3")).indexes == ()  # a sparse index


def test_a_change_of_the_index_key_is_a_delete_and_a_put_two_index_writes() -> None:
    writes = write_cost(ORDERS, order(shop="s1"), order(shop="s2")).indexes
    keys_only = [(w.kind, w.key, w.units) for w in writes if w.index == "keys"]
    assert keys_only == [("delete", "s1", 1), ("put", "s2", 1)]
    assert len(writes) == 6
    assert write_cost(ORDERS, order(shop="s1"), order()).indexes[0].kind == "delete"


def test_an_update_expression_names_the_attributes_it_sets_and_removes() -> None:
    set_to, removed = update_changes(
        "SET #c = #c + :one, title = :t, tags = list_append(tags, :x) REMOVE w[0], old ADD n :one",
        {"#c": "count"},
        {":one": {"N": "1"}, ":t": {"S": "T"}, ":x": {"L": []}},
    )
    assert set_to == {"count": None, "title": {"S": "T"}, "tags": None, "w": None, "n": None}
    assert removed == {"old"}


def test_from_its_request_an_update_of_a_projected_attribute_costs_its_index_write() -> None:
    """The meter sees only the request: an update of an item is taken as one of an
    item in its indexes, so a changed projected attribute costs an index write and
    a changed index key two."""
    from infra.dynamodb.capacity import register_shape

    shape = TableShape(f"t-{uuid.uuid4().hex[:6]}", ORDERS.keys, ORDERS.indexes)
    register_shape(shape)
    key = {"userId": {"S": "u1"}, "orderId": {"S": "o1"}}

    def update(expression: str, values: dict[str, dict[str, str]]) -> float:
        params = {
            "TableName": shape.name,
            "Key": key,
            "UpdateExpression": expression,
            "ExpressionAttributeValues": values,
        }
        return write_units("UpdateItem", params)[shape.name]

    assert update("SET note = :n", {":n": {"S": "x"}}) == 1 + 1  # base + ALL
    assert update("SET total = :t", {":t": {"S": "9"}}) == 1 + 1 + 1  # + INCLUDE
    assert update("SET shop = :s", {":s": {"S": "s2"}}) == 1 + 3 * 2  # a key change
    put = {"TableName": shape.name, "Item": order(shop="s1")}
    assert write_units("PutItem", put)[shape.name] == 1 + 3
    both = {"TransactItems": [{"Put": put}, {"Delete": {"TableName": shape.name, "Key": key}}]}
    assert write_units("TransactWriteItems", both)[shape.name] == (2 + 3) + (2 + 3)


# ----- the meter on DynamoDB Local -----


def test_an_instrumented_client_learns_the_indexes_of_the_tables_it_creates_and_counts_them(
    dynamodb_endpoint: str,
) -> None:
    made = make_client(
        endpoint_url=dynamodb_endpoint,
        region_name=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    instrument(made)
    name = f"cap-{uuid.uuid4().hex[:10]}-gsi"
    made.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "k", "AttributeType": "S"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["v"]},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        assert shape_of(name) == TableShape(
            name, ("k",), (IndexShape("by-g", ("g",), "INCLUDE", frozenset({"v"})),)
        )
        before = PROCESS_TOTALS.by_table().get(name, {}).get("writeUnits", 0)
        made.put_item(TableName=name, Item={"k": {"S": "1"}, "g": {"S": "a"}})  # 1 + 1
        made.update_item(  # v is projected: 1 + 1
            TableName=name,
            Key={"k": {"S": "1"}},
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"S": "x"}},
        )
        made.update_item(  # w is not: 1
            TableName=name,
            Key={"k": {"S": "1"}},
            UpdateExpression="SET w = :w",
            ExpressionAttributeValues={":w": {"S": "x"}},
        )
        after = PROCESS_TOTALS.by_table()[name]["writeUnits"]
        assert after - before == 5
    finally:
        made.delete_table(TableName=name)


def test_the_rule_on_true_images_agrees_with_dynamodb_local_s_own_count_of_single_writes(
    dynamodb_endpoint: str,
) -> None:
    """For a single (non-transactional) write DynamoDB Local reports the base table's
    and each GSI's units (``ReturnConsumedCapacity=INDEXES``): AWS's engine and the
    rule agree on sizes before and after, crossing a kilobyte both ways, index puts,
    key changes and projections."""
    raw = make_client(
        endpoint_url=dynamodb_endpoint,
        region_name=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    name = f"cap-{uuid.uuid4().hex[:10]}-rule"
    raw.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "k", "AttributeType": "S"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "all-g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": "keys-g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    (shape,) = learn_shapes(raw, [name])
    key = {"k": {"S": "1"}}

    def check(expression: str, **values: dict[str, str]) -> None:
        before = raw.get_item(TableName=name, Key=key, ConsistentRead=True).get("Item")
        placeholders = {f":{n}": v for n, v in values.items()}
        reported = raw.update_item(
            TableName=name,
            Key=key,
            UpdateExpression=expression,
            ReturnConsumedCapacity="INDEXES",
            **({"ExpressionAttributeValues": placeholders} if placeholders else {}),  # type: ignore[arg-type]
        )["ConsumedCapacity"]
        after = raw.get_item(TableName=name, Key=key, ConsistentRead=True)["Item"]
        cost = write_cost(shape, before, after)
        by_index = {
            n: u["CapacityUnits"] for n, u in reported.get("GlobalSecondaryIndexes", {}).items()
        }
        mine: dict[str, float] = {}
        for w in cost.indexes:
            mine[w.index] = mine.get(w.index, 0) + w.units
        assert (cost.units, mine) == (reported["Table"]["CapacityUnits"], by_index), expression

    try:
        check("SET v = :v", v={"S": "x" * 900})  # a new item: 1
        check("SET v = :v", v={"S": "x" * 1100})  # grows past 1 KB: 2
        check("SET v = :v", v={"S": "x" * 10})  # shrinks from over 1 KB: still 2
        check("SET g = :g", g={"S": "a"})  # enters both indexes: a put each
        check("SET v = :v", v={"S": "y" * 1500})  # ALL changes (2 KB entry), KEYS_ONLY not
        check("SET g = :g", g={"S": "b"})  # an index key change: delete + put
        check("REMOVE g")  # leaves both indexes
    finally:
        raw.delete_table(TableName=name)
