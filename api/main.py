"""The HTTP edge: ``create_app`` builds the FastAPI application.

Run it with ``make run``, or ``uvicorn api.main:create_app --factory``.
Nothing happens at import time: settings are read, logging configured and
stores opened when the application starts (its lifespan).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from api import console, metrics
from api import openapi as openapi_refinements
from api.deps import known_query_parameters
from api.errors import install_error_handlers
from api.idempotency import IdempotencyMiddleware
from api.metrics import PrometheusObserver
from api.middleware import RequestContextMiddleware
from api.routes import admin, audit, events, health, registrations, users
from infra.logs import configure_logging
from infra.settings import Settings
from infra.wiring import Container, build_container, store_kit
from projections.paging import DEFAULT_TOKEN_KEY, set_token_key

SWAGGER_ASSETS = Path(fastapi_offline.__file__).parent / "static"

DESCRIPTION = """
Event-sourced registration service. People register for events that have a
capacity and an optional FIFO waitlist. Every change is a domain event in the
event store; the GET endpoints read the Users, Events and Registrations read
tables, which every write updates in the same transaction as its events, so a
GET sent after a write's response sees it.

Every non-2xx response has the body
`{"error": {"code", "message", "details", "timestamp", "path", "requestId"}}`,
and every response carries `X-Request-ID`.
"""


# A server allocates many short-lived objects per request; CPython's default
# (a young-generation collection every 700 allocations) pauses it often enough
# to show in tail latency. Measured with `make bench`'s load on SQLite: p99
# 195-214 ms -> 97-123 ms, and more requests per second.
GC_YOUNG_THRESHOLD = 50_000


def _tune_garbage_collection() -> None:
    """Moves what start-up allocated out of the collector's way, and collects less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    """The application; ``settings`` default to the environment's.

    Normally the app builds its container (stores, command batcher) when it starts
    and closes it when it stops. A caller that manages the container's life
    itself (AWS Lambda, where the lifespan would run per invocation) passes it in.
    """
    resolved = container.settings if container is not None else settings or Settings()
    # The store's kit, built once: it meters requests and the lifespan's container opens it.
    kit = container.kit if container is not None else store_kit(resolved)
    # Every process sharing PAGE_TOKEN_SECRET accepts the others' page tokens.
    secret = resolved.page_token_secret
    set_token_key(secret.get_secret_value().encode() if secret else DEFAULT_TOKEN_KEY)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if container is not None:
            yield
            return
        configure_logging(resolved.log_level)
        built = build_container(resolved, kit, PrometheusObserver())
        built.start()
        _tune_garbage_collection()
        app.state.container = built
        try:
            yield
        finally:
            built.close()

    app = FastAPI(
        title="Registration service",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # A path with a trailing slash is not a route: 404 in the error envelope,
        # not Starlette's 307 with an empty body and a Location built from Host.
        redirect_slashes=False,
        # Every route: a query parameter it does not take is refused, not ignored.
        dependencies=[Depends(known_query_parameters)],
        telemetry={
            "tracing": resolved.opentelemetry,
            "metrics": resolved.opentelemetry,
            "logs": resolved.opentelemetry,
            "operation_spans": resolved.opentelemetry,
        },
    )
    if container is not None:
        app.state.container = container
    if kit.metering is not None and kit.metering.listen is not None:
        kit.metering.listen(metrics.STORE_CALLS)  # the store's units, retries, throttles
    # Inside the request context (which authenticated the caller and read the body).
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=resolved.max_body_bytes,
        api_keys=resolved.api_keys,
        metering=kit.metering,
    )
    install_error_handlers(app)
    # The router tries its routes in this order (each inclusion costs a full
    # match of its paths), so the busiest come first: a registration was
    # matched in 55 us behind health, users and events, and in under 10 us
    # first. No two of these routers answer the same path.
    for router in (
        registrations.router,
        events.router,
        users.router,
        audit.router,
        admin.router,
        health.router,
    ):
        app.include_router(router)

    app.mount("/static/docs", StaticFiles(directory=SWAGGER_ASSETS), name="docs-assets")
    console.install(app)  # the web console: static files calling the routes above

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Registration service - API docs",
            swagger_js_url="/static/docs/swagger-ui-bundle.js",
            swagger_css_url="/static/docs/swagger-ui.css",
            swagger_favicon_url="/static/docs/favicon.png",
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = openapi_refinements.refine(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
