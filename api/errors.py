"""The one mapping from errors to HTTP statuses and the API's error envelope."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import MapperDeserialisationError, OperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from api.security import WWW_AUTHENTICATE
from domain import errors
from infra.logs import current_request_id

logger = logging.getLogger(__name__)

# Each domain error: HTTP status and error code. Order does not matter: the
# classes are disjoint leaves of RegistrationDomainError.
DOMAIN_ERRORS: dict[type[errors.RegistrationDomainError], tuple[int, str]] = {
    errors.InvalidCommandError: (400, "VALIDATION_ERROR"),
    errors.InvalidPageTokenError: (400, "VALIDATION_ERROR"),
    errors.UnauthorizedError: (401, "UNAUTHORIZED"),
    errors.ForbiddenError: (403, "FORBIDDEN"),
    errors.UserNotFoundError: (404, "USER_NOT_FOUND"),
    errors.GatheringNotFoundError: (404, "EVENT_NOT_FOUND"),
    errors.RegistrationNotFoundError: (404, "REGISTRATION_NOT_FOUND"),
    errors.ProjectionNotFoundError: (404, "PROJECTION_NOT_FOUND"),
    errors.DuplicateUserError: (409, "DUPLICATE_USER"),
    errors.UserErasedError: (409, "DUPLICATE_USER"),
    errors.PersonalDataNotSealedError: (409, "PERSONAL_DATA_NOT_SEALED"),
    errors.DuplicateGatheringError: (409, "DUPLICATE_EVENT"),
    errors.GatheringNotOpenError: (409, "EVENT_NOT_OPEN"),
    errors.GatheringFullError: (409, "EVENT_FULL"),
    errors.CapacityBelowRegisteredError: (409, "CAPACITY_BELOW_REGISTERED"),
    errors.GatheringHasRegistrationsError: (409, "EVENT_HAS_REGISTRATIONS"),
    errors.AlreadyRegisteredError: (409, "ALREADY_REGISTERED"),
    errors.AlreadyOnWaitlistError: (409, "ALREADY_ON_WAITLIST"),
    errors.ConcurrentModificationError: (409, "CONCURRENT_MODIFICATION"),
    errors.RebuildInProgressError: (409, "REBUILD_IN_PROGRESS"),
    errors.UndecodableEventError: (409, "STORED_EVENT_UNDECODABLE"),
    errors.WriteConflictError: (409, "CONCURRENT_MODIFICATION"),
    errors.StoreUnavailableError: (503, "SERVICE_UNAVAILABLE"),
    errors.StoreBusyError: (503, "SERVICE_UNAVAILABLE"),
    errors.StoreDidNotAnswerError: (503, "SERVICE_UNAVAILABLE"),
    errors.InvariantViolationError: (500, "INTERNAL_ERROR"),
}

# Every code a client can meet, with its status: the OpenAPI document lists these.
ERROR_CODES: dict[str, int] = {code: status for status, code in DOMAIN_ERRORS.values()} | {
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "PAYLOAD_TOO_LARGE": 413,
    # Answered by the Idempotency-Key middleware (api/idempotency.py).
    "IDEMPOTENCY_KEY_REUSED": 422,
    "REQUEST_IN_PROGRESS": 409,
    "INTERNAL_ERROR": 500,
    "SERVICE_UNAVAILABLE": 503,
}


# The methods a 405's Allow header may list, in the order it lists them.
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def printable_path(path: str) -> str:
    """``path`` as it can be written in JSON and logs (lone surrogates replaced)."""
    return path.encode("utf-8", "replace").decode("utf-8")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers at the request's path (RFC 9110's Allow).

    Starlette's own 405 names only the first route that matched the path, though
    several routes may share it (GET and POST /events). HEAD is allowed wherever
    GET is (``RequestContextMiddleware`` answers it as the GET, without the body).
    """
    allowed: list[str] = []
    for method in HTTP_METHODS:
        if method == "HEAD":
            if allowed[-1:] == ["GET"]:
                allowed.append(method)
            continue
        probe = {
            "type": "http",
            "path": request.scope["path"],
            "root_path": request.scope.get("root_path", ""),
            "method": method,
            "headers": [],
            "query_string": b"",
        }
        for route in request.app.router.routes:
            # A mount (the docs' static files) matches every method; it answers its own 405s.
            if not isinstance(route, Mount) and route.matches(probe)[0] == Match.FULL:
                allowed.append(method)
                break
    return allowed


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {
            "code": code,
            "message": message,
            "details": details or [],
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "path": printable_path(request.url.path),
            "requestId": current_request_id(),
        }
    }
    return JSONResponse(status_code=status, content=body, headers=headers)


