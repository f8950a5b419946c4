"""Schemathesis against the service's own OpenAPI document, with every check, on either store.

The service runs as `make run` runs it (``python -m api``, one uvicorn worker) on the
store under test; the schemathesis CLI (``run --checks all``) goes through its examples,
coverage, fuzzing (schema-valid and schema-breaking data) and stateful phases. So every
request the document allows must be accepted, every request it forbids refused, and
every response must match the document: no 5xx, documented statuses, content types,
headers and bodies, a correct Allow on 405, created resources found, deleted ones gone.

The run is short by default; SCHEMATHESIS_EXHAUSTIVE=1 runs far more examples. The only
failures waived are described in tests/api/schemathesis_hooks.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import running_server
from tests.support import server_env

pytestmark = [pytest.mark.slow, pytest.mark.processes]

REPO = Path(__file__).resolve().parents[2]
EXHAUSTIVE = os.environ.get("SCHEMATHESIS_EXHAUSTIVE") == "1"
# Examples per operation and phase (the coverage and examples phases do not depend on it):
# on DynamoDB Local every request is slower.
MAX_EXAMPLES = {"sqlite": 10, "dynamodb": 5}
EXHAUSTIVE_MAX_EXAMPLES = 500


def _report(output: str) -> str:
    """The CLI's failures and summary, without its progress lines."""
    start = output.find("FAILURES")
    return output[start:] if start >= 0 else output[-8000:]


def test_schemathesis_finds_no_failure_with_every_check(
    store_name: str, store_settings: dict[str, object], tmp_path: Path
) -> None:
    examples = EXHAUSTIVE_MAX_EXAMPLES if EXHAUSTIVE else MAX_EXAMPLES[store_name]
    server = {**server_env(store_settings), "PAGE_TOKEN_SECRET": "schemathesis run"}
    client_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks",
        "NO_COLOR": "1",
    }

    with running_server(tmp_path / "data", workers=1, extra_env=server) as base_url:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--no-color",
                "run",
                f"{base_url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                str(examples),
                "--workers",
                "1",
            ],
            cwd=tmp_path,  # schemathesis keeps its example database in the working directory
            env=client_env,
            capture_output=True,
            text=True,
            timeout=None if EXHAUSTIVE else 300,
            check=False,
        )

    assert result.returncode == 0, _report(result.stdout) + result.stderr[-4000:]
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", result.stdout)
    assert selected, result.stdout[-4000:]
    assert len(set(selected.groups())) == 1, selected.group(0)  # every operation was tested
