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


@cache
def _adapter() -> Mangum:
    return Mangum(create_app(), lifespan="auto")


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda handler (``api.lambda_handler.handler``)."""
    return _adapter()(event, context)
