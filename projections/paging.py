"""Opaque page tokens: the last key of a page, signed so that only tokens this service issued
are accepted.

A token is the URL-safe base64 (unpadded) of an HMAC-SHA256 tag followed by the key as compact
JSON. The tag also signs the list the token pages (its path and filters), which the token
does not carry: a token is accepted only by the list that issued it. The tag is checked in
constant time before the JSON is even parsed, and the key's values are then checked strictly
(types, 64-bit integer range, non-empty strings without lone surrogates, bounded lengths), so
a forged, garbled or truncated token is a validation error and never reaches a store.

The signing key is process-wide. It defaults to a fixed built-in key, which is fine for
development but lets anyone mint tokens: production should set ``PAGE_TOKEN_SECRET`` (the
application passes it to :func:`set_token_key` when it is created). Every process serving the
same clients must share the secret, so that a token one of them issued pages on another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re

from domain.errors import InvalidPageTokenError

MAX_TOKEN_LENGTH = 2048
# The alphabet of unpadded URL-safe base64; the OpenAPI document states it for nextToken.
URL_SAFE_BASE64_PATTERN = r"^[A-Za-z0-9_-]+$"
MAX_KEY_STRING_LENGTH = 256
MIN_KEY_INT = -1
MAX_KEY_INT = 2**63 - 1

DEFAULT_TOKEN_KEY = b"registration-service default page-token key; set PAGE_TOKEN_SECRET"

_TAG_BYTES = hashlib.sha256().digest_size
_TOKEN = re.compile(URL_SAFE_BASE64_PATTERN)
_SURROGATE = re.compile("[\ud800-\udfff]")


class _SigningKey:
    """The process-wide key that signs and checks page tokens."""

    value: bytes = DEFAULT_TOKEN_KEY


def set_token_key(key: bytes) -> None:
    """Signs and checks page tokens with ``key`` from now on (in this process)."""
    if not key:
        msg = "the page token key must not be empty"
        raise ValueError(msg)
    _SigningKey.value = bytes(key)


def _tag(list_of: str, payload: bytes) -> bytes:
    # The list is signed with the key, not carried in the token: a token pages
    # only the list it came from (the same user's, the same filter...).
    scope = list_of.encode("utf-8", "surrogatepass")
    signed = len(scope).to_bytes(8, "big") + scope + payload
    return hmac.new(_SigningKey.value, signed, hashlib.sha256).digest()


def encode_token(key: dict[str, object], *, list_of: str) -> str:
    """A token for the page after ``key`` of the list ``list_of`` names (its
    path and filters, such as ``users/alice/registrations``)."""
    payload = json.dumps(key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(_tag(list_of, payload) + payload).decode().rstrip("=")


def events_list(status: str | None) -> str:
    """The name a token of ``GET /events`` (with its status filter) is signed for."""
    return f"events?status={status or ''}"


def user_registrations_list(user_id: str) -> str:
    return f"users/{user_id}/registrations"


def event_registrations_list(event_id: str) -> str:
    return f"events/{event_id}/registrations"


def event_history(event_id: str) -> str:
    return f"audit/events/{event_id}/history"


def user_history(user_id: str) -> str:
    return f"audit/users/{user_id}/history"


def invalid_token() -> InvalidPageTokenError:
    """The refusal of a nextToken (400 VALIDATION_ERROR on ``nextToken``)."""
    return InvalidPageTokenError("nextToken is not valid", field="nextToken")


def _valid_value(value: object, kind: type) -> bool:
    if isinstance(value, bool) or not isinstance(value, kind):
        return False
    if isinstance(value, int):
        return MIN_KEY_INT <= value <= MAX_KEY_INT
    if isinstance(value, str):
        return 0 < len(value) <= MAX_KEY_STRING_LENGTH and not _SURROGATE.search(value)
    return False


def decode_token(token: str, expected: dict[str, type], *, list_of: str) -> dict[str, object]:
    """The key inside ``token``; its fields must have exactly the ``expected`` types.

    Raises InvalidPageTokenError (400 VALIDATION_ERROR on nextToken) for any token this
    service did not issue with its current key for the same list (``list_of``): a
    token of another list, user or filter would page from a place that list never
    gave out, and silently skip rows.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidPageTokenError("nextToken is too long", field="nextToken")
    if not _TOKEN.fullmatch(token):
        raise invalid_token()
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise invalid_token() from None
    tag, payload = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
    if len(tag) != _TAG_BYTES or not hmac.compare_digest(tag, _tag(list_of, payload)):
        raise invalid_token()
    try:
        key = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise invalid_token() from None
    if not isinstance(key, dict) or set(key) != set(expected):
        raise invalid_token()
    if not all(_valid_value(key[name], kind) for name, kind in expected.items()):
        raise invalid_token()
    return key
