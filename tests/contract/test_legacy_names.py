"""A history written before names were sealed (the stored-event fixtures: plaintext
names) is sealed by ``regsvc seal-names``, after which its users can be erased.

Before it, reads show such a name as stored, and erasing its user is refused
(409 PERSONAL_DATA_NOT_SEALED): destroying a key would not erase it. The
migration rewrites those users' streams (the name sealed, the digests
recomputed), rebuilds the read tables and compacts the store (SQLite: its
file; DynamoDB: the read tables' generation not live), so that no table or
file holds the name as given afterwards.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from typing import Any

import pytest

from api import cli
from domain.errors import PersonalDataNotSealedError
from infra.idempotency import StoredResponse
from infra.personal_data import is_sealed
from infra.wiring import Container
from projections.catch_up import wait_until_logged
from projections.personal import shown_user
from tests.contract.test_stored_events import RECORDED, RECORDED_V3, _stored

HISTORIES = {
    "version 1 (unsealed chains)": (RECORDED, {"alice": "Alice", "carol": "Carol"}),
    "version 3 (sealed chains)": (RECORDED_V3, {"gina": "Gina", "hank": "Hank"}),
}


def recorded(container: Container, history: dict[str, Any]) -> None:
    records = history["notifications"]
    for start in range(0, len(records), 40):
        container.service.recorder.insert_events([_stored(r) for r in records[start : start + 40]])
    wait_until_logged(container.service.recorder)
    container.rebuilder.begin()
    container.rebuilder.run()


def stored_bytes(container: Container) -> bytes:
    """Every byte the store holds: SQLite's files, or every item of every table
    under DynamoDB's prefix (strings and binaries, nested ones too)."""
    if container.settings.store == "dynamodb":
        return b"\0".join(_table_bytes(container))
    files = sorted(container.settings.data_dir.glob("*"))
    return b"".join(f.read_bytes() for f in files if f.is_file())


def _table_bytes(container: Container) -> list[bytes]:
    client = container.read_model.client  # type: ignore[attr-defined]
    prefix = container.settings.dynamodb_table_prefix
    found: list[bytes] = []
    for page in client.get_paginator("list_tables").paginate():
        for table in page["TableNames"]:
            if not table.startswith(prefix):
                continue
            for scanned in client.get_paginator("scan").paginate(
                TableName=table, ConsistentRead=True
            ):
                for item in scanned["Items"]:
                    found.extend(_value_bytes({"M": item}))
    return found


def _value_bytes(value: dict[str, Any]) -> list[bytes]:
    if "S" in value:
        return [str(value["S"]).encode()]
    if "B" in value:
        return [bytes(value["B"])]
    if "L" in value:
        return [b for v in value["L"] for b in _value_bytes(v)]
    if "M" in value:
        return [b for k, v in value["M"].items() for b in [k.encode(), *_value_bytes(v)]]
    if "SS" in value:
        return [str(v).encode() for v in value["SS"]]
    return []


def shown_name(container: Container, user_id: str) -> str | None:
    row = container.read_model.get_user(user_id)
    assert row is not None
    return shown_user(row, container.personal_data).name


@pytest.mark.parametrize("history", HISTORIES.values(), ids=list(HISTORIES))
def test_an_old_history_is_sealed_by_seal_names_then_its_users_can_be_erased(
    container: Container, history: tuple[dict[str, Any], dict[str, str]]
) -> None:
    records, names = history
    recorded(container, records)
    (user_id, name), (other, other_name) = names.items()
    kept_answer(container, user_id, name)  # as POST /users answered then, kept for a retry
    assert name.encode() in stored_bytes(container)
    before = container.audit.verify().report()
    assert shown_name(container, user_id) == name  # shown as stored
    with pytest.raises(PersonalDataNotSealedError):
        container.erase_user(user_id, "ops", "request-1")

    printed = io.StringIO()
    with redirect_stdout(printed):
        assert cli.COMMANDS["seal-names"](None, container) == 0  # type: ignore[arg-type]

    assert f"sealed the names of {len(_users(records))} users" in printed.getvalue()
    for stored in container.service.recorder.select_events(_stream_of(container, user_id)):
        state = container.service.mapper.decode_state(stored)
        assert is_sealed(state["name"])
    after = container.audit.verify().report()
    assert after["ok"] is True
    assert (after["checked"], after["unsealed"]) == (before["checked"], before["unsealed"])
    assert shown_name(container, user_id) == name
    assert shown_name(container, other) == other_name
    assert name.encode() not in stored_bytes(container)

    container.erase_user(user_id, "ops", "request-2")

    assert shown_name(container, user_id) is None
    assert shown_name(container, other) == other_name
    assert container.audit.verify().report()["ok"] is True


def kept_answer(container: Container, user_id: str, name: str) -> None:
    """An idempotent answer kept for a retry that shows the user's name."""
    body = json.dumps({"userId": user_id, "name": name}).encode()
    store = container.idempotency
    store.claim("client", f"create-{user_id}", "fingerprint", lease_seconds=60)
    store.complete("client", f"create-{user_id}", StoredResponse(201, (), body))


def test_sealing_names_again_rewrites_nothing(container: Container) -> None:
    recorded(container, RECORDED_V3)
    assert container.seal_names() == len(_users(RECORDED_V3))
    sealed_once = stored_history(container)

    assert container.seal_names() == 0

    assert stored_history(container) == sealed_once
    assert container.audit.verify().report()["ok"] is True


def stored_history(container: Container) -> list[tuple[Any, int, bytes]]:
    """Every event of the log as stored: (stream, version, state)."""
    return [
        (stored.originator_id, stored.originator_version, stored.state)
        for stored in container.audit.notifications()
    ]


def _users(history: dict[str, Any]) -> list[str]:
    return [
        r["state"]["user_id"]
        for r in history["notifications"]
        if r["topic"] == "domain.model:User.Created"
    ]


def _stream_of(container: Container, user_id: str) -> Any:
    from domain.model import user_aggregate_id

    return user_aggregate_id(user_id)
