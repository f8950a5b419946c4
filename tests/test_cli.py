"""``regsvc``, the one command line: installed with the project, one subcommand per job."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import pytest

from domain.application import GatheringSpec
from domain.model import gathering_aggregate_id
from infra.devtools.dynamodb_local import local_client
from infra.settings import Settings
from infra.wiring import build_container
from projections.catch_up import wait_until_logged
from tests.servers import run_cli
from tests.support import server_env
from tests.test_tamper_evidence import overwrite

pytestmark = pytest.mark.processes

COMMANDS = (
    "serve",
    "export",
    "verify",
    "check",
    "rebuild",
    "status",
    "create-tables",
    "erase",
    "seal-names",
)


@pytest.fixture
def store(store_settings: dict[str, object], tmp_path: Path) -> dict[str, str]:
    """A store holding a small history (written by the service itself), as the
    environment that selects it for a ``regsvc`` process."""
    settings = Settings(**store_settings, data_dir=tmp_path / "data", environment="test")  # type: ignore[arg-type]
    container = build_container(settings)
    container.start()
    try:
        service = container.service
        service.create_gathering(
            GatheringSpec("pycon", "PyCon", "2025-05-01", 1, waitlist_enabled=True)
        )
        for name in ("ada", "bob"):
            service.create_user(name, name.title())
            service.register(name, "pycon")
        wait_until_logged(service.recorder)
    finally:
        container.close()
    return server_env(store_settings)


def test_regsvc_is_installed_in_the_projects_environment() -> None:
    script = Path(sys.executable).parent / "regsvc"
    assert script.exists(), "make's set-up installs the project (its console script)"
    for command in COMMANDS:
        shown = subprocess.run(
            [str(script), command, "--help"], capture_output=True, text=True, check=False
        )
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith(f"usage: regsvc {command}")


def test_export_writes_the_feed_as_json_lines(store: dict[str, str], tmp_path: Path) -> None:
    done = run_cli(store, tmp_path / "data", "export")
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["position"] for e in entries] == list(range(1, len(entries) + 1))
    assert {"GatheringCreated", "UserCreated", "SeatTaken", "WaitlistJoined"} <= {
        e["type"] for e in entries
    }
    assert "exported" in done.stderr  # the report goes to stderr, the data to stdout

    part = run_cli(store, tmp_path / "data", "export", "--after", "2", "--until", "4", "-o",
                   str(tmp_path / "part.jsonl"))  # fmt: skip
    assert part.returncode == 0, part.stderr
    lines = (tmp_path / "part.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == entries[2:4]


def test_verify_exits_0_on_an_intact_history_and_1_on_a_broken_one(
    store: dict[str, str], tmp_path: Path
) -> None:
    intact = run_cli(store, tmp_path / "data", "verify")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    report = json.loads(intact.stdout)
    assert report["ok"] is True
    assert report["checked"] > 0
    if store["STORE"] != "sqlite":
        return  # altering a stored event on DynamoDB: tests/test_tamper_evidence.py
    with sqlite3.connect(tmp_path / "data" / "events.sqlite3") as db:
        db.execute(
            "UPDATE stored_events SET state = replace(state, 'PyCon', 'PyCan') "
            "WHERE originator_id = ? AND originator_version = 1",
            (gathering_aggregate_id("pycon").hex,),
        )
    broken = run_cli(store, tmp_path / "data", "verify")
    assert broken.returncode == 1, broken.stdout + broken.stderr[-3000:]
    assert broken.stdout, broken.stderr[-3000:]
    assert json.loads(broken.stdout)["firstBroken"]["version"] == 1


def test_check_and_status_report_the_read_tables(store: dict[str, str], tmp_path: Path) -> None:
    checked = run_cli(store, tmp_path / "data", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 problem(s)" in checked.stdout
    status = run_cli(store, tmp_path / "data", "status")
    assert status.returncode == 0, status.stderr
    (projection,) = json.loads(status.stdout)["projections"]
    assert projection["lag"] == 0
    assert projection["state"] == "live"


def test_a_bad_argument_is_a_usage_error(store: dict[str, str], tmp_path: Path) -> None:
    done = run_cli(store, tmp_path / "data", "export", "--after", "-1")
    assert done.returncode == 2
    assert "--after" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_output_file_that_cannot_be_written_is_a_one_line_error(
    store: dict[str, str], tmp_path: Path
) -> None:
    done = run_cli(store, tmp_path / "data", "export", "-o", str(tmp_path / "no-such" / "x.jsonl"))

    assert done.returncode == 1
    assert done.stderr.startswith("regsvc export: "), done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def test_check_over_an_undecodable_stored_event_is_a_one_line_error(
    store: dict[str, str], store_settings: dict[str, object], tmp_path: Path
) -> None:
    settings = Settings(**store_settings, data_dir=tmp_path / "data", environment="test")  # type: ignore[arg-type]
    container = build_container(settings)
    try:
        overwrite(container, gathering_aggregate_id("pycon"), 2, b"\xff\xfe garbled")
    finally:
        container.close()

    for command in ("check", "rebuild"):
        done = run_cli(store, tmp_path / "data", command)
        lines = done.stderr.splitlines()
        assert done.returncode == 1, done.stdout + done.stderr[-3000:]
        # (the rebuild's own ERROR log line, JSON, may carry its exception)
        assert not [line for line in lines if line.startswith("Traceback")], done.stderr[-3000:]
        assert lines[-1].startswith(f"regsvc {command}: a stored event cannot be decoded")


def test_an_unreachable_store_is_a_one_line_error(store: dict[str, str], tmp_path: Path) -> None:
    if store["STORE"] != "dynamodb":
        pytest.skip("the embedded store is a local file: it cannot become unreachable")
    unreachable = {
        **store,
        "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9",
        "DYNAMODB_MAX_ATTEMPTS": "1",
    }

    done = run_cli(unreachable, tmp_path / "data", "status")

    assert done.returncode == 1
    assert done.stderr.startswith("regsvc status: the store is unavailable"), done.stderr[-3000:]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["verify", "status", "check", "export"])
def test_a_reading_command_on_no_store_says_so_and_creates_nothing(
    store_settings: dict[str, object], tmp_path: Path, command: str
) -> None:
    # A mistyped DATA_DIR or table prefix must not pass as an empty store.
    nowhere = {**server_env(store_settings), "DYNAMODB_TABLE_PREFIX": f"nosuch{uuid4().hex[:8]}-"}
    data_dir = tmp_path / "nowhere"

    done = run_cli(nowhere, data_dir, command)

    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert done.stderr.startswith(f"regsvc {command}: no "), done.stderr[-3000:]
    assert not (data_dir / "events.sqlite3").exists()
    if nowhere["STORE"] == "dynamodb":
        client = local_client(nowhere["AWS_ENDPOINT_URL_DYNAMODB"])
        names = client.list_tables()["TableNames"]
        assert not [n for n in names if n.startswith(nowhere["DYNAMODB_TABLE_PREFIX"])]


def test_reindex_finds_nothing_to_index_twice(store: dict[str, str], tmp_path: Path) -> None:
    done = run_cli(store, tmp_path / "data", "reindex")
    assert done.returncode == 0, done.stdout + done.stderr
    if store.get("STORE") == "dynamodb":
        assert done.stdout.strip().endswith("; 0 newly indexed"), done.stdout
        assert not done.stdout.startswith("scanned 0 ")
    else:
        assert "nothing to reindex" in done.stdout


def test_erase_erases_a_user_once_and_export_then_shows_no_name(
    store: dict[str, str], tmp_path: Path
) -> None:
    first = run_cli(store, tmp_path / "data", "erase", "ada")
    assert first.returncode == 0, first.stderr
    erased = json.loads(first.stdout)
    assert (erased["userId"], erased["erased"]) == ("ada", True)
    assert erased["erasedAt"].endswith("Z")  # as the API writes times
    again = run_cli(store, tmp_path / "data", "erase", "ada")
    assert json.loads(again.stdout) == erased
    unknown = run_cli(store, tmp_path / "data", "erase", "nobody")
    assert unknown.returncode == 1
    assert "not found" in unknown.stderr
    exported = run_cli(store, tmp_path / "data", "export")
    created = {
        entry["data"]["userId"]: entry["data"]
        for entry in map(json.loads, exported.stdout.splitlines())
        if entry["type"] == "UserCreated"
    }
    assert (created["ada"]["name"], created["ada"]["erased"]) == (None, True)
    assert (created["bob"]["name"], created["bob"]["erased"]) == ("Bob", False)
    assert run_cli(store, tmp_path / "data", "verify").returncode == 0
