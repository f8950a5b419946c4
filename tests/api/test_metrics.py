"""GET /metrics counts what the service did, labelled by route templates and
codes (never ids), and only the callers METRICS_ACCESS names may read it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from infra.settings import Settings
from projections.catch_up import wait_until_logged
from tests.api.conftest import ADMIN_KEY, API_KEYS, AUDITOR_KEY, bearer
from tests.api.helpers import error_of
from tests.metrics_text import sample, total
from tests.support import create_event, create_user, fresh_store_settings, leave, register, unique

LOOPBACK = ("127.0.0.1", 50000)
ELSEWHERE = ("203.0.113.7", 50000)


def _settings(
    store_name: str, endpoint: str | None, tmp: pytest.TempPathFactory, **fields: object
) -> Settings:
    return Settings(
        **fresh_store_settings(store_name, endpoint),  # type: ignore[arg-type]
        data_dir=tmp.mktemp("metrics") / "data",
        environment="test",
        api_keys=API_KEYS,
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def app_settings(
    store_name: str, endpoint: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return _settings(store_name, endpoint, tmp_path_factory)


@pytest.fixture(scope="module")
def local_client(app_settings: Settings) -> Iterator[TestClient]:
    """A client on the loopback interface, which the default METRICS_ACCESS admits."""
    with TestClient(create_app(app_settings), client=LOOPBACK) as client:
        yield client


def metrics_of(client: TestClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    text: str = response.text
    return text


def test_a_request_for_an_event_is_counted_under_its_route_template_not_its_id(
    local_client: TestClient,
) -> None:
    event_id = unique("secret-event")
    labels = {"route": "/events/{eventId}", "method": "GET", "status": "404"}
    before = sample(metrics_of(local_client), "regsvc_http_requests_total", **labels)

    assert local_client.get(f"/events/{event_id}").status_code == 404

    text = metrics_of(local_client)
    assert sample(text, "regsvc_http_requests_total", **labels) == before + 1
    assert event_id not in text


def test_a_path_no_route_answers_is_counted_as_unmatched(local_client: TestClient) -> None:
    path = f"/{unique('nowhere')}"
    labels = {"route": "unmatched", "method": "GET", "status": "404"}
    before = sample(metrics_of(local_client), "regsvc_http_requests_total", **labels)

    local_client.get(path)

    text = metrics_of(local_client)
    assert sample(text, "regsvc_http_requests_total", **labels) == before + 1
    assert path not in text


def test_the_counts_and_the_latency_histogram_match_the_requests_sent(
    local_client: TestClient,
) -> None:
    labels = {"route": "/users/{userId}", "method": "GET"}
    text = metrics_of(local_client)
    counted = sample(text, "regsvc_http_requests_total", **labels, status="404")
    timed = sample(text, "regsvc_http_request_duration_seconds_count", **labels)

    for _ in range(7):
        local_client.get(f"/users/{unique('nobody')}")

    text = metrics_of(local_client)
    assert sample(text, "regsvc_http_requests_total", **labels, status="404") == counted + 7
    assert sample(text, "regsvc_http_request_duration_seconds_count", **labels) == timed + 7


def test_command_outcomes_promotions_and_batches_are_counted(local_client: TestClient) -> None:
    def counts() -> dict[str, float]:
        text = metrics_of(local_client)
        outcomes = ("confirmed", "waitlisted", "ALREADY_ON_WAITLIST")
        found = {
            o: sample(text, "regsvc_commands_total", command="register", outcome=o)
            for o in outcomes
        }
        found["left"] = sample(text, "regsvc_commands_total", command="leave", outcome="ok")
        found["promotions"] = sample(text, "regsvc_promotions_total")
        found["batches"] = sample(text, "regsvc_batch_commands_count")
        found["commit_times"] = sample(text, "regsvc_batch_commit_seconds_count")
        return found

    event_id = create_event(local_client, capacity=1, waitlistEnabled=True)["eventId"]
    first, second = create_user(local_client), create_user(local_client)
    before = counts()

    assert register(local_client, first, event_id).status_code == 201
    assert register(local_client, second, event_id).status_code == 201
    assert register(local_client, second, event_id).status_code == 409
    assert leave(local_client, first, event_id).status_code in (200, 204)

    after = counts()
    for counted in ("confirmed", "waitlisted", "ALREADY_ON_WAITLIST", "left", "promotions"):
        assert after[counted] == before[counted] + 1, counted
    assert after["batches"] >= before["batches"] + 3
    assert after["commit_times"] == after["batches"]


def test_an_idempotent_replay_is_counted(local_client: TestClient) -> None:
    key = {"Idempotency-Key": unique("key")}
    body = {"userId": unique("user"), "name": "Replayed"}
    labels = {"route": "/users", "method": "POST", "status": "201"}
    earlier = metrics_of(local_client)
    before = sample(earlier, "regsvc_idempotent_replays_total")
    answered_before = sample(earlier, "regsvc_http_requests_total", **labels)

    assert local_client.post("/users", json=body, headers=key).status_code == 201
    replay = local_client.post("/users", json=body, headers=key)

    assert replay.headers["Idempotent-Replayed"] == "true"
    text = metrics_of(local_client)
    assert sample(text, "regsvc_idempotent_replays_total") == before + 1
    # The replay, answered before routing, is counted under its route too.
    assert sample(text, "regsvc_http_requests_total", **labels) == answered_before + 2


def test_the_read_tables_position_and_lag_are_reported(local_client: TestClient) -> None:
    create_user(local_client)
    # On DynamoDB the log's positions come from the feed, indexed from the stream.
    wait_until_logged(local_client.app.state.container.service.recorder)  # type: ignore[attr-defined]

    text = metrics_of(local_client)

    assert sample(text, "regsvc_read_tables_position") >= 1
    assert sample(text, "regsvc_read_tables_position") == sample(text, "regsvc_event_store_head")
    assert sample(text, "regsvc_read_tables_lag_events") == 0
    assert sample(text, "regsvc_read_tables_live") == 1


def test_by_default_only_loopback_clients_and_admin_keys_read_the_metrics(
    app_settings: Settings,
) -> None:
    with TestClient(create_app(app_settings), client=ELSEWHERE) as remote:
        error_of(remote.get("/metrics"), 403, "FORBIDDEN")
        error_of(remote.get("/metrics", headers=bearer(AUDITOR_KEY)), 403, "FORBIDDEN")
        assert remote.get("/metrics", headers=bearer(ADMIN_KEY)).status_code == 200


@pytest.mark.parametrize(
    ("access", "headers", "client", "status"),
    [
        ("open", {}, ELSEWHERE, 200),
        ("auditor", bearer(AUDITOR_KEY), ELSEWHERE, 200),
        ("auditor", {}, LOOPBACK, 401),
        ("admin", bearer(AUDITOR_KEY), LOOPBACK, 403),
        ("admin", bearer(ADMIN_KEY), ELSEWHERE, 200),
    ],
)
def test_metrics_access_names_who_may_read(
    store_name: str,
    endpoint: str | None,
    tmp_path_factory: pytest.TempPathFactory,
    access: str,
    headers: dict[str, str],
    client: tuple[str, int],
    status: int,
) -> None:
    settings = _settings(store_name, endpoint, tmp_path_factory, metrics_access=access)
    with TestClient(create_app(settings), client=client) as http:
        assert http.get("/metrics", headers=headers).status_code == status


def test_ready_answers_200_naming_the_checks_that_passed(local_client: TestClient) -> None:
    response = local_client.get("/ready")

    assert response.status_code == 200, response.text
    assert {"store", "readTables"} <= set(response.json()["checks"])
    assert local_client.get("/health").status_code == 200


def test_ready_answers_503_naming_the_read_tables_while_they_lag_the_log(
    local_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_user(local_client)
    container = local_client.app.state.container  # type: ignore[attr-defined]
    wait_until_logged(container.service.recorder)  # on DynamoDB the log's head comes from the feed
    # As while a rebuild's switch catches the new tables up: they hold less than the log.
    monkeypatch.setattr(container.read_model, "log_position", lambda: 0)

    response = local_client.get("/ready")

    error = error_of(response, 503, "SERVICE_UNAVAILABLE")
    assert [d["field"] for d in error["details"]] == ["readTables"]
    assert "readTables" in error["message"]
    assert local_client.get("/health").status_code == 200


def test_ready_answers_503_naming_the_feed_while_its_lag_passes_the_bound(
    local_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = local_client.app.state.container  # type: ignore[attr-defined]
    if container.indexer is None:
        pytest.skip("SQLite's log is written with the events: it has no feed to lag")
    lag = container.indexer.lag()
    bound = container.settings.ready_max_feed_lag_seconds
    behind = dataclasses.replace(lag, pending_records=3, oldest_pending_seconds=bound + 1)
    monkeypatch.setattr(container.indexer, "lag", lambda: behind)

    response = local_client.get("/ready")

    error = error_of(response, 503, "SERVICE_UNAVAILABLE")
    assert [d["field"] for d in error["details"]] == ["feed"]
    text = metrics_of(local_client)
    assert sample(text, "regsvc_feed_pending_records") == 3


def test_the_store_s_consumed_capacity_is_counted_per_table(local_client: TestClient) -> None:
    if local_client.app.state.container.kit.metering is None:  # type: ignore[attr-defined]
        pytest.skip("SQLite has no capacity units to count")
    name = "regsvc_dynamodb_consumed_units_total"
    before = total(metrics_of(local_client), name, kind="write")

    create_user(local_client)

    text = metrics_of(local_client)
    assert total(text, name, kind="write") > before
    tables = {
        s.labels["table"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name
    }
    prefix = local_client.app.state.container.settings.dynamodb_table_prefix  # type: ignore[attr-defined]
    assert any(table.startswith(prefix) for table in tables)
