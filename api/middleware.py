"""Pure ASGI middleware: request ids, body limits, access logs, last-resort 500s."""

from __future__ import annotations

import json
import logging
import random
import re
import time
from datetime import UTC, datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import printable_path
from api.metrics import observe_request
from api.security import WWW_AUTHENTICATE, authenticate
from domain.errors import UnauthorizedError
from infra.kit import CapacityMetering
from infra.logs import current_request_id, set_actor, set_request_id
from infra.settings import ApiKey

logger = logging.getLogger(__name__)

REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
"""A request id as echoed in ``X-Request-ID`` and recorded with each event (an
incoming header that does not match it is replaced by a fresh id)."""
SANE_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)


def _new_request_id() -> str:
    """32 random hex digits, like a UUID4's: an id must be unique, not secret, so
    it comes from the process's seeded generator instead of a system call per
    request (which also hands the GIL to the command-batcher thread)."""
    return f"{random.getrandbits(128):032x}"


class _BodyTooLargeError(Exception):
    """Raised when a request body passes the configured limit."""


def _is_utf8(text: str) -> bool:
    """False when ``text`` holds a lone surrogate, which no UTF-8 byte sequence encodes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class RequestContextMiddleware:
    """Gives every request an id (echoing a sane X-Request-ID) and its caller (the
    API key's name, or anonymous), logs it, caps its body."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        api_keys: tuple[ApiKey, ...] = (),
        *,
        metering: CapacityMetering | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.api_keys = api_keys
        # The store's consumed capacity per request, in its log line (DynamoDB's;
        # None on SQLite: ``StoreKit.metering``).
        self.metering = metering

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if SANE_REQUEST_ID.fullmatch(incoming) else _new_request_id()
        set_request_id(request_id)
        capacity = self.metering.start_request() if self.metering is not None else None
        started = time.perf_counter()
        status = 500
        response_started = False
        method = scope.get("method")
        head = method == "HEAD"
        if head:
            # RFC 9110: HEAD is answered on every GET route, in this one place: as the
            # GET (same status and headers, Content-Length included), without the body.
            scope = {**scope, "method": "GET"}

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                message["headers"] = [
                    *[(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"],
                    (b"x-request-id", request_id.encode()),
                ]
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        try:
            if not _is_utf8(scope.get("path", "")):
                # Servers decode paths as UTF-8 with replacement, but an ASGI adapter
                # (such as one for AWS Lambda) may hand over a lone surrogate.
                await send_error(
                    scope,
                    send_with_id,
                    400,
                    "VALIDATION_ERROR",
                    "The request is not valid",
                    [{"field": "path", "message": "must be valid UTF-8"}],
                )
                return
            principal = authenticate(headers.get(b"authorization"), self.api_keys)
            set_actor(principal.name)
            scope.setdefault("state", {})["principal"] = principal
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                raise _BodyTooLargeError
            body = await read_body(receive, self.max_body_bytes)
            await self.app(scope, replay_body(body, receive), send_with_id)
        except UnauthorizedError as refused:
            await send_error(
                scope,
                send_with_id,
                401,
                "UNAUTHORIZED",
                refused.message,
                headers=[(b"www-authenticate", WWW_AUTHENTICATE.encode())],
            )
        except _BodyTooLargeError:
            await send_error(
                scope,
                send_with_id,
                413,
                "PAYLOAD_TOO_LARGE",
                f"Request body is larger than {self.max_body_bytes} bytes",
            )
        except Exception:
            logger.exception("unhandled error")
            if not response_started:
                await send_error(
                    scope, send_with_id, 500, "INTERNAL_ERROR", "An internal error occurred"
                )
        finally:
            seconds = time.perf_counter() - started
            observe_request(scope, str(method), status, seconds)
            fields: dict[str, object] = {
                "method": method,
                "path": printable_path(str(scope.get("path", ""))),
                "status": status,
                "durationMs": round(seconds * 1000, 2),
            }
            if capacity is not None and (capacity.read or capacity.write):
                fields["consumedCapacity"] = capacity.totals()
            logger.info("request", extra=fields)


async def read_body(receive: Receive, max_bytes: int | None = None) -> bytes:
    """The whole request body (raises _BodyTooLargeError past ``max_bytes``)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise _BodyTooLargeError
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over ``body`` (already read) first."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def send_error(
    scope: Scope,
    send: Send,
    status: int,
    code: str,
    message: str,
    details: list[dict[str, str]] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answers with the standard error envelope (from ASGI middleware)."""
    body = json.dumps(
        {
            "error": {
                "code": code,
                "message": message,
                "details": details or [],
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "path": printable_path(str(scope.get("path", ""))),
                "requestId": current_request_id(),
            }
        },
        # As every other error body (Starlette's JSONResponse): compact, UTF-8.
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
