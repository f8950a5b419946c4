"""API keys: who is calling, and whether their role allows the route.

Keys come from ``API_KEYS`` (``infra.settings.parse_api_keys``), held only as
SHA-256 digests. A request's ``Authorization: Bearer <key>`` is hashed and
compared with every configured digest in constant time (``hmac.compare_digest``
on each, no early exit), so neither the answer's timing nor any log line says
anything about a key.

- No ``Authorization`` header: the caller is ``anonymous``; the open (public
  contract) routes serve it, /audit and /admin answer 401.
- A malformed or unknown ``Authorization`` header: 401 on every route.
- A known key: its name is the actor (recorded on the events its requests
  cause) and its role decides /audit (auditor, admin) and /admin (admin).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from domain.errors import ForbiddenError, UnauthorizedError
from infra.settings import ApiKey

ANONYMOUS = "anonymous"
AUDIT_ROLES = frozenset({"auditor", "admin"})
ADMIN_ROLES = frozenset({"admin"})

WWW_AUTHENTICATE = 'Bearer realm="registrations"'


@dataclass(frozen=True)
class Principal:
    """The caller: an API key's name and role, or anonymous (role None)."""

    name: str
    role: str | None = None


ANONYMOUS_PRINCIPAL = Principal(ANONYMOUS)


def authenticate(authorization: bytes | None, keys: tuple[ApiKey, ...]) -> Principal:
    """The principal an ``Authorization`` header names (absent: anonymous).

    Raises UnauthorizedError for anything but ``Bearer <known key>``.
    """
    if authorization is None:
        return ANONYMOUS_PRINCIPAL
    scheme, _, credentials = authorization.partition(b" ")
    key = credentials.strip()
    if scheme.lower() != b"bearer" or not key:
        raise UnauthorizedError("The Authorization header must be 'Bearer <API key>'")
    presented = hashlib.sha256(key).digest()
    found: ApiKey | None = None
    for candidate in keys:  # every digest is compared: the time says nothing
        if hmac.compare_digest(presented, candidate.digest):
            found = candidate
    if found is None:
        raise UnauthorizedError("The API key is not valid")
    return Principal(found.name, found.role)


def current_principal(request: Request) -> Principal:
    """The principal the middleware authenticated for this request."""
    principal = request.scope.get("state", {}).get("principal")
    return principal if isinstance(principal, Principal) else ANONYMOUS_PRINCIPAL


# Declares the scheme in the OpenAPI document; the middleware has already
# authenticated the header by the time a route runs.
_bearer = HTTPBearer(auto_error=False, description="An API key configured in API_KEYS.")


def _requiring(roles: frozenset[str], area: str) -> Callable[..., Awaitable[Principal]]:
    async def require(
        request: Request,
        _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        principal = current_principal(request)
        if principal.role is None:
            raise UnauthorizedError(f"{area} needs an API key: send 'Authorization: Bearer <key>'")
        if principal.role not in roles:
            raise ForbiddenError(
                f"The API key '{principal.name}' (role {principal.role}) may not use {area}; "
                f"it needs role {' or '.join(sorted(roles))}"
            )
        return principal

    return require


Auditor = Annotated[Principal, Depends(_requiring(AUDIT_ROLES, "/audit"))]
"""A route parameter that admits role auditor or admin (else 401 / 403)."""
Admin = Annotated[Principal, Depends(_requiring(ADMIN_ROLES, "/admin"))]
"""A route parameter that admits role admin (else 401 / 403)."""
