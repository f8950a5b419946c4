"""OpenAPI helpers: the error responses each route can give, with examples."""

from __future__ import annotations

from typing import Any

from api.errors import ERROR_CODES
from api.schemas import ErrorBody

MESSAGES = {
    "VALIDATION_ERROR": "The request is not valid",
    "USER_NOT_FOUND": "User 'alice' not found",
    "EVENT_NOT_FOUND": "Event 'pycon-2024' not found",
    "REGISTRATION_NOT_FOUND": "User 'alice' is not registered for event 'pycon-2024'",
    "DUPLICATE_USER": "User 'alice' already exists",
    "DUPLICATE_EVENT": "Event 'pycon-2024' already exists",
    "EVENT_NOT_OPEN": "Event 'pycon-2024' is draft, not open for registration",
    "EVENT_FULL": "Event 'pycon-2024' is full and has no waitlist",
    "CAPACITY_BELOW_REGISTERED": "Capacity 3 is below the 5 confirmed registrations",
    "EVENT_HAS_REGISTRATIONS": "Event 'pycon-2024' has 5 confirmed and 0 waitlisted registrations",
    "ALREADY_REGISTERED": "User 'alice' is already registered for event 'pycon-2024'",
    "ALREADY_ON_WAITLIST": "User 'alice' is already on the waitlist of event 'pycon-2024'",
    "CONCURRENT_MODIFICATION": "The resource kept changing under this request; please retry",
    "SERVICE_UNAVAILABLE": "The service is temporarily unavailable; please retry",
    "PAYLOAD_TOO_LARGE": "Request body is larger than 65536 bytes",
    "INTERNAL_ERROR": "An internal error occurred",
    "UNAUTHORIZED": "The API key is not valid",
    "IDEMPOTENCY_KEY_REUSED": "This Idempotency-Key was used for a different request",
    "REQUEST_IN_PROGRESS": "A request with this Idempotency-Key is still being processed",
    "FORBIDDEN": "The API key 'reporting' (role client) may not use /audit",
    "PROJECTION_NOT_FOUND": "Projection 'seats' not found (there is: read-tables)",
    "REBUILD_IN_PROGRESS": "Projection 'read-tables' is being rebuilt (42% done)",
    "PERSONAL_DATA_NOT_SEALED": (
        "User 'alice' was created before names were sealed: run `regsvc seal-names` first"
    ),
    "STORED_EVENT_UNDECODABLE": (
        "Version 7 of stream 0b8a6c1e-5f7d-5e2a-9c3b-1d4e6f8a0b2c cannot be decoded: "
        "the state cannot be replayed past it (see /audit/verify)"
    ),
}

# The answers of the Idempotency-Key middleware, on every POST, PUT and DELETE.
IDEMPOTENCY = ("IDEMPOTENCY_KEY_REUSED", "REQUEST_IN_PROGRESS")
# On every route: a malformed or unknown Authorization header is refused, and so
# are a query parameter the route does not take (``api.deps.known_query_parameters``)
# and a body over the limit, whatever the method (``api.middleware``).
ALWAYS = (
    "VALIDATION_ERROR",
    "UNAUTHORIZED",
    "PAYLOAD_TOO_LARGE",
    "INTERNAL_ERROR",
    "SERVICE_UNAVAILABLE",
)


def _example(code: str, path: str) -> dict[str, Any]:
    details = (
        [{"field": "name", "message": "must not be all whitespace or invisible characters"}]
        if code == "VALIDATION_ERROR"
        else []
    )
    return {
        "summary": code,
        "value": {
            "error": {
                "code": code,
                "message": MESSAGES.get(code, code),
                "details": details,
                "timestamp": "2024-12-01T10:00:00.000000Z",
                "path": path,
                "requestId": "3f2b9c0e8a1d4e6f9b7a5c3d1e0f2a4b",
            }
        },
    }


def errors(
    *codes: str, path: str = "/users/alice/registrations"
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error codes (plus 500 and 503), their
    examples answering a request to ``path``."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys((*codes, *ALWAYS)):
        by_status.setdefault(ERROR_CODES[code], []).append(code)
    return {
        status: {
            "model": ErrorBody,
            "description": "Error codes: " + ", ".join(found),
            "content": {"application/json": {"examples": {c: _example(c, path) for c in found}}},
        }
        for status, found in sorted(by_status.items())
    }
