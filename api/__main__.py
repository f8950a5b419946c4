"""``python -m api``: serve the API with uvicorn on the configured host and port.

On DynamoDB it uses the configured endpoint (or AWS). ``STORE=dynamodb make
run`` with no endpoint wraps this command in the development tool
``python -m infra.devtools.dynamodb_local run --``, which starts DynamoDB
Local for it and stops it afterwards; production code never imports that tool.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import uvicorn

from infra.logs import configure_logging
from infra.settings import Settings


def serve(settings: Settings) -> None:
    # Several workers count their metrics in files that any worker's GET /metrics
    # sums (prometheus-client's multiprocess mode): a fresh directory per run
    # (unless PROMETHEUS_MULTIPROC_DIR names one), set before a worker starts.
    own_dir = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="regsvc-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    try:
        uvicorn.run(
            "api.main:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=None,
            access_log=False,
        )
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level)
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
