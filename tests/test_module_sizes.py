"""The DynamoDB store reads as its parts: no module of ``infra/dynamodb`` grows
past the size a reader takes in at once (each does one thing: event store,
index writer, shard reader, leases, read tables, table definitions, capacity)."""

from __future__ import annotations

from pathlib import Path

import pytest

DYNAMODB_PACKAGE = Path(__file__).resolve().parent.parent / "infra" / "dynamodb"
MAX_LINES = 600


@pytest.mark.parametrize(
    "module", sorted(DYNAMODB_PACKAGE.glob("*.py")), ids=lambda path: path.name
)
def test_no_dynamodb_module_is_over_600_lines(module: Path) -> None:
    lines = len(module.read_text().splitlines())
    assert lines <= MAX_LINES, f"{module.name} has {lines} lines; cut it along what it does"
