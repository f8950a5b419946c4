"""The soak's judgement and its report: JSON, Markdown and a PNG plot.

Pure functions of a series of per-interval figures (:class:`Minute`), so the
pass/fail rules and the writers are tested on synthetic series
(``tests/test_soak_report.py``); ``bench.soak`` measures the series.

The rules (:func:`judge`), after a warm-up of the first 20% of the intervals
(at least one, and at least one interval left after it):

- **RSS flat**: the server's highest RSS after the warm-up is at most 10% above
  its RSS at the end of the first interval after the warm-up;
- **p99 stable**: the median of the per-interval p99 latencies in the last third
  of the intervals after the warm-up is at most twice that of the first third
  (or at most 5 ms above it: below that, doubling is scheduling noise);
- **no 5xx** and **every request answered** (no timeout or refused connection),
  over the whole run, warm-up included;
- **no unexpected answer** (a 4xx the workload does not expect);
- **rate held**: after the warm-up the server answered at least 95% of the
  target rate (an open-loop load the server cannot follow shows up here).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Minute:
    """One interval of the soak (a minute unless ``interval_s`` says otherwise)."""

    index: int
    """1-based."""
    requests: int
    """Requests scheduled in this interval (answered or not)."""
    answered_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    rss_mb: float
    """The server's resident set at the end of the interval."""
    unexpected: int = 0
    """Answers the workload does not expect, other than 5xx."""
    server_errors: int = 0
    """5xx answers."""
    no_answer: int = 0
    """Timeouts, refused or dropped connections, requests not sent."""


