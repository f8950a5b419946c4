"""The one-pass parse of read answers gives exactly what botocore's own parse gives.

Each answer is served to two real boto3 clients by a ``before-send`` hook (no
network): one parses as botocore does, the other with ``infra.dynamodb.fast_parse``
installed as the service installs it. Their results must be equal, for any items:
every kind of attribute value, nested, binary included, and attributes named
like the value kinds (an item may have an attribute called ``B``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.dynamodb import fast_parse
from tests.wire import http_answer, on_the_wire

KINDS = ("S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS")
names = st.one_of(st.sampled_from(KINDS), st.text(min_size=1, max_size=8))
binary = st.binary(max_size=12)
scalars = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=8)),
    st.builds(lambda n: {"N": str(n)}, st.integers()),
    st.builds(lambda b: {"B": b}, binary),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda s: {"SS": sorted(s)}, st.sets(st.text(max_size=4), min_size=1, max_size=3)),
    st.builds(
        lambda s: {"NS": sorted(map(str, s))}, st.sets(st.integers(), min_size=1, max_size=3)
    ),
    st.builds(lambda s: {"BS": sorted(s)}, st.sets(binary, min_size=1, max_size=3)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.builds(lambda m: {"M": m}, st.dictionaries(names, inner, max_size=3)),
        st.builds(lambda items: {"L": items}, st.lists(inner, max_size=3)),
    ),
    max_leaves=12,
)
items = st.dictionaries(names, values, min_size=1, max_size=5)


def _client(service: str, answer: dict[str, Any], status: int, fast: bool) -> Any:
    make: Any = boto3.client
    client = make(
        service,
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}),
    )
    body = json.dumps(on_the_wire(answer)).encode()

    def serve(request: Any, **_: Any) -> AWSResponse:
        headers: Any = {"x-amzn-RequestId": "r1", "Content-Type": "application/x-amz-json-1.0"}
        return http_answer(request.url, status, body, headers)

    client.meta.events.register(
        f"before-send.{client.meta.service_model.service_id.hyphenize()}", serve
    )
    if fast:
        fast_parse.install(client)
    return client


def both(
    service: str, operation: str, params: dict[str, Any], answer: dict[str, Any]
) -> tuple[Any, Any]:
    results = []
    for fast in (False, True):
        client = _client(service, answer, 200, fast)
        results.append(getattr(client, operation)(**params))
    return results[0], results[1]


@settings(max_examples=60, deadline=None)
@given(item=items)
def test_a_get_item_answer_parses_as_botocore_parses_it(item: dict[str, Any]) -> None:
    answer = {"Item": item, "ConsumedCapacity": {"TableName": "t", "CapacityUnits": 1.0}}
    slow, fast = both("dynamodb", "get_item", {"TableName": "t", "Key": {"k": {"S": "a"}}}, answer)
    assert fast == slow


@settings(max_examples=40, deadline=None)
@given(found=st.lists(items, max_size=4), last=items)
def test_query_and_scan_answers_parse_as_botocore_parses_them(
    found: list[dict[str, Any]], last: dict[str, Any]
) -> None:
    answer = {"Items": found, "Count": len(found), "ScannedCount": 7, "LastEvaluatedKey": last}
    for operation in ("query", "scan"):
        slow, fast = both("dynamodb", operation, {"TableName": "t"}, answer)
        assert fast == slow


@settings(max_examples=40, deadline=None)
@given(found=st.lists(items, max_size=4), unprocessed=st.lists(items, max_size=3))
def test_a_batch_get_answer_parses_as_botocore_parses_it(
    found: list[dict[str, Any]], unprocessed: list[dict[str, Any]]
) -> None:
    answer = {
        "Responses": {"t1": found, "t2": found[:1]},
        "UnprocessedKeys": {"t1": {"Keys": unprocessed, "ConsistentRead": True}},
        "ConsumedCapacity": [{"TableName": "t1", "CapacityUnits": 2.5}],
    }
    params = {"RequestItems": {"t1": {"Keys": [{"k": {"S": "a"}}]}}}
    slow, fast = both("dynamodb", "batch_get_item", params, answer)
    assert fast == slow
    assert all(
        isinstance(v, bytes)
        for row in fast["Responses"]["t1"]
        for a in row.values()
        for v in a.get("BS", [])
    )


@settings(max_examples=30, deadline=None)
@given(images=st.lists(items, min_size=1, max_size=3))
def test_a_stream_records_answer_parses_as_botocore_parses_it(images: list[dict[str, Any]]) -> None:
    answer = {
        "Records": [
            {
                "eventID": f"e{n}",
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1765152000.0 + n,
                    "Keys": {"p": image.get("p", {"S": "x"})},
                    "NewImage": image,
                    "SequenceNumber": str(100 + n),
                    "SizeBytes": 10,
                    "StreamViewType": "NEW_IMAGE",
                },
            }
            for n, image in enumerate(images)
        ],
        "NextShardIterator": "it-2",
    }
    slow, fast = both("dynamodbstreams", "get_records", {"ShardIterator": "it-1"}, answer)
    assert fast == slow
    assert isinstance(fast["Records"][0]["dynamodb"]["ApproximateCreationDateTime"], datetime)


def test_an_error_answer_is_left_to_botocore() -> None:
    client = _client(
        "dynamodb",
        {
            "__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
            "message": "no table",
        },
        400,
        fast=True,
    )
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="no table"):
        client.get_item(TableName="t", Key={"k": {"S": "a"}})


def test_other_operations_are_left_to_botocore() -> None:
    answer = {
        "Table": {"TableName": "t", "CreationDateTime": 1765152000.0, "TableStatus": "ACTIVE"}
    }
    client = _client("dynamodb", answer, 200, fast=True)
    described = client.describe_table(TableName="t")
    assert isinstance(described["Table"]["CreationDateTime"], datetime)  # botocore's parse


def test_the_service_clients_parse_reads_in_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.dynamodb.datastore import ClientOptions, make_client, make_streams_client

    parsed: list[str] = []
    one_pass = fast_parse.parse_answer

    def spy(operation: str, body: bytes) -> dict[str, Any]:
        parsed.append(operation)
        return one_pass(operation, body)

    monkeypatch.setattr(fast_parse, "parse_answer", spy)
    options = ClientOptions(
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    client = make_client(
        endpoint_url=options.endpoint_url,
        region_name=options.region_name,
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    streams = make_streams_client(options)
    for made, answer in ((client, {"Item": {"k": {"B": "AA=="}}}), (streams, {"Records": []})):
        body = json.dumps(answer).encode()

        def serve(request: Any, body: bytes = body, **_: Any) -> AWSResponse:
            return http_answer(request.url, 200, body)

        made.meta.events.register("before-send", cast(Any, serve))
    assert client.get_item(TableName="t", Key={"k": {"S": "a"}})["Item"] == {"k": {"B": b"\x00"}}
    assert streams.get_records(ShardIterator="it")["Records"] == []
    assert parsed == ["GetItem", "GetRecords"]
