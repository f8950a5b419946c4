"""The state-based yardstick's HTTP app: the service's REST API on the store
``STORE`` names (see ``bench.baseline``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The service's own request and response models: every server of the benchmark
# validates and serialises exactly what the service does.
from api.schemas import (
    Event,
    EventCreate,
    EventList,
    EventUpdate,
    Registration,
    RegistrationCreate,
    RegistrationList,
    User,
    UserCreate,
)
from bench.baseline.common import (
    STATS,
    ApiError,
    Row,
    Store,
    now_iso,
)
from bench.baseline.dynamodb import DynamoStore
from bench.baseline.sqlite import SqliteStore


def make_store() -> tuple[str, Store]:
    kind = os.environ.get("STORE", "sqlite").lower()
    if kind == "dynamodb":
        return kind, DynamoStore()
    if kind != "sqlite":
        msg = f"unknown STORE={kind!r} (sqlite or dynamodb)"
        raise SystemExit(msg)
    data_dir = Path(os.environ.get("DATA_DIR", "data"))
    data_dir.mkdir(parents=True, exist_ok=True)
    return kind, SqliteStore(data_dir / "baseline.sqlite3")


class _State:
    kind = "sqlite"
    store: Store | None = None


STATE = _State()


def store() -> Store:
    assert STATE.store is not None, "the app has not started"
    return STATE.store


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    STATE.kind, STATE.store = make_store()
    try:
        yield
    finally:
        STATE.store.close()


class RequestIdMiddleware:
    """Puts an X-Request-ID on every response (the client's, or a new one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"),
            uuid.uuid4().hex,
        )
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        await self.app(scope, receive, send_with_id)


app = FastAPI(
    title="State-based baseline", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
)
app.add_middleware(RequestIdMiddleware)


def error_response(
    request: Request, status: int, code: str, message: str, details: list[Row] | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={
            "error": {
                "code": code,
                "message": message,
                "details": details or [],
                "timestamp": now_iso(),
                "path": request.url.path,
                "requestId": getattr(request.state, "request_id", ""),
            }
        },
    )


@app.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(request, exc.status, exc.code, exc.message)


@app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    details = [
        {
            "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
            "message": e.get("msg"),
        }
        for e in exc.errors()
    ]
    return error_response(request, 400, "VALIDATION_ERROR", "Invalid request", details)


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    return error_response(request, exc.status_code, code, str(exc.detail))


@app.get("/health")
def health() -> Row:
    store().ping()
    return {"status": "ok", "store": STATE.kind}


@app.get("/_stats")
def stats() -> Row:
    return STATS.snapshot(STATE.kind)


@app.post("/users", status_code=201, response_model=User)
def create_user(body: UserCreate, response: Response) -> Row:
    user = store().create_user(body)
    response.headers["Location"] = f"/users/{body.user_id}"
    return user


@app.get("/users/{user_id}", response_model=User)
def get_user(user_id: str) -> Row:
    return store().get_user(user_id)


@app.post("/events", status_code=201, response_model=Event)
def create_event(body: EventCreate, response: Response) -> Row:
    event = store().create_event(body)
    response.headers["Location"] = f"/events/{event['eventId']}"
    return event


@app.get("/events", response_model=EventList)
def list_events(status: str | None = None, limit: int = 50) -> Row:
    events, total = store().list_events(status, max(1, min(limit, 500)))
    return {"events": events, "total": total, "nextToken": None}


@app.get("/events/{event_id}", response_model=Event)
def get_event(event_id: str) -> Row:
    return store().get_event(event_id)


@app.put("/events/{event_id}", response_model=Event)
def update_event(event_id: str, body: EventUpdate) -> Row:
    return store().update_event(event_id, body)


@app.delete("/events/{event_id}", status_code=204)
def delete_event(event_id: str) -> Response:
    store().delete_event(event_id)
    return Response(status_code=204)


@app.get("/events/{event_id}/registrations", response_model=RegistrationList)
def event_registrations(event_id: str) -> Row:
    registrations = store().event_registrations(event_id)
    return {"registrations": registrations, "total": len(registrations), "nextToken": None}


@app.post(
    "/users/{user_id}/registrations",
    status_code=201,
    response_model=Registration,
    response_model_exclude_none=True,
)
def register(user_id: str, body: RegistrationCreate, response: Response) -> Row:
    registration = store().register(user_id, body.event_id)
    response.headers["Location"] = f"/users/{user_id}/registrations/{body.event_id}"
    return registration


@app.get(
    "/users/{user_id}/registrations",
    response_model=RegistrationList,
    response_model_exclude_none=True,
)
def user_registrations(user_id: str, limit: int = 50) -> Row:
    registrations = store().user_registrations(user_id)
    page = registrations[: max(1, min(limit, 500))]
    return {"registrations": page, "total": len(registrations), "nextToken": None}


@app.get(
    "/users/{user_id}/registrations/{event_id}",
    response_model=Registration,
    response_model_exclude_none=True,
)
def get_registration(user_id: str, event_id: str) -> Row:
    return store().get_registration(user_id, event_id)


@app.delete("/users/{user_id}/registrations/{event_id}", status_code=204)
def leave(user_id: str, event_id: str) -> Response:
    store().leave(user_id, event_id)
    return Response(status_code=204)
