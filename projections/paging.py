"""Opaque page tokens: the last key of a page, as URL-safe base64 JSON."""

from __future__ import annotations

import base64
import binascii
import json

from domain.errors import InvalidPageTokenError

MAX_TOKEN_LENGTH = 2048


def encode_token(key: dict[str, object]) -> str:
    raw = json.dumps(key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, expected: dict[str, type]) -> dict[str, object]:
    """The key inside ``token``; its fields must have exactly the ``expected`` types."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidPageTokenError("nextToken is too long", field="nextToken")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidPageTokenError("nextToken is not valid", field="nextToken") from None
    if not isinstance(key, dict) or set(key) != set(expected):
        raise InvalidPageTokenError("nextToken is not valid", field="nextToken")
    for name, kind in expected.items():
        value = key[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InvalidPageTokenError("nextToken is not valid", field="nextToken")
    return key
