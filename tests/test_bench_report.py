"""BENCHMARKS.md rewritten by `make bench` keeps the sections measured by other commands."""

from __future__ import annotations

from bench.report import keep_sections

PREVIOUS = """# Benchmarks

## SQLite

old table

## Auditors and admins (`python -m bench.audit`, SQLite)

| what | result |
|---|---|
| verify | 21,288 events/s |

## What is measured

old text
"""

WRITTEN = """# Benchmarks

## SQLite

new table

## What is measured

new text
"""


def test_a_rewrite_keeps_the_audit_section_before_what_is_measured() -> None:
    merged = keep_sections(PREVIOUS, WRITTEN)

    assert "new table" in merged
    assert "old table" not in merged
    assert "| verify | 21,288 events/s |" in merged
    assert merged.index("## Auditors and admins") < merged.index("## What is measured")
    assert merged.count("## Auditors and admins") == 1
    assert merged.endswith("new text\n")


def test_a_first_write_has_nothing_to_keep() -> None:
    assert keep_sections("", WRITTEN) == WRITTEN
