"""make soak's judgement and report, on synthetic minute series (no server, no timing)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench.soak import Op, Sample, Series, Shape, Workload
from bench.soak_report import (
    Minute,
    SoakRun,
    Verdict,
    from_json,
    judge,
    summary_markdown,
    to_json,
    warm_up_intervals,
    write,
)

RATE = 100.0


def steady(
    n: int = 10, rss_mb: float = 80.0, p99_ms: float = 20.0, **changes: float
) -> list[Minute]:
    """``n`` healthy minutes at the target rate."""
    return [
        Minute(
            index=i + 1,
            requests=6_000,
            answered_per_s=RATE,
            p50_ms=5.0,
            p99_ms=p99_ms,
            rss_mb=rss_mb,
            **changes,  # type: ignore[arg-type]
        )
        for i in range(n)
    ]


def failed(verdict: Verdict) -> set[str]:
    return {c.name for c in verdict.failed}


def test_a_steady_run_passes_every_check() -> None:
    verdict = judge(steady(), RATE)

    assert verdict.ok
    assert failed(verdict) == set()
    assert verdict.warm_up == 2
    assert verdict.rss_growth == 0.0


def test_the_warm_up_is_the_first_fifth_but_leaves_one_interval_to_judge() -> None:
    assert warm_up_intervals(30, 0.2) == 6
    assert warm_up_intervals(10, 0.2) == 2
    assert warm_up_intervals(2, 0.2) == 1
    assert warm_up_intervals(1, 0.2) == 0


def test_rss_growing_during_the_warm_up_is_not_held_against_the_run() -> None:
    minutes = steady()
    minutes[0] = replace(minutes[0], rss_mb=40.0)
    minutes[1] = replace(minutes[1], rss_mb=60.0)

    assert judge(minutes, RATE).ok


def test_rss_growing_more_than_ten_percent_after_the_warm_up_fails() -> None:
    minutes = steady()
    minutes[-1] = replace(minutes[-1], rss_mb=80.0 * 1.11)

    verdict = judge(minutes, RATE)

    assert failed(verdict) == {"rss_flat"}
    assert verdict.rss_growth == pytest.approx(0.11)


def test_rss_growing_ten_percent_or_less_passes() -> None:
    minutes = steady()
    minutes[-1] = replace(minutes[-1], rss_mb=88.0)

    assert judge(minutes, RATE).ok


def test_p99_doubling_from_the_first_third_to_the_last_fails() -> None:
    minutes = steady(n=12, p99_ms=20.0)
    # After 3 warm-up minutes, thirds of 3: the last three at 2.5 times the first.
    for i in (9, 10, 11):
        minutes[i] = replace(minutes[i], p99_ms=50.0)

    verdict = judge(minutes, RATE)

    assert failed(verdict) == {"p99_stable"}
    assert (verdict.p99_first_ms, verdict.p99_last_ms) == (20.0, 50.0)


def test_one_slow_minute_in_the_last_third_does_not_fail_the_run() -> None:
    minutes = steady(n=12, p99_ms=20.0)
    minutes[11] = replace(minutes[11], p99_ms=500.0)

    assert judge(minutes, RATE).ok


def test_p99_a_few_milliseconds_up_from_a_very_low_base_is_noise() -> None:
    minutes = steady(n=12, p99_ms=2.0)
    for i in (9, 10, 11):
        minutes[i] = replace(minutes[i], p99_ms=6.5)

    assert judge(minutes, RATE).ok


def test_a_single_5xx_fails_the_run_even_in_the_warm_up() -> None:
    minutes = steady()
    minutes[0] = replace(minutes[0], server_errors=1)

    assert failed(judge(minutes, RATE)) == {"no_5xx"}


def test_requests_left_unanswered_fail_the_run() -> None:
    minutes = steady()
    minutes[5] = replace(minutes[5], no_answer=3)

    assert failed(judge(minutes, RATE)) == {"all_answered"}


def test_unexpected_answers_fail_the_run() -> None:
    minutes = steady()
    minutes[5] = replace(minutes[5], unexpected=1)

    assert failed(judge(minutes, RATE)) == {"no_unexpected_answers"}


def test_a_server_that_falls_behind_the_target_rate_fails() -> None:
    minutes = [replace(m, answered_per_s=RATE * 0.9) for m in steady()]

    assert failed(judge(minutes, RATE)) == {"rate_held"}


def test_a_run_that_measured_nothing_fails() -> None:
    assert not judge([], RATE).ok


def run_of(minutes: list[Minute]) -> SoakRun:
    return SoakRun("sqlite", minutes, RATE, 60.0, 200.0, {"Machine": "2 cores, shared"})


def test_the_markdown_shows_the_verdict_each_check_each_minute_and_the_plot() -> None:
    minutes = steady(n=5)
    minutes[4] = replace(minutes[4], server_errors=2)
    run = run_of(minutes)

    text = summary_markdown(run, judge(minutes, RATE), "soak-sqlite.png")

    assert text.startswith("### SQLite: FAILED")
    assert "half the measured maximum of 200.0 req/s" in text
    assert "| no_5xx | FAIL | 2 answers with a 5xx |" in text
    assert "| 1 (warm-up) | 6,000 | 100.0 | 5.0 | 20.0 | 80.0 | 0 | 0 | 0 |" in text
    assert "| 5 | 6,000 | 100.0 | 5.0 | 20.0 | 80.0 | 2 | 0 | 0 |" in text
    assert "- Machine: 2 cores, shared" in text
    assert "](soak-sqlite.png)" in text


def test_the_json_report_reads_back_as_the_same_run_and_verdict() -> None:
    run = run_of(steady(n=4))
    verdict = judge(run.minutes, RATE)

    text = to_json(run, verdict)

    assert json.loads(text)["passed"] is True
    assert from_json(text) == (run, verdict)


def test_the_writer_puts_json_markdown_and_a_png_plot_side_by_side(tmp_path: Path) -> None:
    run = run_of(steady(n=6))

    paths = write(run, judge(run.minutes, RATE), tmp_path / "out", "soak-sqlite")

    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "soak-sqlite.json",
        "soak-sqlite.md",
        "soak-sqlite.png",
    ]
    assert paths["png"].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "![SQLite soak" in paths["md"].read_text()


def test_the_series_files_requests_by_when_they_were_due_and_answers_by_when_they_came() -> None:
    series = Series(60.0)
    series.add(0, 0, Sample(0.010, "ok"))
    series.add(0, 1, Sample(0.030, "5xx"))  # due in minute 1, answered in minute 2
    series.add(1, 1, Sample(0.0, "no answer"))
    series.rss_mb = {0: 80.0, 1: 81.0}

    first, second = series.minutes(2)

    assert (first.requests, first.server_errors, first.p99_ms) == (2, 1, 30.0)
    assert first.answered_per_s == 1 / 60.0
    assert (second.requests, second.no_answer, second.p50_ms) == (1, 1, None)
    assert second.answered_per_s == 1 / 60.0
    assert second.rss_mb == 81.0


def test_the_workload_leaves_what_it_holds_and_expects_only_success() -> None:
    workload = Workload("t", Shape(events=1, users=1))
    writes: list[Op] = []
    while len(writes) < 2:
        op = workload.next_op()
        if op.pair is None:
            assert workload.answered(op, 200) == "ok"
            continue
        writes.append(op)
        assert workload.answered(op, 201 if op.method == "POST" else 204) == "ok"

    assert [op.method for op in writes] == ["POST", "DELETE"]
    assert workload.answered(Op("read event", "GET", "/events/x"), 404) == "unexpected"
    assert workload.answered(Op("read event", "GET", "/events/x"), 503) == "5xx"
    assert workload.answered(Op("read event", "GET", "/events/x"), 0) == "no answer"
