"""Temporary AWS credentials (AWS Lambda's role) reach every DynamoDB client whole."""

from __future__ import annotations

from typing import Any

import pytest

from infra.dynamodb import kit as dynamodb_kit
from infra.settings import Settings


@pytest.fixture
def lambda_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token")


@pytest.mark.usefixtures("lambda_environment")
def test_the_session_token_goes_with_the_key_to_the_event_store_and_the_read_tables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(store="dynamodb", dynamodb_endpoint_url="http://127.0.0.1:9")
    kit = dynamodb_kit.build_kit(settings)
    made: list[Any] = []
    # The read tables are not opened here (no DynamoDB): only their client is looked at.
    monkeypatch.setattr(
        dynamodb_kit, "DynamoDBReadModel", lambda client, _prefix: made.append(client)
    )

    kit.open_read_model()
    credentials = made[0]._request_signer._credentials

    assert kit.event_store_env()["AWS_SESSION_TOKEN"] == "session-token"
    assert (credentials.access_key, credentials.token) == ("ASIAEXAMPLE", "session-token")
