"""The indexer Lambda's handler, fed real DynamoDB Streams records (DynamoDB only).

The service writes events with its in-process indexer off, as the production
API does. The test reads the events table's stream with the DynamoDB Streams
API (TRIM_HORIZON, GetRecords), hands the records to
``api.indexer_lambda.handler`` as an event source mapping delivers them (a JSON
event, binary values in base64, times in epoch seconds), and reads the
notification log the handler wrote.

Every DynamoDB call of the API process and of the handler is recorded, table by
table, and compared with what the production stack grants each Lambda's role
(``infra/cdk/design.py``): a call the role does not allow would be refused on
AWS.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from eventsourcing.persistence import PersistenceError
from fastapi.testclient import TestClient

from api import indexer_lambda
from api.main import create_app
from infra.cdk.design import (
    API_EVENT_TABLE_ACTIONS,
    API_INDEX_TABLE_ACTIONS,
    EVENT_STORE_TABLES,
    EVENTS_TABLE,
    INDEX_TABLE,
    INDEXER_EVENT_TABLE_ACTIONS,
    INDEXER_INDEX_TABLE_ACTIONS,
    INDEXER_READ_TABLE_ACTIONS,
    KEY_TABLE_ACTIONS,
    KEYS_TABLE,
    READ_MODEL_ACTIONS,
    READ_MODEL_INDEX_ACTIONS,
    READ_TABLES,
    SNAPSHOTS_TABLE,
    TRANSACT_ITEM_ACTIONS,
    WRITE_ACTIONS,
)
from infra.dynamodb import DynamoDBApplicationRecorder
from infra.dynamodb.commits import key_of, lead_of, manifest_of
from infra.dynamodb.indexer import StreamIndexer
from infra.dynamodb.read_tables import DynamoDBReadModel
from infra.settings import Settings
from infra.wiring import Container, build_container
from tests.api.conftest import ADMIN_KEY, API_KEYS, bearer
from tests.support import (
    create_event,
    create_user,
    fresh_store_settings,
    leave,
    register,
    server_env,
)

Key = tuple[str, int]


# --- recording DynamoDB calls as IAM actions on resources ---------------------


@dataclass
class Calls:
    """The IAM actions that a client's DynamoDB calls need, per table (or
    ``<table>/index/<name>`` for a query on a GSI)."""

    made: set[tuple[str, str]] = field(default_factory=set)

    def record(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.dynamodb", self._hook)

    def _hook(self, model: Any, params: Mapping[str, Any], **_: Any) -> None:
        operation = str(model.name)
        if operation == "TransactWriteItems":
            for item in params["TransactItems"]:
                for kind, request in item.items():
                    self.made.add((TRANSACT_ITEM_ACTIONS[kind], request["TableName"]))
        elif operation in ("BatchGetItem", "BatchWriteItem"):
            self.made |= {(f"dynamodb:{operation}", table) for table in params["RequestItems"]}
        else:
            resource = params["TableName"]
            if params.get("IndexName"):
                resource = f"{resource}/index/{params['IndexName']}"
            self.made.add((f"dynamodb:{operation}", resource))

    def not_granted(self, grants: Mapping[str, tuple[str, ...]]) -> set[tuple[str, str]]:
        return {
            (action, resource)
            for action, resource in self.made
            if action not in grants.get(resource, ())
        }


def api_grants(prefix: str) -> dict[str, tuple[str, ...]]:
    """What the API role may do, per resource (the stack's statements)."""
    grants = {
        EVENTS_TABLE.table_name(prefix): API_EVENT_TABLE_ACTIONS,
        SNAPSHOTS_TABLE.table_name(prefix): API_EVENT_TABLE_ACTIONS,
        INDEX_TABLE.table_name(prefix): API_INDEX_TABLE_ACTIONS,
    }
    assert len(grants) == len(EVENT_STORE_TABLES)
    grants[KEYS_TABLE.table_name(prefix)] = KEY_TABLE_ACTIONS  # users' names are sealed
    for design in READ_TABLES:
        grants[design.table_name(prefix)] = READ_MODEL_ACTIONS
        for index in design.indexes:
            grants[f"{design.table_name(prefix)}/index/{index.name}"] = READ_MODEL_INDEX_ACTIONS
    return grants


def indexer_grants(prefix: str) -> dict[str, tuple[str, ...]]:
    """What the indexer role may do, per table (the stack's statements)."""
    return {
        EVENTS_TABLE.table_name(prefix): INDEXER_EVENT_TABLE_ACTIONS,
        INDEX_TABLE.table_name(prefix): INDEXER_INDEX_TABLE_ACTIONS,
        **{design.table_name(prefix): INDEXER_READ_TABLE_ACTIONS for design in READ_TABLES},
    }


# --- the service, with its in-process indexer off ------------------------------


@dataclass
class Service:
    store_settings: dict[str, object]
    container: Container
    recorder: DynamoDBApplicationRecorder
    calls: Calls

    @property
    def prefix(self) -> str:
        return str(self.store_settings["dynamodb_table_prefix"])

    def notifications(self) -> list[tuple[int, Key]]:
        """The notification log: (id, (oid, ver)) in id order."""
        return [
            (n.id, (self.recorder.encode_originator_id(n.originator_id), n.originator_version))
            for n in self.recorder.select_notifications(1, 10_000)
        ]


@pytest.fixture
def service(store_name: str, endpoint: str | None, tmp_path: Path) -> Iterator[Service]:
    if store_name != "dynamodb":
        pytest.skip("the indexer Lambda reads a DynamoDB Stream")
    store_settings = fresh_store_settings(store_name, endpoint)
    settings = Settings(
        **store_settings,  # type: ignore[arg-type]
        data_dir=tmp_path / "data",
        environment="test",
        dynamodb_indexer=False,
    )
    container = build_container(settings)  # creates the tables
    container.start()
    try:
        recorder = container.service.recorder
        assert isinstance(recorder, DynamoDBApplicationRecorder)
        assert isinstance(container.read_model, DynamoDBReadModel)
        calls = Calls()
        calls.record(recorder.client)
        calls.record(container.read_model.client)
        yield Service(store_settings, container, recorder, calls)
    finally:
        container.close()


def write_some_events(service: Service) -> None:
    """A few commands through the HTTP API: creations, a waitlist, a promotion."""
    with TestClient(create_app(container=service.container)) as http:
        event_id = create_event(http, capacity=1, waitlistEnabled=True)["eventId"]
        alice, bob = create_user(http), create_user(http)
        assert register(http, alice, event_id).status_code == 201
        assert register(http, bob, event_id).status_code == 201  # waitlisted
        assert leave(http, alice, event_id).status_code == 204  # bob is promoted
        for path in (
            "/events",
            f"/events/{event_id}",
            f"/events/{event_id}/registrations",
            f"/users/{bob}",
            f"/users/{bob}/registrations",
            "/health",
        ):
            assert http.get(path).status_code == 200, path


# --- the events table's stream, as a Lambda event ------------------------------


def stream_records(service: Service) -> tuple[str, list[dict[str, Any]]]:
    """The stream's ARN and every record it holds, parent shards first."""
    table = service.recorder.client.describe_table(TableName=service.recorder.events_table_name)
    arn = table["Table"]["LatestStreamArn"]
    streams = boto3.session.Session().client(
        "dynamodbstreams",
        endpoint_url=str(service.store_settings["dynamodb_endpoint_url"]),
        region_name=str(service.store_settings["aws_region"]),
        aws_access_key_id=str(service.store_settings["aws_access_key_id"]),
        aws_secret_access_key=str(service.store_settings["aws_secret_access_key"]),
    )
    shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    shard_ids = {shard["ShardId"] for shard in shards}
    ordered = sorted(shards, key=lambda s: (s.get("ParentShardId") in shard_ids, s["ShardId"]))
    records: list[dict[str, Any]] = []
    for shard in ordered:
        iterator: str | None = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = streams.get_records(ShardIterator=iterator, Limit=1000)
            if not response["Records"]:
                break
            records.extend(dict(record) for record in response["Records"])
            iterator = response.get("NextShardIterator")
    streams.close()
    assert records, "the stream holds no records"
    return arn, records


def lambda_event(stream_arn: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The records as an event source mapping delivers them: JSON, binary values
    in base64, ApproximateCreationDateTime in epoch seconds, the stream's ARN."""

    def encode(value: object) -> object:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        if isinstance(value, datetime):
            return value.timestamp()
        raise TypeError(type(value).__name__)

    delivered = [{**record, "eventSourceARN": stream_arn} for record in records]
    event: dict[str, Any] = json.loads(json.dumps({"Records": delivered}, default=encode))
    return event


def keys_of(records: list[dict[str, Any]]) -> list[Key]:
    """The events the records hold: each commit's, in its manifest's order (one
    record per stream a commit touches), commits in the order of their first
    record."""
    images = [r["dynamodb"]["NewImage"] for r in records if r["eventName"] == "INSERT"]
    manifests = {key_of(image): manifest_of(image) for image in images if "l" not in image}
    return [key for lead in dict.fromkeys(map(lead_of, images)) for key in manifests[lead]]


# --- the handler, configured like the Lambda -----------------------------------


@pytest.fixture
def lambda_env(service: Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The indexer Lambda's environment for the service's tables; yields the log
    levels the handler configured and a "flushed" for each time it wrote its
    queued log lines (JSON lines: infra.logs, tested there)."""
    for name, value in server_env(service.store_settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ENVIRONMENT", "test")
    configured: list[str] = []
    monkeypatch.setattr(indexer_lambda, "configure_logging", configured.append)
    monkeypatch.setattr(indexer_lambda, "flush_logs", lambda: configured.append("flushed"))
    indexer_lambda._indexer.cache_clear()  # a cold start
    yield configured
    indexer_lambda._indexer.cache_clear()


def cold_start() -> None:
    """A new execution environment: the handler builds its indexer again."""
    indexer_lambda._indexer.cache_clear()


def lambda_indexer() -> StreamIndexer:
    """The indexer the handler uses (built at its cold start): DynamoDB's."""
    indexer = indexer_lambda._indexer()
    assert isinstance(indexer, StreamIndexer)
    return indexer


def batch_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "api.indexer_lambda"]


# --- tests ----------------------------------------------------------------------


def test_the_handler_indexes_a_batch_of_stream_records_in_stream_order(
    service: Service, lambda_env: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    write_some_events(service)
    assert service.notifications() == []  # nobody indexed yet
    arn, records = stream_records(service)
    keys = keys_of(records)

    caplog.set_level(logging.INFO, logger="api.indexer_lambda")
    indexer_lambda.handler(lambda_event(arn, records), None)

    assert service.notifications() == list(enumerate(keys, start=1))
    assert service.recorder.max_notification_id() == len(keys)
    # Logging configured once, at the cold start; the lines written before it returned.
    assert lambda_env == ["INFO", "flushed"]
    (logged,) = batch_logs(caplog)
    assert logged.levelno == logging.INFO
    assert logged.__dict__["records"] == len(records)
    assert logged.__dict__["indexedEvents"] == len(keys)
    assert logged.__dict__["head"] == len(keys)
    assert logged.__dict__["firstSequenceNumber"] == records[0]["dynamodb"]["SequenceNumber"]
    assert logged.__dict__["lastSequenceNumber"] == records[-1]["dynamodb"]["SequenceNumber"]
    assert logged.__dict__["eventSourceARN"] == arn


def test_the_same_batch_handed_twice_or_after_a_cold_start_is_indexed_once(
    service: Service, lambda_env: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    write_some_events(service)
    arn, records = stream_records(service)
    event = lambda_event(arn, records)
    indexer_lambda.handler(event, None)
    indexed = service.notifications()

    caplog.set_level(logging.INFO, logger="api.indexer_lambda")
    caplog.clear()  # the first batch's log line (once logging was configured, it is kept)
    indexer_lambda.handler(event, None)  # the same environment: it remembers
    cold_start()
    indexer_lambda.handler(event, None)  # a new one: the commit markers tell

    assert service.notifications() == indexed
    assert service.recorder.max_notification_id() == len(indexed) == len(keys_of(records))
    assert [r.__dict__["indexedEvents"] for r in batch_logs(caplog)] == [0, 0]


def test_a_batch_split_in_two_out_of_order_is_indexed_once_in_each_streams_order(
    service: Service, lambda_env: list[str]
) -> None:
    # What the mapping does when it bisects a failing batch: halves. The later
    # half first makes the indexer index the earlier commits it depends on
    # first; events of unrelated streams may then take other positions than in
    # the stream, but every stream keeps its order and nothing is indexed twice.
    write_some_events(service)
    arn, records = stream_records(service)
    middle = len(records) // 2

    indexer_lambda.handler(lambda_event(arn, records[middle:]), None)
    indexer_lambda.handler(lambda_event(arn, records[:middle]), None)

    notifications = service.notifications()
    assert [position for position, _ in notifications] == list(range(1, len(notifications) + 1))
    assert sorted(key for _, key in notifications) == sorted(keys_of(records))
    versions: dict[str, list[int]] = {}
    for _, (oid, version) in notifications:
        versions.setdefault(oid, []).append(version)
    for oid, indexed in versions.items():
        assert indexed == sorted(indexed), oid


def test_a_failing_batch_raises_so_the_mapping_retries_it_and_the_retry_indexes_it_once(
    service: Service,
    lambda_env: list[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_some_events(service)
    arn, records = stream_records(service)
    event = lambda_event(arn, records)
    # A misconfigured environment: its tables do not exist.
    monkeypatch.setenv("DYNAMODB_TABLE_PREFIX", "missing-" + service.prefix)
    cold_start()

    with pytest.raises(PersistenceError):
        indexer_lambda.handler(event, None)

    assert lambda_env[-1] == "flushed"  # the error's line is written before the retry
    (logged,) = batch_logs(caplog)
    assert logged.levelno == logging.ERROR
    assert logged.exc_info is not None
    assert logged.__dict__["records"] == len(records)
    assert logged.__dict__["firstSequenceNumber"] == records[0]["dynamodb"]["SequenceNumber"]
    assert service.notifications() == []

    monkeypatch.setenv("DYNAMODB_TABLE_PREFIX", service.prefix)  # fixed
    cold_start()
    indexer_lambda.handler(event, None)  # the mapping's retry
    indexer_lambda.handler(event, None)
    assert service.notifications() == list(enumerate(keys_of(records), start=1))


def test_the_handler_calls_only_what_the_indexer_role_grants(
    service: Service, lambda_env: list[str]
) -> None:
    write_some_events(service)
    arn, records = stream_records(service)
    calls = Calls()
    calls.record(lambda_indexer().client)  # the cold start, made here

    indexer_lambda.handler(lambda_event(arn, records), None)
    cold_start()
    indexer_lambda.handler(lambda_event(arn, records[len(records) // 2 :]), None)
    calls.record(lambda_indexer().client)
    indexer_lambda.handler(lambda_event(arn, records), None)

    assert calls.made, "no DynamoDB call recorded"
    assert calls.not_granted(indexer_grants(service.prefix)) == set()


def test_the_api_calls_only_what_its_role_grants_and_never_writes_the_index(
    service: Service,
) -> None:
    write_some_events(service)

    made = service.calls.made
    assert made, "no DynamoDB call recorded"
    assert service.calls.not_granted(api_grants(service.prefix)) == set()
    index_table = INDEX_TABLE.table_name(service.prefix)
    assert {action for action, table in made if table == index_table} <= {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:DescribeTable",
    }
    assert not {action for action, table in made if table == index_table} & WRITE_ACTIONS


def test_on_the_api_lambdas_settings_the_drift_check_reads_the_index_and_writes_nothing_to_it(
    service: Service, lambda_env: list[str]
) -> None:
    write_some_events(service)
    arn, records = stream_records(service)
    indexer_lambda.handler(lambda_event(arn, records), None)  # the indexer Lambda's work
    streams_calls: list[str] = []
    service.recorder.datastore.streams_client.meta.events.register(
        "before-parameter-build.dynamodbstreams",
        lambda model, **_: streams_calls.append(str(model.name)),
    )
    service.calls.made.clear()
    keys = Settings(api_keys=API_KEYS).api_keys
    service.container.settings = service.container.settings.model_copy(update={"api_keys": keys})

    with TestClient(create_app(container=service.container)) as http:
        response = http.get("/admin/projections/read-tables/check", headers=bearer(ADMIN_KEY))

    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True
    assert streams_calls == []
    index_table = INDEX_TABLE.table_name(service.prefix)
    assert {action for action, table in service.calls.made if table == index_table}
    assert not {action for action, table in service.calls.made if table == index_table} & (
        WRITE_ACTIONS
    )
    assert service.calls.not_granted(api_grants(service.prefix)) == set()
