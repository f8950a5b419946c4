"""What admins use: the projections and their lag, rebuilds, and the drift check."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from infra.dynamodb.read_tables import DynamoDBReadModel
from infra.settings import Settings
from infra.wiring import Container, build_container
from projections.catch_up import wait_until_logged
from tests.api.conftest import ADMIN_KEY, API_KEYS, AUDITOR_KEY, CLIENT_KEY, bearer
from tests.api.helpers import error_of, json_of
from tests.support import create_event, create_user, register

ADMIN = bearer(ADMIN_KEY)


@pytest.fixture
def admin_app(settings: Settings) -> Iterator[tuple[TestClient, Container]]:
    keyed = settings.model_copy(update={"api_keys": Settings(api_keys=API_KEYS).api_keys})
    container = build_container(keyed)
    container.start()
    try:
        with TestClient(create_app(container=container)) as client:
            yield client, container
    finally:
        container.close()


def test_only_admins_see_the_projections(keyed_client: TestClient) -> None:
    error_of(keyed_client.get("/admin/projections"), 401, "UNAUTHORIZED")
    for key in (AUDITOR_KEY, CLIENT_KEY):
        error_of(keyed_client.get("/admin/projections", headers=bearer(key)), 403, "FORBIDDEN")
    json_of(keyed_client.get("/admin/projections", headers=ADMIN), 200)


def test_live_read_tables_are_at_the_head_with_no_lag(
    admin_app: tuple[TestClient, Container],
) -> None:
    client, container = admin_app
    user = create_user(client)
    register(client, user, create_event(client)["eventId"])
    wait_until_logged(container.service.recorder)
    (projection,) = json_of(client.get("/admin/projections", headers=ADMIN), 200)["projections"]
    head = container.service.recorder.max_notification_id()
    assert projection == {
        "name": "read-tables",
        "position": head,
        "head": head,
        "lag": 0,
        "lagSeconds": 0.0,
        "state": "live",
    }


def test_a_rebuild_shows_its_progress_and_the_age_of_what_it_has_not_folded(
    admin_app: tuple[TestClient, Container],
) -> None:
    client, container = admin_app
    for _ in range(3):
        create_user(client)
    wait_until_logged(container.service.recorder)
    head = container.service.recorder.max_notification_id()
    container.read_model.reset()
    (rebuilding,) = json_of(client.get("/admin/projections", headers=ADMIN), 200)["projections"]
    assert (rebuilding["state"], rebuilding["position"], rebuilding["lag"]) == (
        "rebuilding",
        0,
        head,
    )
    assert rebuilding["progress"] == 0
    assert rebuilding["lagSeconds"] > 0
    container.projector.catch_up()
    (live,) = json_of(client.get("/admin/projections", headers=ADMIN), 200)["projections"]
    assert (live["state"], live["lag"], live["lagSeconds"]) == ("live", 0, 0)


def wait_until_live(client: TestClient, timeout: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        (projection,) = json_of(client.get("/admin/projections", headers=ADMIN), 200)["projections"]
        if projection["state"] == "live" or time.monotonic() > deadline:
            return dict(projection)
        time.sleep(0.05)


def test_a_rebuild_is_accepted_shows_rebuilding_at_once_and_ends_live_and_equal(
    admin_app: tuple[TestClient, Container],
) -> None:
    client, container = admin_app
    users = [create_user(client) for _ in range(4)]
    event_id = create_event(client, capacity=2, waitlistEnabled=True)["eventId"]
    for user in users:
        register(client, user, event_id)
    # Progress is a share of the log's head: not a race with the indexer thread.
    wait_until_logged(container.service.recorder)
    before = json_of(client.get(f"/events/{event_id}"), 200)

    accepted = client.post("/admin/projections/read-tables/rebuild", headers=ADMIN)

    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["state"] == "rebuilding"
    assert accepted.json()["progress"] == 0
    assert json_of(client.get(f"/events/{event_id}"), 200) == before  # still serving
    assert wait_until_live(client)["state"] == "live"
    assert json_of(client.get(f"/events/{event_id}"), 200) == before
    report = json_of(client.get("/admin/projections/read-tables/check", headers=ADMIN), 200)
    assert (report["ok"], report["differences"], report["truncated"]) == (True, [], False)


def test_a_second_rebuild_while_one_runs_is_409_and_not_replayed_once_it_ends(
    admin_app: tuple[TestClient, Container],
) -> None:
    client, container = admin_app
    create_user(client)
    container.rebuilder.begin()  # a rebuild holds the lease (as another process would)
    keyed = {**ADMIN, "Idempotency-Key": f"rebuild-{uuid.uuid4().hex}"}

    refused = client.post("/admin/projections/read-tables/rebuild", headers=keyed)

    error_of(refused, 409, "REBUILD_IN_PROGRESS")
    (projection,) = json_of(client.get("/admin/projections", headers=ADMIN), 200)["projections"]
    assert projection["state"] == "rebuilding"
    container.rebuilder.run()
    assert wait_until_live(client)["state"] == "live"
    # The refusal said "not now": a retry with the same key runs the rebuild.
    retried = client.post("/admin/projections/read-tables/rebuild", headers=keyed)
    assert retried.status_code == 202, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    assert wait_until_live(client)["state"] == "live"


def test_unknown_projections_are_404_and_rebuilds_and_checks_are_for_admins_only(
    admin_app: tuple[TestClient, Container],
) -> None:
    client, _ = admin_app
    for method, path in (("POST", "rebuild"), ("GET", "check")):
        error_of(
            client.request(method, f"/admin/projections/seats/{path}", headers=ADMIN),
            404,
            "PROJECTION_NOT_FOUND",
        )
        url = f"/admin/projections/read-tables/{path}"
        error_of(client.request(method, url), 401, "UNAUTHORIZED")
        for key in (AUDITOR_KEY, CLIENT_KEY):
            error_of(client.request(method, url, headers=bearer(key)), 403, "FORBIDDEN")


def test_the_check_names_a_row_altered_behind_the_services_back(
    admin_app: tuple[TestClient, Container],
) -> None:
    client, container = admin_app
    event_id = create_event(client, capacity=5)["eventId"]
    register(client, create_user(client), event_id)
    alter_registered_count(container, event_id, 4)

    report = json_of(client.get("/admin/projections/read-tables/check", headers=ADMIN), 200)

    assert report["ok"] is False
    (difference,) = report["differences"]
    assert (difference["table"], difference["key"]) == ("gatherings", event_id)
    assert difference["live"]["registeredCount"] == 4
    assert difference["expected"]["registeredCount"] == 1


def alter_registered_count(container: Container, event_id: str, count: int) -> None:
    read_model = container.read_model
    if isinstance(read_model, DynamoDBReadModel):
        read_model.client.update_item(
            TableName=read_model.gatherings_table,
            Key={"eventId": {"S": event_id}},
            UpdateExpression="SET registeredCount = :n",
            ExpressionAttributeValues={":n": {"N": str(count)}},
        )
        return
    with sqlite3.connect(container.settings.event_store_path) as db:
        db.execute(
            "UPDATE gatherings SET registered_count = ? WHERE event_id = ?", (count, event_id)
        )


def test_the_check_is_exact_while_writes_continue(
    admin_app: tuple[TestClient, Container],
) -> None:
    """Rows the writes change while the check reads them hold values the log gives
    them at some point of the read: no false alarm, however busy the service."""
    client, container = admin_app
    event_id = create_event(client, capacity=3, waitlistEnabled=True)["eventId"]
    stop = threading.Event()
    rounds = [0]  # rounds of writes done
    wrote = threading.Condition()

    def keep_writing() -> None:
        service = container.service
        joined: list[str] = []
        while not stop.is_set():
            user = service.create_user(f"busy-{uuid.uuid4().hex[:8]}", "Busy")
            service.register(user.user_id, event_id)
            joined.append(user.user_id)
            if len(joined) > 4:  # seats free up and the line moves: rows change and go
                service.leave(joined.pop(0), event_id)
            with wrote:
                rounds[0] += 1
                wrote.notify_all()

    def check_after_a_write() -> dict[str, Any]:
        # A check may hold the store while it reads, so the writer may not get
        # in between two checks on its own: each check waits for a new write.
        with wrote:
            seen = rounds[0]
            assert wrote.wait_for(lambda: rounds[0] > seen, timeout=60), "no write came"
        return json_of(client.get("/admin/projections/read-tables/check", headers=ADMIN), 200)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        reports = [check_after_a_write() for _ in range(3)]
    finally:
        stop.set()
        writer.join()
    assert [r["differences"] for r in reports] == [[], [], []]
    assert reports[-1]["position"] > reports[0]["position"]  # the writes went on meanwhile


def a_dead_process_id() -> int:
    """The id of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_a_rebuild_whose_process_died_shows_interrupted_and_how_to_resume(
    admin_app: tuple[TestClient, Container],
) -> None:
    client, container = admin_app
    create_user(client)
    wait_until_logged(container.service.recorder)
    dead = f"{socket.gethostname()}:{a_dead_process_id()}:{uuid.uuid4().hex[:8]}"
    container.rebuilder.target.claim(dead, container.rebuilder.lease_seconds)

    (projection,) = json_of(client.get("/admin/projections", headers=ADMIN), 200)["projections"]

    assert projection["state"] == "interrupted"
    assert projection["progress"] == 0
    assert "POST /admin/projections/read-tables/rebuild" in projection["resume"]
    resumed = client.post("/admin/projections/read-tables/rebuild", headers=ADMIN)
    assert resumed.status_code == 202, resumed.text
    assert wait_until_live(client)["state"] == "live"


def test_a_rebuild_whose_lease_lapsed_on_another_host_shows_interrupted(
    admin_app: tuple[TestClient, Container], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, container = admin_app
    create_user(client)
    container.rebuilder.target.claim("another-host:1:abcdef12", container.rebuilder.lease_seconds)
    (held,) = json_of(client.get("/admin/projections", headers=ADMIN), 200)["projections"]
    assert held["state"] == "rebuilding"  # its lease is fresh: it may still run

    monkeypatch.setattr(container.rebuilder, "lease_seconds", 0.0)  # and now it has lapsed
    (lapsed,) = json_of(client.get("/admin/projections", headers=ADMIN), 200)["projections"]

    assert lapsed["state"] == "interrupted"
    assert "resume" in lapsed
