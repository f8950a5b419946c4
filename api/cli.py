"""Admin commands: create tables, rebuild the read tables, or audit the event history.

    python -m api.cli create-tables   # create the store's missing tables (idempotent)
    python -m api.cli rebuild         # empty the read tables and replay every event
    python -m api.cli verify          # replay into scratch tables, compare, check invariants

Long commands show a progress bar on a terminal; verify exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Never

from tqdm import tqdm

from domain.invariants import gathering_violations
from domain.model import Gathering
from infra.logs import configure_logging
from infra.settings import Settings
from infra.sqlite.read_tables import SQLiteReadModel
from infra.wiring import Container, build_container
from projections.catch_up import CatchUpProjector, Progress, wait_until_logged
from projections.ports import ReadModel


def _progress_bar(total: int, description: str) -> tuple[tqdm[Never], Callable[[Progress], None]]:
    bar: tqdm[Never] = tqdm(total=total, desc=description, unit="event", disable=None)

    def update(progress: Progress) -> None:
        bar.total = progress.head
        bar.n = progress.position
        bar.refresh()

    return bar, update


def rebuild(container: Container) -> int:
    """Empties the read tables and replays the whole notification log into them."""
    container.read_model.reset()
    head = container.service.recorder.max_notification_id() or 0
    bar, update = _progress_bar(head, "rebuilding read tables")
    with bar:
        return container.projector.catch_up(on_progress=update)


@dataclass
class AuditReport:
    events_checked: int = 0
    gatherings_checked: int = 0
    problems: list[str] = field(default_factory=list)


def _rows(read_model: ReadModel) -> dict[str, object]:
    """Everything a read model serves, in a comparable form."""
    snapshot: dict[str, object] = {}
    token: str | None = None
    while True:
        page = read_model.list_events(None, 500, token)
        for event in page.items:
            snapshot[f"event/{event.event_id}"] = (
                event.title, event.description, event.date, event.location, event.organizer,
                event.status, event.capacity, event.waitlist_enabled, event.registered_count,
                event.waitlist_count, event.waitlist,
            )  # fmt: skip
            reg_token: str | None = None
            while True:
                regs = read_model.list_event_registrations(event.event_id, 500, reg_token)
                for r in regs.items:
                    snapshot[f"registration/{r.event_id}/{r.user_id}"] = (
                        r.status,
                        r.waitlist_position,
                        r.registered_at,
                    )
                reg_token = regs.next_token
                if reg_token is None:
                    break
        token = page.next_token
        if token is None:
            return snapshot


def verify(container: Container) -> AuditReport:
    """Replays every event into scratch tables, compares, and checks every gathering."""
    report = AuditReport()
    recorder = container.service.recorder
    wait_until_logged(recorder)  # DynamoDB: everything written so far is indexed
    head = recorder.max_notification_id() or 0
    with tempfile.TemporaryDirectory() as scratch:
        fresh = SQLiteReadModel(Path(scratch) / "audit.sqlite3")
        projector = CatchUpProjector(recorder, container.service.mapper, fresh)
        bar, update = _progress_bar(head, "replaying history")
        with bar:
            report.events_checked = projector.catch_up(until=head, on_progress=update)
        container.projector.catch_up(until=head)
        expected, actual = _rows(fresh), _rows(container.read_model)
        fresh.close()
    for key in sorted(expected.keys() | actual.keys()):
        if expected.get(key) != actual.get(key):
            report.problems.append(
                f"{key}: replay gives {expected.get(key)!r}, read tables hold {actual.get(key)!r}"
            )
    for key in tqdm(sorted(k for k in expected if k.startswith("event/")), desc="invariants"):
        gathering: Gathering = container.service.get_gathering(key.removeprefix("event/"))
        report.gatherings_checked += 1
        report.problems.extend(
            f"{key}: {violation}" for violation in gathering_violations(gathering)
        )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.cli", description=__doc__)
    parser.add_argument("command", choices=("rebuild", "verify", "create-tables"))
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging("WARNING")
    container = build_container(settings)
    try:
        if args.command == "create-tables":
            # Building the container created whatever was missing.
            print(f"tables ready on {settings.store}")
            return 0
        if args.command == "rebuild":
            position = rebuild(container)
            print(f"read tables rebuilt up to notification {position}")
            return 0
        report = verify(container)
        print(
            f"checked {report.events_checked} notifications and "
            f"{report.gatherings_checked} events: {len(report.problems)} problem(s)"
        )
        for problem in report.problems:
            print(f"  {problem}")
        return 1 if report.problems else 0
    finally:
        container.close()


if __name__ == "__main__":
    sys.exit(main())
