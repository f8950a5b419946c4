"""An event whose stored bytes were altered past decoding: auditors still read the
feed and the histories (the entry is served with its raw bytes and marked
``undecodable``, as verify names it), and time travel says why it cannot replay."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from domain.model import gathering_aggregate_id
from infra.settings import Settings
from infra.wiring import Container
from projections.catch_up import wait_until_logged
from tests.api.conftest import ADMIN_KEY, API_KEYS, AUDITOR_KEY, bearer
from tests.api.helpers import error_of, json_of
from tests.support import create_event, create_user, register, unique
from tests.test_tamper_evidence import overwrite

AUDITOR = bearer(AUDITOR_KEY)
ADMIN = bearer(ADMIN_KEY)
GARBLED = b"\xff\xfe not what was stored"


@pytest.fixture
def settings(store_settings: dict[str, object], tmp_path: Path) -> Settings:
    return Settings(
        **store_settings,  # type: ignore[arg-type]
        data_dir=tmp_path / "data",
        environment="test",
        api_keys=API_KEYS,
    )


@pytest.fixture
def auditors_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def container_of(client: TestClient) -> Container:
    container: Container = client.app.state.container  # type: ignore[attr-defined]
    return container


@pytest.fixture
def garbled(auditors_client: TestClient) -> dict[str, Any]:
    """An event with a seat taken (version 2 of its stream), whose stored bytes are then
    replaced by bytes that decode to nothing."""
    event_id = create_event(auditors_client, capacity=3, title="Garbled")["eventId"]
    user_id = create_user(auditors_client, unique("ada"))
    assert register(auditors_client, user_id, event_id).status_code == 201
    container = container_of(auditors_client)
    wait_until_logged(container.service.recorder)
    stream = gathering_aggregate_id(event_id)
    overwrite(container, stream, 2, GARBLED)
    return {"event": event_id, "user": user_id, "stream": str(stream)}


def the_garbled_entry(entries: list[dict[str, Any]], garbled: dict[str, Any]) -> dict[str, Any]:
    (found,) = [e for e in entries if (e["stream"], e["version"]) == (garbled["stream"], 2)]
    return found


def test_the_feed_serves_an_undecodable_entry_with_its_raw_bytes(
    auditors_client: TestClient, garbled: dict[str, Any]
) -> None:
    entries = json_of(auditors_client.get("/audit/log?limit=1000", headers=AUDITOR), 200)["entries"]
    entry = the_garbled_entry(entries, garbled)
    assert entry["undecodable"] is True
    assert base64.b64decode(entry["raw"]) == GARBLED
    assert entry["type"] == "SeatTaken"
    assert entry["data"] == {}
    assert isinstance(entry["position"], int)
    others = [e for e in entries if e is not entry]
    assert others
    assert all("undecodable" not in e and "raw" not in e for e in others)
    report = json_of(auditors_client.get("/audit/verify", headers=AUDITOR), 200)
    assert report["firstBroken"]["position"] == entry["position"]


def test_the_events_history_serves_the_undecodable_entry_in_its_place(
    auditors_client: TestClient, garbled: dict[str, Any]
) -> None:
    path = f"/audit/events/{garbled['event']}/history"
    history = json_of(auditors_client.get(path, headers=AUDITOR), 200)["history"]
    assert [e["version"] for e in history] == [1, 2]
    assert the_garbled_entry(history, garbled)["undecodable"] is True
    assert "undecodable" not in history[0]


def test_time_travel_past_an_undecodable_event_is_refused_by_name(
    auditors_client: TestClient, garbled: dict[str, Any]
) -> None:
    state = f"/audit/events/{garbled['event']}/state"
    error_of(auditors_client.get(state, headers=AUDITOR), 409, "STORED_EVENT_UNDECODABLE")
    before = json_of(auditors_client.get(f"{state}?version=1", headers=AUDITOR), 200)
    assert before["registeredCount"] == 0


def test_a_command_or_check_that_must_replay_an_undecodable_event_answers_409_not_500(
    auditors_client: TestClient, garbled: dict[str, Any], settings: Settings
) -> None:
    # A process started after the bytes were altered: nothing of the stream cached.
    with TestClient(create_app(settings)) as restarted:
        joining = register(restarted, create_user(restarted, unique("bo")), garbled["event"])
        raising = restarted.put(f"/events/{garbled['event']}", json={"capacity": 6})
        check = restarted.get("/admin/projections/read-tables/check", headers=ADMIN)

    for answer in (joining, raising, check):
        error_of(answer, 409, "STORED_EVENT_UNDECODABLE")
