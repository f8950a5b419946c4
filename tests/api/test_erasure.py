"""Erasure without breaking history: a user's name is stored sealed under their own key,
and erasing them destroys the key (crypto-shredding).

Each test runs on the store under test (``--store sqlite`` or ``--store dynamodb``)
and looks for the name's bytes in everything the store holds: on SQLite the
database file and its WAL read raw, on DynamoDB a scan of every table.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.cli import export
from api.main import create_app
from infra.logs import flush_logs
from infra.settings import Settings
from infra.wiring import Container
from projections.catch_up import wait_until_logged
from tests.api.conftest import ADMIN_KEY, API_KEYS, AUDITOR_KEY, CLIENT_KEY, bearer
from tests.api.helpers import service_log
from tests.support import create_event, register, unique

ADMIN = bearer(ADMIN_KEY)
AUDITOR = bearer(AUDITOR_KEY)


@pytest.fixture
def app_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_keys": Settings(api_keys=API_KEYS).api_keys})


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings)) as test_client:
        yield test_client


@pytest.fixture
def log(client: TestClient) -> Iterator[io.StringIO]:
    """Everything the service logs from now on (its JSON lines)."""
    with service_log() as (buffer, _):
        try:
            yield buffer
        finally:
            flush_logs()


def container_of(client: TestClient) -> Container:
    container: Container = client.app.state.container  # type: ignore[attr-defined]
    return container


def a_name() -> str:
    """A name whose bytes occur nowhere else."""
    return f"Zephyrine Quillon-{uuid.uuid4().hex}"


def stored_bytes(client: TestClient) -> bytes:
    """Everything the store holds, as bytes: the SQLite files read raw (database,
    WAL), or a scan of every DynamoDB table of the service."""
    container = container_of(client)
    settings = container.settings
    if settings.store == "sqlite":
        files = sorted(settings.data_dir.glob("*"))
        assert any(f.name.endswith("-wal") for f in files), files  # the WAL is read too
        return b"".join(f.read_bytes() for f in files if f.is_file())
    dynamodb = container.read_model.client  # type: ignore[attr-defined]
    names = [
        name
        for page in dynamodb.get_paginator("list_tables").paginate()
        for name in page["TableNames"]
        if name.startswith(settings.dynamodb_table_prefix)
    ]
    assert any(name.endswith("keys") for name in names), names
    held = []
    for name in names:
        for page in dynamodb.get_paginator("scan").paginate(TableName=name, ConsistentRead=True):
            held.append(repr(page["Items"]).encode())
    return b"\n".join(held)


def create_user(client: TestClient, user_id: str, name: str, **headers: str) -> dict[str, Any]:
    response = client.post("/users", json={"userId": user_id, "name": name}, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def erase(client: TestClient, user_id: str) -> dict[str, Any]:
    response = client.post(f"/admin/users/{user_id}/erase", headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def history(client: TestClient, user_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/audit/users/{user_id}/history", headers=AUDITOR)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["history"]
    return entries


def feed(client: TestClient) -> list[dict[str, Any]]:
    container = container_of(client)
    wait_until_logged(container.service.recorder)
    response = client.get("/audit/log", params={"limit": 1000}, headers=AUDITOR)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def exported(client: TestClient) -> list[dict[str, Any]]:
    """The feed as ``regsvc export`` writes it."""
    buffer = io.StringIO()
    export(container_of(client), 0, None, buffer)
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def created_entry(entries: list[dict[str, Any]], user_id: str) -> dict[str, Any]:
    (found,) = [e for e in entries if e["type"] == "UserCreated" and e["data"]["userId"] == user_id]
    return found


def verify(client: TestClient) -> dict[str, Any]:
    response = client.get("/audit/verify", headers=AUDITOR)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def test_a_name_is_stored_only_sealed_and_reads_show_it_opened(client: TestClient) -> None:
    user_id, name = unique("user"), a_name()
    assert create_user(client, user_id, name)["name"] == name
    assert client.get(f"/users/{user_id}").json() | {"name": name, "erased": False} == (
        client.get(f"/users/{user_id}").json()
    )
    assert created_entry(history(client, user_id), user_id)["data"]["name"] == name
    assert (
        created_entry(feed(client), user_id)["data"] | {"name": name, "erased": False}
        == (created_entry(feed(client), user_id)["data"])
    )
    assert name.encode() not in stored_bytes(client)


def test_an_erased_user_reads_as_erased_everywhere_and_keeps_their_registrations(
    client: TestClient,
) -> None:
    user_id, other, name = unique("user"), unique("user"), a_name()
    create_user(client, user_id, name)
    create_user(client, other, "Somebody Else")
    event = create_event(client, capacity=1, waitlistEnabled=True)["eventId"]
    assert register(client, other, event).status_code == 201
    assert register(client, user_id, event).json()["status"] == "waitlist"
    registrations = client.get(f"/users/{user_id}/registrations").json()
    event_before = client.get(f"/events/{event}").json()
    before = created_entry(feed(client), user_id)

    erased = erase(client, user_id)

    assert (erased["userId"], erased["erased"]) == (user_id, True)
    shown = client.get(f"/users/{user_id}").json()
    assert (shown["name"], shown["erased"]) == (None, True)
    assert client.get(f"/users/{user_id}/registrations").json() == registrations
    assert client.get(f"/events/{event}").json() == event_before
    assert client.get(f"/events/{event}/registrations").json()["total"] == 2
    account = history(client, user_id)
    assert (
        created_entry(account, user_id)["data"] | {"name": None, "erased": True}
        == (created_entry(account, user_id)["data"])
    )
    (erasure,) = [e for e in account if e["type"] == "UserErased"]
    # Who, when and in which request; nothing personal.
    assert erasure["data"] == {
        "userId": user_id,
        "erasedBy": "ops",
        "requestId": erasure["metadata"]["requestId"],
    }
    assert (erasure["metadata"]["actor"], erasure["occurredAt"][:4]) == (
        "ops",
        erased["erasedAt"][:4],
    )
    after = created_entry(feed(client), user_id)
    assert (after["data"]["name"], after["data"]["erased"]) == (None, True)
    # What is stored did not change: the sealed name, as the feed showed it before.
    assert (after["sealed"], after["metadata"]) == (before["sealed"], before["metadata"])
    state = client.get(f"/audit/users/{user_id}/state", headers=AUDITOR).json()
    assert (state["user"]["name"], state["user"]["erased"]) == (None, True)
    assert [r["eventId"] for r in state["registrations"]] == [event]
    assert created_entry(exported(client), user_id)["data"]["name"] is None
    assert verify(client)["ok"] is True


def test_erasing_again_answers_the_same_and_records_nothing_more(client: TestClient) -> None:
    user_id = unique("user")
    create_user(client, user_id, a_name())
    first = erase(client, user_id)
    assert erase(client, user_id) == first
    assert [e["type"] for e in history(client, user_id)] == ["UserCreated", "UserErased"]


def test_an_erased_users_id_stays_taken(client: TestClient) -> None:
    user_id = unique("user")
    create_user(client, user_id, a_name())
    erase(client, user_id)
    again = client.post("/users", json={"userId": user_id, "name": "Someone New"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "DUPLICATE_USER"


def test_after_erasure_no_kept_answer_tells_a_right_guess_of_the_name_from_a_wrong_one(
    client: TestClient,
) -> None:
    # A refusal kept under a request's fingerprint (a hash of its body, the name
    # in it) would replay for the right name and answer 422 for any other.
    user_id, name = unique("user"), a_name()
    create_user(client, user_id, name)
    key = {"Idempotency-Key": unique("key")}
    refused = client.post("/users", json={"userId": user_id, "name": name}, headers=key)
    assert refused.status_code == 409
    erase(client, user_id)

    answers = [
        client.post("/users", json={"userId": user_id, "name": guess}, headers=key)
        for guess in (name, "A Wrong Guess", name)
    ]

    assert [a.status_code for a in answers] == [409, 409, 409]
    assert [a.headers.get("Idempotent-Replayed") for a in answers] == [None, None, None]


def test_erasing_an_unknown_user_is_404_and_needs_an_admin(client: TestClient) -> None:
    unknown = client.post(f"/admin/users/{unique('user')}/erase", headers=ADMIN)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "USER_NOT_FOUND"
    user_id = unique("user")
    create_user(client, user_id, a_name())
    for headers in (bearer(AUDITOR_KEY), bearer(CLIENT_KEY)):
        assert client.post(f"/admin/users/{user_id}/erase", headers=headers).status_code == 403
    assert client.get(f"/users/{user_id}").json()["erased"] is False


def test_after_erasure_the_name_is_nowhere_in_the_store_nor_the_log_and_history_verifies(
    client: TestClient, log: io.StringIO
) -> None:
    user_id, name = unique("user"), a_name()
    # A kept idempotent answer holds the name until the erasure.
    create_user(client, user_id, name, **{"Idempotency-Key": unique("key")})
    event = create_event(client)["eventId"]
    assert register(client, user_id, event).status_code == 201
    client.get(f"/users/{user_id}")
    history(client, user_id)
    assert name.encode() in stored_bytes(client)  # the kept answer

    erase(client, user_id)

    assert name.encode() not in stored_bytes(client)
    flush_logs()
    assert name not in log.getvalue()
    assert user_id in log.getvalue()  # the log was captured
    report = verify(client)
    assert report["ok"] is True
    assert report["checked"] > 0


def test_a_rebuild_after_erasure_gives_the_same_tables_and_brings_no_name_back(
    client: TestClient,
) -> None:
    user_id, name = unique("user"), a_name()
    create_user(client, user_id, name)
    event = create_event(client)["eventId"]
    assert register(client, user_id, event).status_code == 201
    erase(client, user_id)
    container = container_of(client)
    wait_until_logged(container.service.recorder)
    # The erasure folded into the live tables as a fresh fold of the log does.
    drift = client.get("/admin/projections/read-tables/check", headers=ADMIN).json()
    assert (drift["ok"], drift["differences"]) == (True, [])
    before = container.read_model.dump()

    container.rebuilder.begin()
    container.rebuilder.run()

    assert container.read_model.dump() == before
    shown = client.get(f"/users/{user_id}").json()
    assert (shown["name"], shown["erased"]) == (None, True)
    assert name.encode() not in stored_bytes(client)
    assert verify(client)["ok"] is True


def test_a_feed_entry_with_a_sealed_name_still_chains_once_its_stored_value_is_put_back(
    client: TestClient,
) -> None:
    from projections.audit import GENESIS, link

    user_id = unique("user")
    create_user(client, user_id, a_name())
    erase(client, user_id)
    entry = created_entry(exported(client), user_id)
    data = {k: v for k, v in entry["data"].items() if k != "erased"} | entry["sealed"]
    body = {k: v for k, v in entry.items() if k not in {"position", "sealed"}}
    body = body | {
        "data": data,
        "metadata": {k: v for k, v in entry["metadata"].items() if k != "hash"},
    }
    assert link(GENESIS, body) == entry["metadata"]["hash"]


def test_the_master_key_wraps_every_data_key(settings: Settings, tmp_path: Path) -> None:
    import base64
    import os

    master = base64.b64encode(os.urandom(32)).decode()
    wrapped = settings.model_copy(
        update={
            "personal_data_master_key": Settings(
                personal_data_master_key=master
            ).personal_data_master_key
        }
    )
    with TestClient(create_app(wrapped)) as client:
        user_id, name = unique("user"), a_name()
        create_user(client, user_id, name)
        assert client.get(f"/users/{user_id}").json()["name"] == name
        keys = container_of(client).personal_data.keys
        assert keys.get(user_id)[:1] == b"\x01"  # type: ignore[index]
    unwrapped = settings.model_copy(update={"personal_data_master_key": None})
    with TestClient(create_app(unwrapped), raise_server_exceptions=False) as client:
        # A store whose keys are wrapped opens nothing without the master key.
        assert client.get(f"/users/{user_id}").status_code == 500


def test_a_feed_page_of_sign_ups_reads_their_users_keys_in_one_go(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More users than one DynamoDB BatchGetItem takes (100).
    names = {unique("user"): a_name() for _ in range(105)}
    for user_id, name in names.items():
        create_user(client, user_id, name)
    gone = next(iter(names))
    erase(client, gone)
    keys = container_of(client).personal_data.keys
    reads: list[str] = []
    for method in ("get", "get_many"):
        original = getattr(keys, method)

        def counted(*args: Any, _original: Any = original, _method: str = method) -> Any:
            reads.append(_method)
            return _original(*args)

        monkeypatch.setattr(keys, method, counted)

    entries = feed(client)
    exported_entries = exported(client)

    assert reads == ["get_many", "get_many"]  # one per page: the feed's, the export's
    for shown in (entries, exported_entries):
        assert {
            e["data"]["userId"]: e["data"]["name"] for e in shown if e["type"] == "UserCreated"
        } == names | {gone: None}
        assert created_entry(shown, gone)["data"]["erased"] is True
