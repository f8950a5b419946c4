"""AWS Lambda entry point: adapts the FastAPI app to API Gateway events via Mangum.

The ASGI app and the Mangum adapter are built on the first invocation and cached
for the lifetime of the execution environment, so importing this module has no
side effects beyond importing ``mangum`` and ``api.main``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from mangum import Mangum
from mangum.types import LambdaContext

from api.main import create_app
from api.metrics import PrometheusObserver
from infra.logs import configure_logging, flush_logs
from infra.settings import Settings
from infra.wiring import build_container


@cache
def _adapter() -> Mangum:
    # The container is built once per execution environment (cold start), not
    # per invocation: Mangum would run an app lifespan around every event.
    # Nothing runs in the background: every write updates the read tables in
    # its own transaction, and with one request per invocation there is
    # nothing to batch, so commands run directly (no batcher thread).
    settings = Settings()
    configure_logging(settings.log_level)
    container = build_container(settings, observer=PrometheusObserver())
    return Mangum(create_app(container=container), lifespan="off")


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda handler (``api.lambda_handler.handler``)."""
    try:
        return _adapter()(event, context)
    finally:
        flush_logs()  # the process may be frozen once this returns
