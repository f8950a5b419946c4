"""The HTTP app imports no store package: it reaches the stores through the wiring.

``infra/wiring.py`` is the one place that knows the stores; the HTTP app
(``api/*.py``, ``api/routes/*.py``) sees them through ``infra.wiring``,
``infra.service`` and ``projections.ports``. The CLI and the Lambda handlers
are edges of their own (the stream indexer's Lambda handler is DynamoDB's).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

API = Path(__file__).resolve().parent.parent / "api"
STORE_PACKAGES = ("infra.dynamodb", "infra.sqlite")
NOT_THE_HTTP_APP = frozenset({"cli.py", "lambda_handler.py", "indexer_lambda.py"})


def http_app_modules() -> list[Path]:
    return sorted(
        path
        for path in [*API.glob("*.py"), *(API / "routes").glob("*.py")]
        if path.parent != API or path.name not in NOT_THE_HTTP_APP
    )


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


def test_the_edges_left_out_are_there_and_the_rest_is_checked() -> None:
    assert {p.name for p in API.glob("*.py")} >= NOT_THE_HTTP_APP
    checked = {p.relative_to(API).as_posix() for p in http_app_modules()}
    assert {"main.py", "middleware.py", "deps.py", "routes/health.py"} <= checked


@pytest.mark.parametrize("path", http_app_modules(), ids=lambda p: p.relative_to(API).as_posix())
def test_the_http_app_imports_no_store_package(path: Path) -> None:
    assert store_imports(path.read_text()) == []


@pytest.mark.parametrize(
    "source",
    [
        "import infra.dynamodb",
        "from infra.dynamodb.capacity import PROCESS_TOTALS",
        "from infra import sqlite",
        "def f():\n    from infra.sqlite.read_tables import SQLiteReadModel",
    ],
)
def test_a_store_import_is_found_however_it_is_written(source: str) -> None:
    assert store_imports(source) != []


def test_imports_of_the_wiring_are_not_store_imports() -> None:
    assert store_imports("from infra.wiring import capacity_metering\nimport infra.dynamodbx") == []
