"""BENCHMARKS.md rewritten by `make bench` keeps the sections measured by other commands."""

from __future__ import annotations

from typing import Any

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


def test_a_rewrite_keeps_the_soak_section() -> None:
    previous = PREVIOUS.replace(
        "## What is measured", "## Soak\n\nsoak figures\n\n## What is measured"
    )

    merged = keep_sections(previous, WRITTEN)

    assert "## Soak\n\nsoak figures\n" in merged
    assert merged.index("## Soak") < merged.index("## What is measured")


def test_a_first_write_has_nothing_to_keep() -> None:
    assert keep_sections("", WRITTEN) == WRITTEN


def test_the_capacity_table_amortises_the_indexer_over_the_events_each_command_appended() -> None:
    """The indexer's WCU over the run, divided by the events it indexed, times each
    command's events; a capacity raise per person it promoted."""
    from typing import cast

    from bench.dynamodb_capacity import rows, table
    from bench.dynamodb_census import INDEXER, Command, Partition, WriteRecorder

    recorder = WriteRecorder(images=cast("Any", None), prefix="p-")  # reads nothing here
    recorder.commands = [
        Command("create user", "create user", user="u", events=1, wcu=4.0),
        Command("register", "register (confirmed)", "e", "u", events=2, wcu=9.0),
        Command("register", "register (confirmed)", "e", "v", events=2, wcu=11.0),
        Command("raise capacity", "capacity raise", "e", events=5, wcu=30.0, promoted=3),
        Command("get event", "get event", "e", rcu=1.5),
    ]
    recorder.partitions = {
        ("indexer", "log", None, "log"): Partition(
            "log", None, "log", "indexer", {INDEXER}, 10, 20.0
        )
    }

    found = rows(recorder)  # 20 WCU over 10 events: 2 per event

    assert (found["register (confirmed)"].request, found["register (confirmed)"].indexer) == (
        10.0,
        4.0,
    )
    assert found["create user"].total == 4.0 + 2.0
    raised = found["capacity raise, per person promoted"]
    assert (raised.request, raised.indexer) == (10.0, 10.0 / 3)
    assert found["get event (RCU)"].request == 1.5
    text = table({"service": found, "state-based": found}, markdown=True)
    assert "| register (confirmed) | 10.0 | 4.00 | 14.0 | 14.0 | 1.00x |" in text
