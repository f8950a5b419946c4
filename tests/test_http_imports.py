"""No edge of the service imports a store package: each reaches the stores through the wiring.

``infra/wiring.py`` is the one place that picks a store (its kit,
``infra/kit.py``); everything in ``api/`` (the HTTP app, health, the CLI, both
Lambda handlers) sees the stores through ``infra.wiring``, ``infra.kit``,
``infra.service`` and ``projections.ports``. The indexer Lambda, DynamoDB's
own, gets its indexer from the DynamoDB kit through the wiring too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

API = Path(__file__).resolve().parent.parent / "api"
STORE_PACKAGES = ("infra.dynamodb", "infra.sqlite")
# What `grep -rn "infra.sqlite\|infra.dynamodb" api/` finds (a dot there matches any character).
NAMED = re.compile(r"infra.(sqlite|dynamodb)")


def api_modules() -> list[Path]:
    return sorted(API.rglob("*.py"))


def store_imports(source: str) -> list[str]:
    """Every module a source imports from a store package (anywhere in it, even
    inside a function or under ``TYPE_CHECKING``)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found += [
            name
            for name in names
            if any(name == p or name.startswith(p + ".") for p in STORE_PACKAGES)
        ]
    return found


def test_every_edge_is_checked() -> None:
    checked = {p.relative_to(API).as_posix() for p in api_modules()}
    assert {
        "main.py",
        "middleware.py",
        "deps.py",
        "routes/health.py",
        "cli.py",
        "lambda_handler.py",
        "indexer_lambda.py",
    } <= checked


@pytest.mark.parametrize("path", api_modules(), ids=lambda p: p.relative_to(API).as_posix())
def test_no_module_of_the_api_imports_a_store_package(path: Path) -> None:
    assert store_imports(path.read_text()) == []


@pytest.mark.parametrize("path", api_modules(), ids=lambda p: p.relative_to(API).as_posix())
def test_no_line_of_the_api_names_a_store_package(path: Path) -> None:
    named = [
        f"{number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if NAMED.search(line)
    ]
    assert named == []


@pytest.mark.parametrize(
    "source",
    [
        "import infra.dynamodb",
        "from infra.dynamodb.capacity import PROCESS_TOTALS",
        "from infra import sqlite",
        "def f():\n    from infra.sqlite.read_tables import SQLiteReadModel",
        "from infra.dynamodb.kit import build_kit",
    ],
)
def test_a_store_import_is_found_however_it_is_written(source: str) -> None:
    assert store_imports(source) != []


@pytest.mark.parametrize(
    "line", ["from infra.sqlite.kit import build_kit", "# see infra/dynamodb/indexer.py"]
)
def test_a_store_package_is_found_however_it_is_named(line: str) -> None:
    assert NAMED.search(line)


def test_imports_of_the_wiring_and_the_kit_protocol_are_not_store_imports() -> None:
    source = (
        "from infra.wiring import store_kit\nfrom infra.kit import StoreKit\nimport infra.dynamodbx"
    )
    assert store_imports(source) == []
