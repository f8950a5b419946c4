"""A DynamoDB call's retries and throttling reach the metrics listeners, labelled
by operation and table (the hook botocore calls after every call)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from infra.dynamodb import capacity


@dataclass
class Heard:
    answers: list[tuple[str, str, int, bool]] = field(default_factory=list)
    units: list[tuple[str, float, float]] = field(default_factory=list)

    def consumed(self, table: str, read_units: float, write_units: float) -> None:
        self.units.append((table, read_units, write_units))

    def answered(self, operation: str, table: str, retries: int, throttled: bool) -> None:
        self.answers.append((operation, table, retries, throttled))


@dataclass
class Operation:
    name: str


@pytest.fixture
def heard(monkeypatch: pytest.MonkeyPatch) -> Heard:
    listener = Heard()
    monkeypatch.setattr(capacity, "_LISTENERS", [])
    capacity.add_listener(listener)
    capacity.add_listener(listener)  # added once
    return listener


def answer(status: int, retries: int, error: str | None = None, **more: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = {
        "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": retries},
        **more,
    }
    if error is not None:
        parsed["Error"] = {"Code": error}
    return parsed


def test_a_throttled_call_is_heard_with_its_retries_and_table(heard: Heard) -> None:
    parsed = answer(400, 4, "ProvisionedThroughputExceededException")

    capacity._record(parsed, Operation("Query"), {"table": "regsvc-events"})

    assert heard.answers == [("Query", "regsvc-events", 4, True)]
    assert heard.units == []


def test_a_call_answered_after_retries_is_heard_with_its_units(heard: Heard) -> None:
    consumed = {"TableName": "regsvc-users", "CapacityUnits": 0.5}
    parsed = answer(200, 2, ConsumedCapacity=consumed)

    capacity._record(parsed, Operation("GetItem"), {"table": "regsvc-users"})

    assert heard.answers == [("GetItem", "regsvc-users", 2, False)]
    assert heard.units == [("regsvc-users", 0.5, 0.0)]
