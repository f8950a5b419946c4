"""Faults DynamoDB really produces, injected with botocore event hooks.

Throttling and ``TransactionConflict`` are retried transparently with bounded
back-off. A write whose answer is lost (a timeout after DynamoDB committed it)
is answered truthfully: the command succeeds once, it is neither reported as
failed nor applied twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse, HTTPHeaders
from botocore.exceptions import ReadTimeoutError
from botocore.httpsession import URLLib3Session
from eventsourcing.persistence import IntegrityError, StoredEvent

from domain.application import GatheringSpec
from infra.dynamodb import DynamoDBApplicationRecorder
from infra.wiring import Container
from tests.dynamodb.utils import new_datastore

TRANSACT = "before-send.dynamodb.TransactWriteItems"


class _Body:
    def __init__(self, content: bytes) -> None:
        self.content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.content


def _error(request: AWSPreparedRequest, kind: str, **fields: object) -> AWSResponse:
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{kind}", **fields})
    headers = HTTPHeaders()
    headers["x-amzn-RequestId"] = "injected"
    headers["Content-Type"] = "application/x-amz-json-1.0"
    return AWSResponse(request.url, 400, headers, _Body(body.encode()))


def _items_of(request: AWSPreparedRequest) -> int:
    body = request.body
    raw = body if isinstance(body, bytes | str) else b"{}"
    return len(json.loads(raw)["TransactItems"])


class Injector:
    """Makes the first ``times`` TransactWriteItems calls meet ``fault``."""

    def __init__(
        self, container: Container, times: int, fault: Callable[[AWSPreparedRequest], Any]
    ) -> None:
        self.client = container.service.factory.datastore.client  # type: ignore[attr-defined]
        self.left = times
        self.fault = fault
        self.calls = 0

    def __call__(self, request: AWSPreparedRequest, **_: Any) -> Any:
        self.calls += 1
        if self.left <= 0:
            return None
        self.left -= 1
        return self.fault(request)

    def __enter__(self) -> Injector:
        self.client.meta.events.register_first(TRANSACT, self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.meta.events.unregister(TRANSACT, self)


def throttled(request: AWSPreparedRequest) -> AWSResponse:
    return _error(request, "ThrottlingException", message="Rate of requests exceeds the limit")


def conflicting(request: AWSPreparedRequest) -> AWSResponse:
    reasons = [{"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}]
    reasons += [{"Code": "None"}] * (_items_of(request) - 1)
    return _error(
        request,
        "TransactionCanceledException",
        message="Transaction cancelled, please refer cancellation reasons for specific reasons "
        "[TransactionConflict]",
        CancellationReasons=reasons,
    )


def committed_but_answer_lost(request: AWSPreparedRequest) -> None:
    """Sends the request for real, then behaves as if the answer never came."""
    answer = URLLib3Session().send(request)
    assert answer.status_code == 200, answer.content
    raise ReadTimeoutError(endpoint_url=request.url)


@pytest.mark.parametrize("fault", [throttled, conflicting], ids=["throttling", "conflict"])
def test_a_throttled_or_conflicting_append_is_retried_and_succeeds_once(
    container: Container, fault: Callable[[AWSPreparedRequest], Any]
) -> None:
    service, read_model = container.service, container.read_model

    with Injector(container, times=2, fault=fault) as injector:
        service.create_user("ada", "Ada")

    assert injector.calls == 3
    # The name is stored sealed (infra/personal_data.py): opened with ada's key.
    sealed = service.get_user("ada").name
    assert sealed is not None
    assert container.personal_data.reveal("ada", "name", sealed) == "Ada"
    row = read_model.get_user("ada")
    assert row is not None
    assert row.name == sealed


@pytest.fixture
def ada_and_an_event(container: Container) -> Container:
    """User "ada" and event "g" (5 seats) exist."""
    container.service.create_user("ada", "Ada")
    container.service.create_gathering(
        GatheringSpec(gathering_id="g", title="G", date="2030-01-01", capacity=5)
    )
    return container


def test_a_write_whose_answer_was_lost_once_is_answered_as_the_success_it_was(
    ada_and_an_event: Container,
) -> None:
    container, service = ada_and_an_event, ada_and_an_event.service

    with Injector(container, times=1, fault=committed_but_answer_lost):
        outcome = service.register("ada", "g")

    assert str(outcome.status) == "confirmed"
    assert container.read_model.get_event("g").registered_count == 1  # type: ignore[union-attr]


def test_a_write_whose_every_answer_was_lost_rereads_its_stream_and_reports_success(
    ada_and_an_event: Container,
) -> None:
    container, service = ada_and_an_event, ada_and_an_event.service

    with Injector(container, times=100, fault=committed_but_answer_lost):
        outcome = service.register("ada", "g")

    assert str(outcome.status) == "confirmed"
    assert container.read_model.get_event("g").registered_count == 1  # type: ignore[union-attr]
    with pytest.raises(Exception, match="already"):
        service.register("ada", "g")


def test_a_single_event_put_whose_answers_were_lost_is_recorded_once_and_reported_done(
    dynamodb_endpoint: str,
) -> None:
    datastore = new_datastore(dynamodb_endpoint)
    recorder = DynamoDBApplicationRecorder(datastore)
    recorder.create_table()
    event = StoredEvent(uuid4(), 1, "tests.Happened", b'{"at": "2030-01-01"}')
    lost = "before-send.dynamodb.PutItem"
    client = datastore.client

    def answer_lost(request: AWSPreparedRequest, **_: Any) -> None:
        URLLib3Session().send(request)  # the first commits; the retries fail their condition
        raise ReadTimeoutError(endpoint_url=request.url)

    client.meta.events.register_first(lost, answer_lost)
    try:
        recorder.insert_events([event])  # botocore retries, each retry fails its condition
    finally:
        client.meta.events.unregister(lost, answer_lost)
        datastore.close()

    stored = DynamoDBApplicationRecorder(
        new_datastore(dynamodb_endpoint, table_prefix=datastore.table_prefix)
    ).select_events(event.originator_id)
    assert [(s.originator_version, s.state) for s in stored] == [(1, event.state)]


def test_a_conflicting_put_by_another_writer_is_still_a_conflict(dynamodb_endpoint: str) -> None:
    datastore = new_datastore(dynamodb_endpoint)
    recorder = DynamoDBApplicationRecorder(datastore)
    recorder.create_table()
    mine = StoredEvent(uuid4(), 1, "tests.Happened", b'{"by": "me"}')
    theirs = StoredEvent(mine.originator_id, 1, "tests.Happened", b'{"by": "them"}')
    recorder.insert_events([theirs])

    with pytest.raises(IntegrityError):
        recorder.insert_events([mine])
    datastore.close()