def _field_of(loc: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


NOT_JSON = {"field": "body", "message": "Request body is not valid JSON"}
NOT_SENT_AS_JSON = {
    "field": "Content-Type",
    "message": "The body is read as JSON only when sent with Content-Type: application/json",
}


def _sent_as_json(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _validation_details(
    exc: RequestValidationError, request: Request | None = None
) -> list[dict[str, str]]:
    details = []
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        if error.get("type") == "json_invalid":
            details.append(NOT_JSON)
            continue
        if loc == ("body",) and request is not None and not _sent_as_json(request):
            # FastAPI hands a body of another (or no) content type over unparsed.
            details.append(NOT_SENT_AS_JSON)
            continue
        message = str(error.get("msg", "Invalid value")).removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden":
            message = "Unknown or read-only field"
        details.append({"field": _field_of(loc), "message": message})
    return details


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.RegistrationDomainError)
    status, code = DOMAIN_ERRORS.get(type(exc), (500, "INTERNAL_ERROR"))
    if status >= 500:
        logger.error("request failed: %s: %s", type(exc).__name__, exc.message)
        message = (
            "The service is temporarily unavailable; please retry"
            if status == 503
            else "An internal error occurred"
        )
        return error_response(
            request, status, code, message, headers={"Retry-After": "1"} if status == 503 else None
        )
    details = [{"field": exc.field, "message": exc.message}] if exc.field else []
    # RFC 9110: a 401 names the scheme that would be accepted.
    headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if status == 401 else None
    return error_response(request, status, code, exc.message, details, headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _validation_details(exc, request)
    logger.info("validation failed", extra={"details": details})
    return error_response(request, 400, "VALIDATION_ERROR", "The request is not valid", details)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return error_response(request, 404, "NOT_FOUND", "No such route")
    if exc.status_code == 405:
        headers = dict(exc.headers or {})
        allowed = allowed_methods(request)
        if allowed:
            headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
            headers["Allow"] = ", ".join(allowed)
        return error_response(
            request, 405, "METHOD_NOT_ALLOWED", "Method not allowed on this route", headers=headers
        )
    if exc.status_code == 413:
        return error_response(request, 413, "PAYLOAD_TOO_LARGE", str(exc.detail))
    if exc.status_code == 400:
        # FastAPI's "error parsing the body" (a body that is not UTF-8, say): the
        # same answer as any body that is not JSON.
        if exc.__cause__ is not None:
            return error_response(
                request, 400, "VALIDATION_ERROR", "The request is not valid", [NOT_JSON]
            )
        return error_response(request, 400, "VALIDATION_ERROR", str(exc.detail))
    return error_response(request, exc.status_code, "HTTP_ERROR", str(exc.detail))


async def _on_store_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("store unavailable: %s: %s", type(exc).__name__, exc)
    return error_response(
        request,
        503,
        "SERVICE_UNAVAILABLE",
        "The service is temporarily unavailable; please retry",
        headers={"Retry-After": "1"},
    )


async def _on_undecodable(request: Request, exc: Exception) -> JSONResponse:
    # A command (or the drift check) replays a stream through a stored event whose
    # bytes no longer decode: the same answer as time travel gives for it.
    logger.error("a stored event cannot be decoded: %s", exc)
    return error_response(
        request,
        409,
        "STORED_EVENT_UNDECODABLE",
        "A stored event this request must replay cannot be decoded (GET /audit/verify names it)",
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error")
    return error_response(request, 500, "INTERNAL_ERROR", "An internal error occurred")


def install_error_handlers(app: FastAPI) -> None:
    handlers: dict[Any, Any] = {
        errors.RegistrationDomainError: _on_domain_error,
        RequestValidationError: _on_validation_error,
        StarletteHTTPException: _on_http_error,
        OperationalError: _on_store_error,
        MapperDeserialisationError: _on_undecodable,
        sqlite3.OperationalError: _on_store_error,
        # The log did not catch up in time (DynamoDB's stream indexer).
        TimeoutError: _on_store_error,
        Exception: _on_unexpected,
    }
    for exc_class, handler in handlers.items():
        app.add_exception_handler(exc_class, handler)
