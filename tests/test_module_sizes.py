"""Modules read as their parts.

The DynamoDB store: no module of ``infra/dynamodb`` grows past the size a
reader takes in at once (each does one thing: event store, index writer, shard
reader, leases, read tables, table definitions, capacity). The commands:
``domain/application.py`` reads as the commands, each decision short, with the
machinery (unit of work, batching, the runner) and the waitlist's page
arithmetic in modules of their own.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DYNAMODB_PACKAGE = ROOT / "infra" / "dynamodb"
MAX_LINES = 600
APPLICATION = ROOT / "domain" / "application.py"
MAX_APPLICATION_LINES = 550
MAX_DECISION_LINES = 20


@pytest.mark.parametrize(
    "module", sorted(DYNAMODB_PACKAGE.glob("*.py")), ids=lambda path: path.name
)
def test_no_dynamodb_module_is_over_600_lines(module: Path) -> None:
    lines = len(module.read_text().splitlines())
    assert lines <= MAX_LINES, f"{module.name} has {lines} lines; cut it along what it does"


def test_the_application_module_is_at_most_550_lines() -> None:
    lines = len(APPLICATION.read_text().splitlines())
    assert lines <= MAX_APPLICATION_LINES, f"domain/application.py has {lines} lines"


def _decisions() -> list[ast.FunctionDef]:
    """Every ``decide`` function of the commands (nested in a command's method)."""
    tree = ast.parse(APPLICATION.read_text())
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "decide"
    ]


def test_no_decision_is_over_20_lines() -> None:
    decisions = _decisions()
    assert decisions, "no decide function found: did the commands move?"
    long = {
        f"line {node.lineno}": lines
        for node in decisions
        if (lines := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_DECISION_LINES
    }
    assert not long, f"decisions over {MAX_DECISION_LINES} lines: {long}"


def test_only_the_waitlist_pages_know_their_size() -> None:
    """The page arithmetic is ``WaitlistPage``'s (``domain/model.py``): no other
    file outside the tests names ``WAITLIST_PAGE_SIZE``, and in that module only
    the constant and the page class do."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    naming = sorted(
        name
        for name in set(tracked)
        if not name.startswith("tests/")
        and (ROOT / name).is_file()
        and "WAITLIST_PAGE_SIZE" in (ROOT / name).read_text(errors="replace")
    )
    assert naming == ["domain/model.py"], naming
    model = ast.parse((ROOT / "domain" / "model.py").read_text())
    outside = [
        node.lineno
        for top in model.body
        if not (isinstance(top, ast.ClassDef) and top.name == "WaitlistPage")
        for node in ast.walk(top)
        if isinstance(node, ast.Name)
        and node.id == "WAITLIST_PAGE_SIZE"
        and not isinstance(node.ctx, ast.Store)
    ]
    assert not outside, f"domain/model.py uses the page size outside WaitlistPage: {outside}"
