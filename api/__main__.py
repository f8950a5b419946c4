"""``python -m api``: serve the API with uvicorn on the configured host and port.

On DynamoDB it uses the configured endpoint (or AWS). ``STORE=dynamodb make
run`` with no endpoint wraps this command in the development tool
``python -m infra.devtools.dynamodb_local run --``, which starts DynamoDB
Local for it and stops it afterwards; production code never imports that tool.
"""

from __future__ import annotations

import sys

import uvicorn

from infra.logs import configure_logging
from infra.settings import Settings


def serve(settings: Settings) -> None:
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
    )


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level)
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
