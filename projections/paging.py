"""Opaque page tokens: the last key of a page, signed so that only tokens this service issued
are accepted.

A token is the URL-safe base64 (unpadded) of an HMAC-SHA256 tag followed by the key as compact
JSON. The tag is checked in constant time before the JSON is even parsed, and the key's values
are then checked strictly (types, 64-bit integer range, non-empty strings without lone
surrogates, bounded lengths), so a forged, garbled or truncated token is a validation error and
never reaches a store.

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


def _tag(payload: bytes) -> bytes:
    return hmac.new(_SigningKey.value, payload, hashlib.sha256).digest()


def encode_token(key: dict[str, object]) -> str:
    payload = json.dumps(key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(_tag(payload) + payload).decode().rstrip("=")


def _invalid() -> InvalidPageTokenError:
    return InvalidPageTokenError("nextToken is not valid", field="nextToken")


def _valid_value(value: object, kind: type) -> bool:
    if isinstance(value, bool) or not isinstance(value, kind):
        return False
    if isinstance(value, int):
        return MIN_KEY_INT <= value <= MAX_KEY_INT
    if isinstance(value, str):
        return 0 < len(value) <= MAX_KEY_STRING_LENGTH and not _SURROGATE.search(value)
    return False


def decode_token(token: str, expected: dict[str, type]) -> dict[str, object]:
    """The key inside ``token``; its fields must have exactly the ``expected`` types.

    Raises InvalidPageTokenError (400 VALIDATION_ERROR on nextToken) for any token this
    service did not issue with its current key.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidPageTokenError("nextToken is too long", field="nextToken")
    if not _TOKEN.fullmatch(token):
        raise _invalid()
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise _invalid() from None
    tag, payload = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
    if len(tag) != _TAG_BYTES or not hmac.compare_digest(tag, _tag(payload)):
        raise _invalid()
    try:
        key = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _invalid() from None
    if not isinstance(key, dict) or set(key) != set(expected):
        raise _invalid()
    if not all(_valid_value(key[name], kind) for name, kind in expected.items()):
        raise _invalid()
    return key
