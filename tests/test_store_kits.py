"""The store is chosen in one place: wiring picks one kit per app, and every
other part asks that kit (``infra/kit.py``)."""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from infra import wiring
from infra.dynamodb import kit as dynamodb_kit
from infra.dynamodb.layout import MAX_TRANSACT_ITEMS
from infra.kit import SaveLimits, StoreKit
from infra.settings import Settings
from infra.sqlite import kit as sqlite_kit
from tests.support import create_user

ROOT = Path(__file__).resolve().parent.parent
STORE_NAMES = frozenset(get_args(Settings.model_fields["store"].annotation))


def test_every_store_the_settings_allow_has_its_kit_in_the_wiring() -> None:
    assert set(wiring.KITS) == STORE_NAMES
    assert wiring.KITS["sqlite"] is sqlite_kit.build_kit
    assert wiring.KITS["dynamodb"] is dynamodb_kit.build_kit


@pytest.mark.parametrize("name", sorted(STORE_NAMES))
def test_each_store_packages_kit_is_a_store_kit(name: str, tmp_path: Path) -> None:
    kit: StoreKit = wiring.KITS[name](Settings(store=name, data_dir=tmp_path))

    assert isinstance(kit, StoreKit)


def test_dynamodbs_kit_bounds_a_save_by_one_transaction_and_sqlites_does_not(
    tmp_path: Path,
) -> None:
    dynamodb = dynamodb_kit.build_kit(Settings(store="dynamodb"))
    sqlite = sqlite_kit.build_kit(Settings(store="sqlite", data_dir=tmp_path))

    assert dynamodb.save_limits.max_save_weight == MAX_TRANSACT_ITEMS
    assert sqlite.save_limits == SaveLimits()


def test_an_app_build_picks_its_stores_kit_once_and_everything_asks_that_kit(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[StoreKit] = []
    calls: Counter[str] = Counter()

    def counting(
        name: str, build: Callable[[Settings], StoreKit]
    ) -> Callable[[Settings], StoreKit]:
        def counted(settings: Settings) -> StoreKit:
            calls[name] += 1
            built.append(build(settings))
            return built[-1]

        return counted

    for name, build in list(wiring.KITS.items()):
        monkeypatch.setitem(wiring.KITS, name, counting(name, build))

    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/health").json()["store"] == settings.store
        container = app.state.container

    assert calls == {settings.store: 1}
    assert container.kit is built[0]


def test_an_app_stopped_and_started_again_opens_its_store_afresh(settings: Settings) -> None:
    app = create_app(settings)
    with TestClient(app) as client:
        create_user(client, "ada")
    with TestClient(app) as client:
        assert client.get("/users/ada").status_code == 200
        created = client.post(
            "/users", json={"userId": "bob", "name": "Bob"}, headers={"Idempotency-Key": "k1"}
        )
        assert created.status_code == 201, created.text


def names_the_store(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "store") or (
        isinstance(node, ast.Constant) and node.value in STORE_NAMES
    )


def comparisons(path: Path) -> list[str]:
    """Every comparison (or match) in a module that involves a ``.store`` or a store's name."""
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Compare | ast.Match) and any(map(names_the_store, ast.walk(node)))
    ]


def test_neither_the_edges_nor_the_wiring_ask_which_store_runs() -> None:
    modules = [*sorted((ROOT / "api").rglob("*.py")), ROOT / "infra" / "wiring.py"]

    assert [found for path in modules for found in comparisons(path)] == []


def test_the_wiring_names_each_store_once_as_the_key_of_its_kit() -> None:
    names = [
        node.value
        for node in ast.walk(ast.parse((ROOT / "infra" / "wiring.py").read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if node.value in STORE_NAMES
    ]

    assert sorted(names) == sorted(STORE_NAMES)
