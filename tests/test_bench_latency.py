"""The simulated-latency benchmark's report: its targets, and its section of BENCHMARKS.md."""

from __future__ import annotations

from bench.latency import (
    HEADING,
    HOT_LATENCY_MS,
    SPREAD_LATENCY_MS,
    Case,
    Measured,
    kept_appends,
    replace_section,
    verdicts,
)
from bench.load import Outcome
from bench.report import keep_sections
from bench.servers import BASELINE, SERVICE, ServerKind


def measured(scenario: str, server: ServerKind, clients: int, req_per_s: float) -> Measured:
    latency = SPREAD_LATENCY_MS if scenario == "spread" else HOT_LATENCY_MS
    outcome = Outcome(scenario, requests=int(req_per_s * 10), wall_s=10.0)
    return Measured(Case(scenario, latency, server, clients), outcome)


def test_the_verdicts_give_each_ratio_and_say_whether_its_target_was_reached() -> None:
    lines = verdicts(
        [
            measured("spread", SERVICE, 1, 25.0),
            measured("spread", SERVICE, 16, 75.0),
            measured("spread", BASELINE, 1, 10.0),
            measured("spread", BASELINE, 16, 45.0),
            measured("hot", SERVICE, 64, 130.0),
            measured("hot", BASELINE, 64, 50.0),
        ]
    )

    assert "x3.00 its one client (target >= x4: NOT reached)" in lines[0]
    assert "the state-based baseline's x4.50" in lines[0]
    assert "the service x2.60 the state-based baseline's req/s (target >= x2: reached)" in lines[1]


def test_a_failed_run_counts_for_no_target() -> None:
    failed = measured("hot", SERVICE, 64, 500.0)
    failed.outcome.check("fifo_waitlist_order", False)

    lines = verdicts([failed, measured("hot", BASELINE, 64, 50.0)])

    assert "the service - the state-based baseline's req/s (target >= x2: NOT reached)" in lines[1]


PREVIOUS = f"""# Benchmarks

## DynamoDB Local

table

{HEADING}

old latency table

## What is measured

text
"""


def test_writing_the_section_replaces_only_its_own() -> None:
    merged = replace_section(PREVIOUS, f"{HEADING}\n\nnew latency table\n")

    assert "new latency table" in merged
    assert "old latency table" not in merged
    assert merged.count(HEADING) == 1
    assert merged.index("## DynamoDB Local\n") < merged.index(HEADING)
    assert merged.index(HEADING) < merged.index("## What is measured")


def test_a_run_without_appends_keeps_the_appends_table_it_did_not_measure() -> None:
    previous = PREVIOUS.replace(
        "old latency table\n",
        "old latency table\n\nAppends per second under a simulated network round trip: ...\n\n"
        "| round trip | writers |\n",
    )

    kept = kept_appends(previous)

    assert kept is not None
    assert kept.startswith("Appends per second under a simulated network round trip")
    assert "| round trip | writers |" in kept
    assert "## What is measured" not in kept
    assert kept_appends(PREVIOUS) is None


def test_a_first_section_goes_before_what_is_measured() -> None:
    merged = replace_section("# Benchmarks\n\n## What is measured\n\ntext\n", f"{HEADING}\n\nt\n")

    assert merged.index(HEADING) < merged.index("## What is measured")


def test_make_bench_keeps_the_section_unless_it_measured_it_again() -> None:
    without = "# Benchmarks\n\n## SQLite\n\nnew\n\n## What is measured\n\nnew text\n"
    again = without.replace("## What", f"{HEADING}\n\nnew latency table\n\n## What")

    assert "old latency table" in keep_sections(PREVIOUS, without)
    rewritten = keep_sections(PREVIOUS, again)
    assert rewritten.count(HEADING) == 1
    assert "old latency table" not in rewritten


def test_without_delay_the_service_is_compared_with_the_baseline_at_no_delay_only() -> None:
    def undelayed(scenario: str, server: ServerKind, clients: int, req_per_s: float) -> Measured:
        outcome = Outcome(scenario, requests=int(req_per_s * 10), wall_s=10.0)
        return Measured(Case(scenario, 0.0, server, clients), outcome)

    lines = verdicts(
        [
            measured("spread", SERVICE, 16, 75.0),
            measured("hot", SERVICE, 64, 130.0),
            measured("hot", BASELINE, 64, 50.0),
            undelayed("spread", SERVICE, 16, 90.0),
            undelayed("spread", BASELINE, 16, 100.0),
            undelayed("hot", SERVICE, 64, 120.0),
            undelayed("hot", BASELINE, 64, 60.0),
        ]
    )

    assert "x2.60 the state-based baseline's req/s (target >= x2: reached)" in lines[1]
    assert "spread, no simulated delay" in lines[2]
    assert "x0.90 the state-based baseline's req/s (target >= x1: NOT reached)" in lines[2]
    assert "hot, no simulated delay" in lines[3]
    assert "x2.00 the state-based baseline's req/s (target >= x1: reached)" in lines[3]
