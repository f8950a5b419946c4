"""Request dependencies, as ``Annotated`` types the routes declare."""

from __future__ import annotations

import asyncio
import functools
import threading
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from api.idempotency import KEY_PATTERN
from api.schemas import ID_PATTERN
from domain.batching import Command
from infra.service import StoredRegistrationService
from infra.wiring import Container
from projections.personal import Revealer
from projections.ports import ReadModel

T = TypeVar("T")
P = ParamSpec("P")

# Dependencies that only look things up are ``async``: FastAPI then calls them
# on the event loop instead of handing each to a worker thread.


UNKNOWN_QUERY = "Unknown query parameter"
# Each route's query parameters, found once (routes are defined once, in the
# routers: every app has the same ones under the same unique ids).
_QUERY_NAMES: dict[str, frozenset[str]] = {}


def _query_names(route: APIRoute) -> frozenset[str]:
    """The query parameters ``route`` takes (its own and its dependencies')."""
    found = _QUERY_NAMES.get(route.unique_id)
    if found is None:
        names: set[str] = set()
        pending = [route.dependant]
        while pending:
            dependant = pending.pop()
            names.update(param.alias for param in dependant.query_params)
            pending.extend(dependant.dependencies)
        found = _QUERY_NAMES[route.unique_id] = frozenset(names)
    return found


async def known_query_parameters(request: Request) -> None:
    """Refuses a query parameter the route does not take (400 VALIDATION_ERROR
    naming it), as Stripe does: a misspelt ``limt`` or ``staus`` would otherwise
    be ignored, and the answer be another page or another list than asked for."""
    route = request.scope.get("route")
    if not request.query_params or not isinstance(route, APIRoute):
        return
    if not route.include_in_schema:  # a page (the console, the docs), not the API
        return
    names = _query_names(route)
    unknown = [name for name in dict.fromkeys(request.query_params.keys()) if name not in names]
    if unknown:
        raise RequestValidationError(
            [
                {"type": "unknown_query_parameter", "loc": ("query", name), "msg": UNKNOWN_QUERY}
                for name in unknown
            ]
        )


async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


# The service and the read model are looked up from the request directly, not
# through ``ContainerDep``: every sub-dependency costs FastAPI a recursive
# resolution per request, and these two sit on every route.


async def get_service(request: Request) -> StoredRegistrationService:
    container: Container = request.app.state.container
    return container.service


async def get_read_model(request: Request) -> ReadModel:
    container: Container = request.app.state.container
    return container.read_model


async def get_personal_data(request: Request) -> Revealer:
    container: Container = request.app.state.container
    return container.personal_data


class OutcomeHandOff:
    """Hands outcomes from the batcher to one event loop, waking it once for
    every burst of them.

    ``asyncio.wrap_future`` wakes the loop once per future (a write to its
    self-pipe and a turn of the loop each); the batcher resolves a batch's
    futures one after the other, so here the first of a burst schedules one
    delivery and the rest join it. A request that goes away (its task
    cancelled) does not cancel its command, which may already be deciding or
    committed: the outcome is dropped, the command stands.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # Built on the loop's thread; outcomes decided there (``LoopBatcher``)
        # need no wake-up through the loop's self-pipe.
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._ready: list[tuple[asyncio.Future[Any], Future[Any]]] = []

    def watch(self, outcome: Future[T]) -> asyncio.Future[T]:
        """An awaitable for ``outcome`` on this loop (call it from the loop)."""
        waiter: asyncio.Future[T] = self.loop.create_future()
        outcome.add_done_callback(lambda done: self._arrived(waiter, done))
        return waiter

    def _arrived(self, waiter: asyncio.Future[Any], outcome: Future[Any]) -> None:
        with self._lock:
            first = not self._ready
            self._ready.append((waiter, outcome))
        if not first:
            return
        if threading.get_ident() == self._loop_thread:
            self.loop.call_soon(self._deliver)
        else:
            self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
        for waiter, outcome in ready:
            if waiter.done():  # the request went away
                continue
            if outcome.cancelled():
                waiter.cancel()
                continue
            error = outcome.exception()
            if error is None:
                waiter.set_result(outcome.result())
            else:
                waiter.set_exception(error)


_hand_offs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, OutcomeHandOff] = (
    weakref.WeakKeyDictionary()
)


async def perform(service: StoredRegistrationService, command: Command[T]) -> T:
    """Runs a command through the service's batcher; the request awaits its outcome
    without holding a worker thread (the batcher decides and commits it, on this
    loop or in its own thread)."""
    loop = asyncio.get_running_loop()
    hand_off = _hand_offs.get(loop)
    if hand_off is None:
        hand_off = _hand_offs[loop] = OutcomeHandOff(loop)
    return await hand_off.watch(service.submit(command))


def reads(route: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """Makes a read route (a plain function of its ``read_model``) run on the
    event loop where the read model is local (``ReadModel.local``: SQLite, a
    read of well under a millisecond that waits for no lock) and in a worker
    thread where each query is a network round trip (DynamoDB). FastAPI would
    hand every plain route to a worker thread: a thread hop per read, which
    costs more than the read itself on SQLite."""

    @functools.wraps(route)
    async def endpoint(*args: P.args, **kwargs: P.kwargs) -> T:
        read_model = kwargs["read_model"]
        if getattr(read_model, "local", False):
            return route(*args, **kwargs)
        return await run_in_threadpool(route, *args, **kwargs)

    return endpoint


ServiceDep = Annotated[StoredRegistrationService, Depends(get_service)]
ReadModelDep = Annotated[ReadModel, Depends(get_read_model)]
PersonalDataDep = Annotated[Revealer, Depends(get_personal_data)]


UserIdPath = Annotated[str, Path(alias="userId", pattern=ID_PATTERN, description="The user's id.")]
EventIdPath = Annotated[
    str, Path(alias="eventId", pattern=ID_PATTERN, description="The event's id.")
]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size (1-500).")]
NextToken = Annotated[
    str | None,
    Query(alias="nextToken", max_length=2048, description="Token from the previous page."),
]


IDEMPOTENT: dict[str, Any] = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {
                "type": "string",
                "pattern": KEY_PATTERN,
                "minLength": 1,
                "maxLength": 255,
                "title": "Idempotency-Key",
            },
            "description": (
                "Makes a retry safe: the same key with the same request (method, path, body) "
                "replays the original status and body with `Idempotent-Replayed: true` and "
                "has no second effect; with a different request: 422 IDEMPOTENCY_KEY_REUSED; "
                "while the first is still running: 409 REQUEST_IN_PROGRESS. Keys are scoped "
                "to the caller and kept at least 24 hours."
            ),
        }
    ]
}
"""``openapi_extra=`` of every POST, PUT and DELETE route: the header is read and
checked (400 when malformed) by the idempotency middleware (api/idempotency.py),
before the route, so it is declared in the OpenAPI document only. As a FastAPI
dependency it cost every write a second round of dependency solving for a value
nobody reads."""
