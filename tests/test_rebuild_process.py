"""A rebuild killed with SIGKILL resumes in a new process and ends identical to a
clean fold, on each store: real ``regsvc rebuild`` processes, while the service
keeps writing in between."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.application import GatheringSpec
from infra.settings import Settings
from infra.wiring import Container, build_container
from projections.catch_up import wait_until_logged
from tests.servers import run_cli
from tests.support import server_env

pytestmark = pytest.mark.processes

PEOPLE = 60


@pytest.fixture
def busy(store_settings: dict[str, object], tmp_path: Path) -> Iterator[Container]:
    """A store with a few hundred events, and the service that wrote them."""
    settings = Settings(
        **store_settings,  # type: ignore[arg-type]
        data_dir=tmp_path / "data",
        environment="test",
        rebuild_switch_grace_seconds=0.0,
    )
    container = build_container(settings)
    container.start()
    service = container.service
    service.create_gathering(
        GatheringSpec("crowded", "Crowded", "2030-03-03", PEOPLE // 2, waitlist_enabled=True)
    )
    for n in range(PEOPLE):
        service.create_user(f"p{n}", f"Person {n}")
        service.register(f"p{n}", "crowded")
    wait_until_logged(service.recorder)
    try:
        yield container
    finally:
        container.close()


def test_a_rebuild_killed_mid_way_resumes_in_a_new_process_and_ends_as_a_clean_fold(
    busy: Container, store_settings: dict[str, object], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **server_env(store_settings),
        "DATA_DIR": str(tmp_path / "data"),
        "REBUILD_BATCH_SIZE": "1",  # one event per transaction: slow enough to kill
        "REBUILD_SWITCH_GRACE_SECONDS": "0",
    }
    head = busy.service.recorder.max_notification_id() or 0
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "rebuild"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            state = busy.rebuilder.state()
            if state is not None and state.log_position >= head // 4:
                break
            assert process.poll() is None, "the rebuild ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    killed = busy.rebuilder.state()
    assert killed is not None
    assert killed.state == "rebuilding"
    assert 0 < killed.log_position < head
    # Its process is gone: not shown as running, but as interrupted, with how to resume.
    shown = busy.projection("read-tables")
    assert (shown.state, shown.progress) == ("interrupted", killed.log_position / head)
    assert shown.resume is not None

    # The service kept serving and writing on the live tables meanwhile.
    busy.service.create_user("after", "After")
    busy.service.register("after", "crowded")
    busy.service.leave("p0", "crowded")
    live = busy.read_model.dump()

    resumed = run_cli(server_env(store_settings), tmp_path / "data", "rebuild")

    assert resumed.returncode == 0, resumed.stderr
    resumed_from = int(
        resumed.stderr.split("resuming the rebuild from notification ")[1].split()[0]
    )
    assert resumed_from >= killed.log_position
    assert busy.read_model.dump() == live
    assert busy.rebuilder.state() is None
    assert busy.check("read-tables").ok
    checked = run_cli(server_env(store_settings), tmp_path / "data", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
