"""``regsvc``: the service's one command line (also ``python -m api.cli``).

    regsvc serve           # serve the API (what `make run` runs)
    regsvc export          # the ordered feed as JSON Lines (--after, --until, --output)
    regsvc verify          # recompute every stream's hash chain; exit 1 on a broken link
    regsvc check           # fold the log afresh and compare with the read tables; exit 1
    regsvc rebuild         # fold the log into new read tables and switch them in (resumes)
    regsvc status          # the read tables' position, the log's head and the lag
    regsvc create-tables   # create the store's missing tables (idempotent)
    regsvc reindex         # DynamoDB: index the commits the stream lost (idempotent)
    regsvc erase USER_ID   # erase a user's personal data (destroys their key; idempotent)
    regsvc seal-names      # seal the names of a history written before names were sealed

Settings come from the environment, as for the server (STORE, DATA_DIR...).
Long commands show a progress bar on stderr; what they report goes to stdout.
Events written by a command are recorded with actor ``cli:<user>``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Never, TextIO

from eventsourcing.persistence import MapperDeserialisationError, OperationalError
from tqdm import tqdm

from api.__main__ import serve
from api.schemas import Erasure, Projection
from domain.errors import RebuildInProgressError, RegistrationDomainError
from domain.invariants import gathering_violations
from domain.model import Gathering
from infra.logs import (
    configure_logging,
    current_actor,
    current_request_id,
    set_actor,
    set_request_id,
)
from infra.settings import Settings
from infra.wiring import Container, build_container, store_kit
from projections.catch_up import Progress, wait_until_logged
from projections.drift import DriftReport
from projections.status import READ_TABLES


def _progress_bar(total: int, description: str) -> tuple[tqdm[Never], Callable[[Progress], None]]:
    bar: tqdm[Never] = tqdm(total=total, desc=description, unit="event", disable=None)

    def update(progress: Progress) -> None:
        bar.total = progress.head
        bar.n = progress.log_position
        bar.refresh()

    return bar, update


def rebuild(container: Container) -> int:
    """Folds the whole log into new tables, then switches them in (the API may keep
    serving meanwhile); resumes a rebuild that was interrupted."""
    rebuilder = container.rebuilder
    start = rebuilder.begin()
    if start:
        print(f"resuming the rebuild from notification {start}", file=sys.stderr)
    head = container.service.recorder.max_notification_id() or 0
    bar, update = _progress_bar(head, "rebuilding read tables")
    with bar:
        return rebuilder.run(on_progress=update)


@dataclass
class AuditReport:
    drift: DriftReport
    gatherings_checked: int = 0
    problems: list[str] = field(default_factory=list)


def check(container: Container) -> AuditReport:
    """Compares the read tables with a fresh fold of the log, and checks every
    gathering's invariants."""
    head = container.service.recorder.max_notification_id() or 0
    bar, update = _progress_bar(head, "replaying history")
    with bar:
        drift = container.check(READ_TABLES, lambda done, total: update(Progress(done, total)))
    report = AuditReport(drift)
    for difference in drift.differences:
        shown = difference.report()
        report.problems.append(
            f"{difference.table}/{difference.key}: replay gives {shown['expected']!r}, "
            f"read tables hold {shown['live']!r}"
        )
    for event_id in tqdm(drift.events, desc="invariants"):
        gathering: Gathering = container.service.get_gathering(event_id)
        report.gatherings_checked += 1
        report.problems.extend(
            f"event/{event_id}: {violation}" for violation in gathering_violations(gathering)
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
    wait_until_logged(container.service.recorder, every_process=True)
    head = container.service.recorder.max_notification_id() or 0
    bar, update = _progress_bar(head, "verifying chains")
    with bar:
        return container.audit.verify(
            on_progress=lambda checked, total: update(Progress(checked, total))
        ).report()


def status(container: Container) -> dict[str, object]:
    """Where the read tables stand against the log (as ``GET /admin/projections``)."""
    found = container.projection(READ_TABLES)
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
    commands.add_parser(
        "rebuild",
        help="fold the log into new read tables, then switch them in (resumes an interrupted "
        "rebuild; exit 2 while another runs)",
    )
    commands.add_parser("status", help="the read tables' position, the log's head and the lag")
    commands.add_parser("create-tables", help="create the store's missing tables (idempotent)")
    erasing = commands.add_parser(
        "erase", help="erase a user's personal data: destroy their key, record it (idempotent)"
    )
    erasing.add_argument("user_id", metavar="USER_ID")
    commands.add_parser(
        "seal-names",
        help="seal the names of a history written before names were sealed (one-time "
        "migration; rewrites those users' streams, rebuilds the read tables; service stopped)",
    )
    commands.add_parser(
        "reindex",
        help="DynamoDB: index every commit the index lacks (records the stream lost); idempotent",
    )
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
    try:
        if args.command in READ_ONLY and (missing := store_kit(settings).missing()):
            return _fail(args.command, f"{missing}; `regsvc create-tables` makes it")
        container = build_container(settings)
        try:
            return COMMANDS[args.command](args, container)
        finally:
            container.close()
    except OperationalError as error:
        return _fail(args.command, f"the store is unavailable: {error}")
    except MapperDeserialisationError as error:
        return _fail(
            args.command,
            f"a stored event cannot be decoded ({error}); `regsvc verify` names it",
        )
    except OSError as error:  # an output file that cannot be written, say
        return _fail(args.command, str(error))


# Commands that only read: on a store that is not there they say so, rather than
# create it and report on an empty one (a mistyped DATA_DIR or table prefix).
READ_ONLY = frozenset({"export", "verify", "check", "status"})


def _fail(command: str, why: str) -> int:
    print(f"regsvc {command}: {why}", file=sys.stderr)
    return 1


def _create_tables(args: argparse.Namespace, container: Container) -> int:
    # Building the container created whatever was missing.
    print(f"tables ready on {container.settings.store}")
    return 0


def _reindex(args: argparse.Namespace, container: Container) -> int:
    reindex = container.kit.reindexer(container.service.recorder)
    if reindex is None:
        print("nothing to reindex: this store writes its log with the events")
        return 0
    bar: tqdm[Never] = tqdm(desc="scanning events", unit="event", disable=None)

    def update(scanned: int) -> None:
        bar.n = scanned
        bar.refresh()

    with bar:
        scanned, indexed = reindex(update)
    print(f"scanned {scanned} events; {indexed} newly indexed")
    return 0


def _rebuild(args: argparse.Namespace, container: Container) -> int:
    try:
        log_position = rebuild(container)
    except RebuildInProgressError as error:
        print(f"regsvc rebuild: {error}", file=sys.stderr)
        return 2
    print(f"read tables rebuilt up to notification {log_position}")
    return 0


def _status(args: argparse.Namespace, container: Container) -> int:
    print(json.dumps(status(container), indent=2))
    return 0


def _export(args: argparse.Namespace, container: Container) -> int:
    if args.output == "-":
        written = export(container, args.after, args.until, sys.stdout)
    else:
        with Path(args.output).open("w", encoding="utf-8") as output:
            written = export(container, args.after, args.until, output)
    print(f"exported {written} entries", file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace, container: Container) -> int:
    chains = verify(container)
    print(json.dumps(chains, indent=2))
    return 0 if chains["ok"] else 1


def _check(args: argparse.Namespace, container: Container) -> int:
    audit = check(container)
    print(
        f"checked {audit.drift.rows} rows against the log up to notification "
        f"{audit.drift.log_position}, and {audit.gatherings_checked} events' invariants: "
        f"{len(audit.problems)} problem(s)"
    )
    for problem in audit.problems:
        print(f"  {problem}")
    return 1 if audit.problems else 0


def _erase(args: argparse.Namespace, container: Container) -> int:
    try:
        outcome = container.erase_user(args.user_id, current_actor(), current_request_id())
    except RegistrationDomainError as error:
        print(f"regsvc erase: {error.message}", file=sys.stderr)
        return 1
    erasure = Erasure(user_id=outcome.user_id, erased=True, erased_at=outcome.erased_at)
    print(erasure.model_dump_json(by_alias=True))  # as POST /admin/users/{userId}/erase answers
    return 0


def _seal_names(args: argparse.Namespace, container: Container) -> int:
    try:
        users = container.seal_names()
    except NotImplementedError as error:
        print(f"regsvc seal-names: {error}", file=sys.stderr)
        return 1
    print(f"sealed the names of {users} users")
    if users:
        log_position = rebuild(container)
        print(f"read tables rebuilt up to notification {log_position}")
        container.kit.scrub(compact=True)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Container], int]] = {
    "erase": _erase,
    "seal-names": _seal_names,
    "create-tables": _create_tables,
    "reindex": _reindex,
    "rebuild": _rebuild,
    "status": _status,
    "export": _export,
    "verify": _verify,
    "check": _check,
}


if __name__ == "__main__":
    sys.exit(main())
