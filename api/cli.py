"""``regsvc``: the service's one command line (also ``python -m api.cli``).

    regsvc serve           # serve the API (what `make run` runs)
    regsvc export          # the ordered feed as JSON Lines (--after, --until, --output)
    regsvc verify          # recompute every stream's hash chain; exit 1 on a broken link
    regsvc check           # fold the log afresh and compare with the read tables; exit 1
    regsvc rebuild         # empty the read tables and fold the whole log into them
    regsvc status          # the read tables' position, the log's head and the lag
    regsvc create-tables   # create the store's missing tables (idempotent)

Settings come from the environment, as for the server (STORE, DATA_DIR...).
Long commands show a progress bar on stderr; what they report goes to stdout.
Events written by a command are recorded with actor ``cli:<user>``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Never, TextIO

from tqdm import tqdm

from api.__main__ import serve
from api.schemas import Projection
from domain.invariants import gathering_violations
from domain.model import Gathering
from infra.logs import configure_logging, set_actor, set_request_id
from infra.settings import Settings
from infra.sqlite.read_tables import SQLiteReadModel
from infra.wiring import Container, build_container
from projections.catch_up import CatchUpProjector, Progress, wait_until_logged
from projections.ports import ReadModel
from projections.status import read_tables_status


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


def check(container: Container) -> AuditReport:
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


def export(container: Container, after: int, until: int | None, output: TextIO) -> int:
    """Writes the feed's entries after ``after`` (up to ``until``) as JSON Lines."""
    wait_until_logged(container.service.recorder)
    head = container.service.recorder.max_notification_id() or 0
    last = head if until is None else min(until, head)
    written = 0
    with tqdm(total=max(last - after, 0), desc="exporting", unit="event", disable=None) as bar:
        for entry in container.audit.entries(after, last):
            output.write(json.dumps(entry, separators=(",", ":")) + "\n")
            written += 1
            bar.update(entry["position"] - bar.n - after)
    return written


def verify(container: Container) -> dict[str, object]:
    """Recomputes every stream's hash chain over the whole log."""
    wait_until_logged(container.service.recorder)
    head = container.service.recorder.max_notification_id() or 0
    bar, update = _progress_bar(head, "verifying chains")
    with bar:
        return container.audit.verify(
            on_progress=lambda checked, total: update(Progress(checked, total))
        ).report()


def status(container: Container) -> dict[str, object]:
    """Where the read tables stand against the log (as ``GET /admin/projections``)."""
    found = read_tables_status(
        container.service.recorder, container.read_model, container.service.mapper.to_domain_event
    )
    shown = Projection.model_validate(found, from_attributes=True)
    return {"projections": [shown.model_dump(mode="json", by_alias=True, exclude_none=True)]}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regsvc",
        description="The registration service's command line.",
        epilog="Settings come from the environment (STORE, DATA_DIR, ...), as for the server.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    commands.add_parser("serve", help="serve the API (uvicorn) on HOST:PORT")
    exporting = commands.add_parser(
        "export", help="write the ordered feed as JSON Lines (one entry per line)"
    )
    exporting.add_argument(
        "--after", type=int, default=0, metavar="N", help="start after position N (default 0)"
    )
    exporting.add_argument(
        "--until", type=int, default=None, metavar="M", help="stop at position M (inclusive)"
    )
    exporting.add_argument(
        "--output", "-o", default="-", metavar="FILE", help="where to write (default stdout)"
    )
    commands.add_parser(
        "verify", help="recompute every stream's hash chain; exit 1 on a broken link"
    )
    commands.add_parser(
        "check", help="fold the log afresh and compare with the read tables; exit 1 on drift"
    )
    commands.add_parser("rebuild", help="empty the read tables and fold the whole log into them")
    commands.add_parser("status", help="the read tables' position, the log's head and the lag")
    commands.add_parser("create-tables", help="create the store's missing tables (idempotent)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "export" and args.after < 0:
        parser.error("--after must be 0 or more")
    settings = Settings()
    if args.command == "serve":
        configure_logging(settings.log_level)
        serve(settings)
        return 0
    configure_logging("WARNING")
    set_actor(f"cli:{getpass.getuser()}")
    set_request_id(uuid.uuid4().hex)
    container = build_container(settings)
    try:
        return _run(args, settings, container)
    finally:
        container.close()


def _run(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    if args.command == "create-tables":
        # Building the container created whatever was missing.
        print(f"tables ready on {settings.store}")
        return 0
    if args.command == "rebuild":
        position = rebuild(container)
        print(f"read tables rebuilt up to notification {position}")
        return 0
    if args.command == "status":
        print(json.dumps(status(container), indent=2))
        return 0
    if args.command == "export":
        if args.output == "-":
            written = export(container, args.after, args.until, sys.stdout)
        else:
            with Path(args.output).open("w", encoding="utf-8") as output:
                written = export(container, args.after, args.until, output)
        print(f"exported {written} entries", file=sys.stderr)
        return 0
    if args.command == "verify":
        chains = verify(container)
        print(json.dumps(chains, indent=2))
        return 0 if chains["ok"] else 1
    drift = check(container)
    print(
        f"checked {drift.events_checked} notifications and "
        f"{drift.gatherings_checked} events: {len(drift.problems)} problem(s)"
    )
    for problem in drift.problems:
        print(f"  {problem}")
    return 1 if drift.problems else 0


if __name__ == "__main__":
    sys.exit(main())
