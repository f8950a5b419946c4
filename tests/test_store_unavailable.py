"""A store that stays unreachable answers 503 SERVICE_UNAVAILABLE, never 500."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from infra.devtools.dynamodb_local import QUICK_START_JVM_OPTIONS, DynamoDBLocal
from infra.settings import Settings
from tests.support import fresh_store_settings


@pytest.fixture(scope="module")
def client_whose_store_goes_away(
    store_name: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    if store_name != "dynamodb":
        pytest.skip("the embedded store is a local file: it cannot become unreachable")
    with DynamoDBLocal(jvm_options=QUICK_START_JVM_OPTIONS) as own_dynamodb:
        settings = Settings(
            **fresh_store_settings("dynamodb", own_dynamodb.endpoint_url),  # type: ignore[arg-type]
            data_dir=tmp_path_factory.mktemp("gone") / "data",
            environment="test",
            dynamodb_max_attempts=2,  # fail fast: botocore's retries are not under test
        )
        client = TestClient(create_app(settings))
        client.__enter__()
        assert client.post("/users", json={"userId": "alice", "name": "A"}).status_code == 201
    # DynamoDB Local has stopped here: the service's endpoint no longer answers.
    try:
        yield client
    finally:
        client.__exit__(None, None, None)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/users/alice", None),
        ("POST", "/users", {"userId": "bob", "name": "Bob"}),
        ("POST", "/events", {"title": "T", "date": "2025-01-01", "capacity": 3}),
        ("GET", "/events", None),
    ],
)
def test_requests_to_an_unreachable_store_answer_503_with_the_error_envelope(
    client_whose_store_goes_away: TestClient,
    method: str,
    path: str,
    body: dict[str, object] | None,
) -> None:
    response = client_whose_store_goes_away.request(method, path, json=body)

    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "SERVICE_UNAVAILABLE"
    assert "Traceback" not in response.text
    assert response.headers["Retry-After"] == "1"


def test_ready_answers_503_naming_the_store_while_it_is_unreachable(
    client_whose_store_goes_away: TestClient,
) -> None:
    response = client_whose_store_goes_away.get("/ready")

    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "SERVICE_UNAVAILABLE"
    assert [detail["field"] for detail in error["details"]] == ["store"]
