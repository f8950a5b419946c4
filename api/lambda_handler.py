"""AWS Lambda entry point: adapts the FastAPI app to API Gateway events via Mangum.

The ASGI app and the Mangum adapter are built on the first invocation and cached
for the lifetime of the execution environment, so importing this module has no
side effects beyond importing ``mangum`` and ``api.main``.
"""

from __future__ import annotations

from typing import Any

from mangum import Mangum
from mangum.types import LambdaContext

from api.main import create_app

_adapter: Mangum | None = None


def _get_adapter() -> Mangum:
    global _adapter
    if _adapter is None:
        _adapter = Mangum(create_app(), lifespan="auto")
    return _adapter


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda handler (``api.lambda_handler.handler``)."""
    return _get_adapter()(event, context)