@dataclass(frozen=True)
class Criteria:
    warm_up_fraction: float = 0.2
    max_rss_growth: float = 0.10
    max_p99_ratio: float = 2.0
    p99_slack_ms: float = 5.0
    min_rate_fraction: float = 0.95


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    checks: list[Check]
    warm_up: int
    """Intervals left out as warm-up."""
    rss_growth: float | None = None
    p99_first_ms: float | None = None
    p99_last_ms: float | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def warm_up_intervals(n: int, fraction: float) -> int:
    """How many of ``n`` intervals are warm-up: ``ceil(n * fraction)``, at
    least 1, leaving at least 1."""
    if n <= 1:
        return 0
    return min(n - 1, max(1, math.ceil(n * fraction)))


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def judge(
    minutes: Sequence[Minute], target_rate: float, criteria: Criteria = Criteria()
) -> Verdict:
    """Pass or fail, check by check (see the module's docstring)."""
    if not minutes:
        return Verdict([Check("measured", False, "no interval was measured")], 0)
    warm = warm_up_intervals(len(minutes), criteria.warm_up_fraction)
    after = list(minutes[warm:])
    checks: list[Check] = []

    base = after[0].rss_mb
    peak = max(m.rss_mb for m in after)
    growth = peak / base - 1.0 if base > 0 else math.inf
    checks.append(
        Check(
            "rss_flat",
            peak <= base * (1.0 + criteria.max_rss_growth),
            f"RSS {base:.1f} MB after warm-up, at most {peak:.1f} MB later "
            f"({growth:+.1%}; limit +{criteria.max_rss_growth:.0%})",
        )
    )

    third = max(1, len(after) // 3)
    first = _median([m.p99_ms for m in after[:third]])
    last = _median([m.p99_ms for m in after[-third:]])
    if first is None or last is None:
        checks.append(Check("p99_stable", False, "no latency measured after warm-up"))
    else:
        limit = max(criteria.max_p99_ratio * first, first + criteria.p99_slack_ms)
        checks.append(
            Check(
                "p99_stable",
                last <= limit,
                f"p99 {first:.1f} ms in the first third after warm-up, {last:.1f} ms in the "
                f"last (limit {limit:.1f} ms)",
            )
        )

    server_errors = sum(m.server_errors for m in minutes)
    checks.append(Check("no_5xx", server_errors == 0, f"{server_errors} answers with a 5xx"))
    no_answer = sum(m.no_answer for m in minutes)
    checks.append(Check("all_answered", no_answer == 0, f"{no_answer} requests without an answer"))
    unexpected = sum(m.unexpected for m in minutes)
    checks.append(
        Check("no_unexpected_answers", unexpected == 0, f"{unexpected} unexpected 4xx answers")
    )
    rate = statistics.fmean(m.answered_per_s for m in after)
    checks.append(
        Check(
            "rate_held",
            rate >= criteria.min_rate_fraction * target_rate,
            f"{rate:.1f} answers/s after warm-up for a target of {target_rate:.1f}/s "
            f"(at least {criteria.min_rate_fraction:.0%})",
        )
    )
    return Verdict(checks, warm, growth, first, last)


@dataclass
class SoakRun:
    """Everything one soak measured, as written to its report."""

    store: str
    minutes: list[Minute]
    target_rate: float
    interval_s: float = 60.0
    max_rate: float | None = None
    """Measured by the closed-loop burst (None when the rate was given)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """The workload, the command, the machine: shown as they are."""


STORE_TITLES = {"sqlite": "SQLite", "dynamodb": "DynamoDB Local"}


def to_json(run: SoakRun, verdict: Verdict) -> str:
    return json.dumps(
        {
            "store": run.store,
            "targetRate": run.target_rate,
            "maxRate": run.max_rate,
            "intervalSeconds": run.interval_s,
            "settings": run.settings,
            "passed": verdict.ok,
            "warmUpIntervals": verdict.warm_up,
            "rssGrowth": verdict.rss_growth,
            "p99FirstThirdMs": verdict.p99_first_ms,
            "p99LastThirdMs": verdict.p99_last_ms,
            "checks": [asdict(c) for c in verdict.checks],
            "intervals": [asdict(m) for m in run.minutes],
        },
        indent=2,
    )


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def summary_markdown(run: SoakRun, verdict: Verdict, plot_name: str | None) -> str:
    """The run's result as Markdown: verdict, checks, the series, the plot."""
    title = STORE_TITLES.get(run.store, run.store)
    span = len(run.minutes) * run.interval_s / 60.0
    how = (
        f"half the measured maximum of {run.max_rate:.1f} req/s"
        if run.max_rate is not None
        else "a given rate"
    )
    lines = [
        f"### {title}: {'PASSED' if verdict.ok else 'FAILED'}",
        "",
        f"{span:g} min open-loop at {run.target_rate:.1f} req/s ({how}); "
        f"{verdict.warm_up} interval(s) of {run.interval_s:g} s left out as warm-up.",
        "",
    ]
    for key, value in run.settings.items():
        lines.append(f"- {key}: {value}")
    if run.settings:
        lines.append("")
    lines += ["| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {'pass' if c.ok else 'FAIL'} | {c.detail} |" for c in verdict.checks]
    lines += [
        "",
        "| interval | requests | answered/s | p50 ms | p99 ms | RSS MB | 5xx | unexpected "
        "| no answer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in run.minutes:
        warm = " (warm-up)" if m.index <= verdict.warm_up else ""
        lines.append(
            f"| {m.index}{warm} | {m.requests:,} | {m.answered_per_s:.1f} | {_fmt(m.p50_ms)} | "
            f"{_fmt(m.p99_ms)} | {m.rss_mb:.1f} | {m.server_errors} | {m.unexpected} | "
            f"{m.no_answer} |"
        )
    if plot_name:
        lines += ["", f"![{title} soak: RSS, latency and errors per interval]({plot_name})"]
    return "\n".join(lines) + "\n"


def plot(run: SoakRun, verdict: Verdict, path: Path) -> None:
    """Answers/s, RSS, p50/p99 and errors per interval, as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [m.index * run.interval_s / 60.0 for m in run.minutes]
    fig, (rate, rss, latency, errors) = plt.subplots(4, 1, figsize=(8, 10), sharex=True)
    title = STORE_TITLES.get(run.store, run.store)
    fig.suptitle(
        f"Soak on {title}: {run.target_rate:.1f} req/s open-loop, "
        f"{'passed' if verdict.ok else 'FAILED'}"
    )
    warm_end = verdict.warm_up * run.interval_s / 60.0
    answered = [m.answered_per_s for m in run.minutes]
    rate.plot(x, answered, marker="o", label="answers/s")
    rate.axhline(run.target_rate, color="black", linestyle="--", label="target")
    rate.set_ylabel("answers/s")
    rate.set_ylim(0, max([run.target_rate, *answered]) * 1.25)
    rss_mb = [m.rss_mb for m in run.minutes]
    rss.plot(x, rss_mb, marker="o", label="server RSS")
    rss.set_ylabel("RSS, MB")
    rss.set_ylim(0, max(rss_mb) * 1.25 or 1.0)
    latency.plot(x, [m.p50_ms for m in run.minutes], marker="o", label="p50")
    latency.plot(x, [m.p99_ms for m in run.minutes], marker="o", label="p99")
    latency.set_ylabel("latency, ms")
    latency.set_ylim(bottom=0)
    counts = {
        "5xx": [m.server_errors for m in run.minutes],
        "unexpected 4xx": [m.unexpected for m in run.minutes],
        "no answer": [m.no_answer for m in run.minutes],
    }
    for label, values in counts.items():
        errors.plot(x, values, marker="o", label=label)
    errors.set_ylabel("errors")
    errors.set_xlabel("minutes (end of each interval)")
    errors.set_ylim(0, max(1, *(max(v) for v in counts.values())) * 1.25)
    for axes in (rate, rss, latency, errors):
        if verdict.warm_up:
            axes.axvspan(0, warm_end, color="grey", alpha=0.15, label="warm-up")
        axes.grid(True, alpha=0.3)
        axes.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write(run: SoakRun, verdict: Verdict, directory: Path, stem: str) -> Mapping[str, Path]:
    """Writes ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {kind: directory / f"{stem}.{kind}" for kind in ("json", "md", "png")}
    plot(run, verdict, paths["png"])
    paths["json"].write_text(to_json(run, verdict) + "\n")
    paths["md"].write_text(summary_markdown(run, verdict, paths["png"].name))
    return paths


def from_json(text: str) -> tuple[SoakRun, Verdict]:
    """A written report read back (``to_json``'s inverse)."""
    data = json.loads(text)
    run = SoakRun(
        store=data["store"],
        minutes=[Minute(**m) for m in data["intervals"]],
        target_rate=data["targetRate"],
        interval_s=data["intervalSeconds"],
        max_rate=data["maxRate"],
        settings=data["settings"],
    )
    verdict = Verdict(
        [Check(**c) for c in data["checks"]],
        data["warmUpIntervals"],
        data["rssGrowth"],
        data["p99FirstThirdMs"],
        data["p99LastThirdMs"],
    )
    return run, verdict
