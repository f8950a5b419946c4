"""What admins read: the projections and their lag."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
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
