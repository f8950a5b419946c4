"""The ``Idempotency-Key`` header on POST, PUT and DELETE (IETF httpapi draft
"The Idempotency-Key HTTP Header Field").

- A retry with the same key and the same request (method, path, body) gets the
  original status and body again, with ``Idempotent-Replayed: true``, and has
  no second effect.
- The same key with a different request: 422 ``IDEMPOTENCY_KEY_REUSED``.
- A retry while the first is still running: 409 ``REQUEST_IN_PROGRESS``.
- Keys are scoped to the caller (the API key's name, or anonymous) and kept in
  the store (``infra/idempotency.py``) for at least ``IDEMPOTENCY_TTL_HOURS``.

What is replayed: a response from a command, success (2xx) or a refusal the
domain decided (404, 409 but for CONCURRENT_MODIFICATION and
REBUILD_IN_PROGRESS, which a retry may get past). Validation errors, 401/403,
413 and 5xx are not kept, so that a corrected or later retry runs; nor is a
refusal of a request carrying a name (``carries_personal_data``).

The response is kept before it is sent, so a retry sent the moment the answer
arrives is replayed. A process that dies between its command's commit and
keeping its response leaves the key in progress until its lease ends
(``LEASE_SECONDS``); a retry after that runs the request again, which the
domain then refuses as a duplicate (no second effect, but not the original
response). So that this holds for ids the service draws (``POST /events``
without ``eventId``), a keyed request's generated id derives from its caller
and key (``generated_id``): the retry draws the same id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid

from starlette.concurrency import run_in_threadpool
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import IDEMPOTENT_REPLAYS
from api.middleware import read_body, replay_body, send_error
from api.security import ANONYMOUS_PRINCIPAL, Principal
from infra.idempotency import IdempotencyStore, StoredResponse, carries_personal_data

logger = logging.getLogger(__name__)

HEADER = b"idempotency-key"
METHODS = frozenset({"POST", "PUT", "DELETE"})
# Printable ASCII; no space at either end (HTTP strips it from header values).
KEY_PATTERN = r"^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$"
_KEY = re.compile(KEY_PATTERN)
LEASE_SECONDS = 60.0
# Response headers worth replaying (X-Request-ID belongs to each request).
KEPT_HEADERS = frozenset({b"content-type", b"location"})
# Refusals that say "not now", not the command's outcome: a retry may get past them.
TRANSIENT_CODES = frozenset({"CONCURRENT_MODIFICATION", "REBUILD_IN_PROGRESS"})
# Where the ids of keyed requests are drawn from (any fixed UUID; never change it,
# or a retry across the change would draw a new id).
GENERATED_IDS = uuid.UUID("3f0b6c2e-8d41-4a57-9e1c-5b7a2d906e18")
STATE_KEY = "idempotency_key"


def generated_id(scope_state: object) -> str:
    """A new id for what the request creates: random, unless the request carries an
    Idempotency-Key, then derived from its caller and key, so that a retry after a
    crash (its answer never kept) draws the same id and has no second effect.

    ``scope_state`` is the request's ``request.state``."""
    claimed = getattr(scope_state, STATE_KEY, None)
    if claimed is None:
        return str(uuid.uuid4())
    caller, key = claimed
    return str(uuid.uuid5(GENERATED_IDS, f"{len(caller)}:{caller}/{key}"))


def _kept(status: int, body: bytes, *, personal: bool = False) -> bool:
    """Whether a response is the outcome of its command (replayed on a retry).
    For a request carrying ``personal`` data, only successes (which show it, and
    which the user's erasure deletes): a refusal kept under the request's
    fingerprint would outlive the erasure as a way to test guessed names."""
    if 200 <= status < 300:
        return True
    if status not in (404, 409) or personal:
        return False
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return False
    return code not in TRANSIENT_CODES


def _routed(scope: Scope) -> bool:
    """Whether a route answers this method at this path."""
    return any(
        route.matches(scope)[0] == Match.FULL
        for route in scope["app"].router.routes
        if not isinstance(route, Mount)
    )


def fingerprint(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode("utf-8", "surrogateescape"), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class IdempotencyMiddleware:
    """Pure ASGI, inside ``RequestContextMiddleware`` (which authenticated the
    caller and buffered the body)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in METHODS:
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers") or []).get(HEADER)
        if raw is None or not _routed(scope):
            # No key, or no route for it (its 404 or 405 is the answer, every time).
            await self.app(scope, receive, send)
            return
        key = raw.decode("latin-1")
        if not _KEY.fullmatch(key):
            await send_error(
                scope,
                send,
                400,
                "VALIDATION_ERROR",
                "The request is not valid",
                [
                    {
                        "field": "Idempotency-Key",
                        "message": (
                            "must be 1-255 printable ASCII characters, without spaces at either end"
                        ),
                    }
                ],
            )
            return
        principal = scope.get("state", {}).get("principal", ANONYMOUS_PRINCIPAL)
        caller = principal.name if isinstance(principal, Principal) else ANONYMOUS_PRINCIPAL.name
        body = await read_body(receive)  # buffered, and capped, by RequestContextMiddleware
        store: IdempotencyStore = scope["app"].state.container.idempotency
        print_ = fingerprint(scope["method"], scope["path"], body)
        claim = await run_in_threadpool(
            store.claim, caller, key, print_, lease_seconds=LEASE_SECONDS
        )
        if claim.outcome != "new":
            await self._answer_again(scope, send, claim.fingerprint == print_, claim.response)
            return
        scope.setdefault("state", {})[STATE_KEY] = (caller, key)
        personal = carries_personal_data(body)
        await self._run(scope, replay_body(body, receive), send, store, (caller, key), personal)

    async def _answer_again(
        self, scope: Scope, send: Send, same_request: bool, response: StoredResponse | None
    ) -> None:
        if not same_request:
            await send_error(
                scope,
                send,
                422,
                "IDEMPOTENCY_KEY_REUSED",
                "This Idempotency-Key was used for a different request",
            )
            return
        if response is None:
            await send_error(
                scope,
                send,
                409,
                "REQUEST_IN_PROGRESS",
                "A request with this Idempotency-Key is still being processed; retry later",
                headers=[(b"retry-after", b"1")],
            )
            return
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        headers.append((b"idempotent-replayed", b"true"))
        IDEMPOTENT_REPLAYS.inc()
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def _run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        store: IdempotencyStore,
        claimed: tuple[str, str],
        personal: bool,
    ) -> None:
        caller, key = claimed
        status = 500
        kept_headers: list[tuple[str, str]] = []
        messages: list[Message] = []

        async def capture(message: Message) -> None:
            # Held back, not sent: the answer is stored before the client can see it,
            # so a retry sent the moment it arrives is replayed, never told to wait.
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                kept_headers.extend(
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", [])
                    if k.lower() in KEPT_HEADERS
                )
            messages.append(message)

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            await run_in_threadpool(store.release, caller, key)
            raise
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        try:
            if _kept(status, body, personal=personal):
                response = StoredResponse(status, tuple(kept_headers), body)
                await run_in_threadpool(store.complete, caller, key, response)
            else:
                await run_in_threadpool(store.release, caller, key)
        except Exception:
            # The command's outcome stands (it may be committed): the client gets it,
            # and the key stays in progress until its lease ends (the crash window).
            logger.exception("could not keep the answer of idempotency key %s", key)
        for message in messages:
            await send(message)
