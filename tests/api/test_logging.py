"""JSON-lines logs: one line per request, one per registration change."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.api.helpers import json_of, service_log
from tests.support import create_event, create_user, leave, register

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def log_lines(client: TestClient) -> Iterator[Lines]:
    """What the application's root handler writes from now on, one JSON object per line."""
    with service_log() as (buffer, handler):

        def lines() -> list[dict[str, Any]]:
            handler.flush()  # lines are written in batches
            parsed = [json.loads(line) for line in buffer.getvalue().splitlines()]
            assert all(isinstance(line, dict) for line in parsed)
            return parsed

        yield lines


def requests_of(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("message") == "request"]


def changes_of(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("message") == "registration change"]


def test_each_request_logs_one_json_line_with_method_path_status_duration_and_request_id(
    client: TestClient, log_lines: Lines
) -> None:
    responses = [
        client.get("/health"),
        client.post("/users", json={"userId": "u1", "name": "N"}),
        client.post("/users", json={"userId": "u1", "name": "N"}),
        client.get("/users/ghost", headers={"X-Request-ID": "trace-1"}),
        client.post("/users", json={}),
        client.get("/no/such/route"),
        client.delete("/users"),
        client.post("/users", content=b"x" * (64 * 1024 + 1)),
    ]

    logged = requests_of(log_lines())

    assert len(logged) == len(responses)
    for line, response in zip(logged, responses, strict=True):
        assert line["method"] == response.request.method
        assert line["path"] == response.request.url.path
        assert line["status"] == response.status_code
        assert isinstance(line["durationMs"], int | float)
        assert line["durationMs"] >= 0
        assert line["requestId"] == response.headers["X-Request-ID"]
        assert line["level"] == "INFO"
        assert line["logger"] == "api.middleware"
        assert line["time"]
    assert [line["status"] for line in logged] == [200, 201, 409, 404, 400, 404, 405, 413]
    assert logged[3]["requestId"] == "trace-1"


def test_request_records_carry_their_fields_as_attributes(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="api.middleware"):
        client.get("/events", params={"limit": 5})

    records = [r for r in caplog.records if r.getMessage() == "request"]
    assert len(records) == 1
    fields = vars(records[0])
    assert (fields["method"], fields["path"], fields["status"]) == ("GET", "/events", 200)
    assert fields["durationMs"] >= 0


def test_a_confirmed_registration_logs_operation_user_event_and_outcome(
    client: TestClient, log_lines: Lines
) -> None:
    user = create_user(client)
    event = create_event(client)

    response = client.post(
        f"/users/{user}/registrations",
        json={"eventId": event["eventId"]},
        headers={"X-Request-ID": "reg-1"},
    )

    assert response.status_code == 201
    changes = changes_of(log_lines())
    assert len(changes) == 1
    change = changes[0]
    assert change["operation"] == "register"
    assert change["userId"] == user
    assert change["eventId"] == event["eventId"]
    assert change["outcome"] == "confirmed"
    assert change["requestId"] == "reg-1"


def test_a_waitlisted_registration_logs_its_outcome(client: TestClient, log_lines: Lines) -> None:
    event = create_event(client, capacity=1, waitlistEnabled=True)
    register(client, create_user(client), event["eventId"])
    user = create_user(client)

    register(client, user, event["eventId"])

    change = changes_of(log_lines())[-1]
    assert (change["operation"], change["userId"], change["outcome"]) == (
        "register",
        user,
        "waitlist",
    )


def test_a_refused_registration_logs_no_change(client: TestClient, log_lines: Lines) -> None:
    event = create_event(client, capacity=1)
    register(client, create_user(client), event["eventId"])
    before = len(changes_of(log_lines()))

    assert register(client, create_user(client), event["eventId"]).status_code == 409

    assert len(changes_of(log_lines())) == before


def test_leaving_logs_the_change_and_the_promotion_with_counts_before_and_after(
    client: TestClient, log_lines: Lines
) -> None:
    event = create_event(client, capacity=1, waitlistEnabled=True)
    event_id = event["eventId"]
    first, second, third = (create_user(client) for _ in range(3))
    for user in (first, second, third):
        register(client, user, event_id)

    response = client.delete(
        f"/users/{first}/registrations/{event_id}", headers={"X-Request-ID": "leave-1"}
    )

    assert response.status_code == 204
    changes = [c for c in changes_of(log_lines()) if c["requestId"] == "leave-1"]
    assert [c["operation"] for c in changes] == ["leave", "promote"]
    left, promotion = changes
    assert (left["userId"], left["eventId"]) == (first, event_id)
    assert "confirmed" in left["outcome"]
    assert promotion["eventId"] == event_id
    assert promotion["userIds"] == [second]
    assert promotion["before"] == {"registeredCount": 1, "waitlistCount": 2, "capacity": 1}
    assert promotion["after"] == {"registeredCount": 1, "waitlistCount": 1, "capacity": 1}


def test_raising_capacity_logs_the_promotion_with_counts_before_and_after(
    client: TestClient, log_lines: Lines
) -> None:
    event = create_event(client, capacity=1, waitlistEnabled=True)
    event_id = event["eventId"]
    users = [create_user(client) for _ in range(4)]
    for user in users:
        register(client, user, event_id)

    json_of(client.put(f"/events/{event_id}", json={"capacity": 3}), 200)

    promotions = [c for c in changes_of(log_lines()) if c["operation"] == "promote"]
    assert len(promotions) == 1
    promotion = promotions[0]
    assert promotion["userIds"] == users[1:3]
    assert promotion["before"] == {"registeredCount": 1, "waitlistCount": 3, "capacity": 1}
    assert promotion["after"] == {"registeredCount": 3, "waitlistCount": 1, "capacity": 3}


def test_a_waitlisted_user_leaving_logs_no_promotion(client: TestClient, log_lines: Lines) -> None:
    event = create_event(client, capacity=1, waitlistEnabled=True)
    first, second = create_user(client), create_user(client)
    register(client, first, event["eventId"])
    register(client, second, event["eventId"])

    leave(client, second, event["eventId"])

    last = changes_of(log_lines())[-1]
    assert (last["operation"], last["userId"]) == ("leave", second)
    assert "waitlist" in last["outcome"]
    assert not [c for c in changes_of(log_lines()) if c["operation"] == "promote"]


def test_an_unexpected_failure_logs_the_error_and_a_500_request_line(
    client: TestClient, log_lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = client.app
    assert isinstance(app, FastAPI)

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(app.state.container.service, "create_user_command", explode)

    response = client.post(
        "/users", json={"userId": "u1", "name": "N"}, headers={"X-Request-ID": "fail-1"}
    )

    assert response.status_code == 500
    lines = [line for line in log_lines() if line.get("requestId") == "fail-1"]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert errors
    assert any("RuntimeError" in str(line.get("exc_info", "")) for line in errors)
    requests = requests_of(lines)
    assert len(requests) == 1
    assert (requests[0]["method"], requests[0]["status"]) == ("POST", 500)


def test_a_request_line_carries_the_dynamodb_capacity_it_consumed_and_none_on_sqlite(
    client: TestClient, log_lines: Lines, store_name: str
) -> None:
    response = client.post("/users", json={"userId": "metered", "name": "M"})

    assert response.status_code == 201
    (line,) = [r for r in requests_of(log_lines()) if r["path"] == "/users"]
    if store_name == "dynamodb":
        assert line["consumedCapacity"]["writeUnits"] > 0
    else:
        assert "consumedCapacity" not in line
