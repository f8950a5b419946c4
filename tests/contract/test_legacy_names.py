"""A history written before names were sealed (the stored-event fixtures: plaintext
names) is sealed by ``regsvc seal-names``, after which its users can be erased.

Before it, reads show such a name as stored, and erasing its user is refused
(409 PERSONAL_DATA_NOT_SEALED): destroying a key would not erase it. The
migration rewrites those users' streams (the name sealed, the digests
recomputed), rebuilds the read tables and compacts the store. SQLite only: on
DynamoDB the command says it is not supported (README).
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from typing import Any

import pytest

from api import cli
from domain.errors import PersonalDataNotSealedError
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
    files = sorted(container.settings.data_dir.glob("*"))
    return b"".join(f.read_bytes() for f in files if f.is_file())


def shown_name(container: Container, user_id: str) -> str | None:
    row = container.read_model.get_user(user_id)
    assert row is not None
    return shown_user(row, container.personal_data).name


@pytest.fixture
def sqlite_only(container: Container) -> Container:
    if container.settings.store != "sqlite":
        pytest.skip("regsvc seal-names rewrites history on SQLite only (see the README)")
    return container


@pytest.mark.parametrize("history", HISTORIES.values(), ids=list(HISTORIES))
def test_an_old_history_is_sealed_by_seal_names_then_its_users_can_be_erased(
    sqlite_only: Container, history: tuple[dict[str, Any], dict[str, str]]
) -> None:
    container = sqlite_only
    records, names = history
    recorded(container, records)
    before = container.audit.verify().report()
    (user_id, name), (other, other_name) = names.items()
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


def test_sealing_names_again_rewrites_nothing(sqlite_only: Container) -> None:
    recorded(sqlite_only, RECORDED_V3)
    assert sqlite_only.seal_names() == len(_users(RECORDED_V3))
    assert sqlite_only.seal_names() == 0


def _users(history: dict[str, Any]) -> list[str]:
    return [
        r["state"]["user_id"]
        for r in history["notifications"]
        if r["topic"] == "domain.model:User.Created"
    ]


def _stream_of(container: Container, user_id: str) -> Any:
    from domain.model import user_aggregate_id

    return user_aggregate_id(user_id)


def test_on_dynamodb_seal_names_says_it_is_not_supported(container: Container) -> None:
    if container.settings.store != "dynamodb":
        pytest.skip("SQLite supports it (above)")
    printed = io.StringIO()
    with redirect_stdout(printed), pytest.raises(NotImplementedError, match="not supported"):
        container.seal_names()
