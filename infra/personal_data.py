"""Personal data sealed with AES-GCM under a per-user data key (crypto-shredding).

Each user gets a random 256-bit data key on first use, kept in the store's key
table (``KeyStore``: ``infra/sqlite/keys.py``, ``infra/dynamodb/keys.py``). A
sealed value is ``pd1:`` and the URL-safe base64 of a 96-bit nonce followed by
the AES-GCM ciphertext and tag; the associated data binds it to its user and
field (``<userId>/<field>``), so a sealed value copied to another user or
field does not open.

With a master key in the settings (``PERSONAL_DATA_MASTER_KEY``, 32 bytes in
base64), each data key is stored wrapped by it (AES-GCM again, bound to the
userId): a copy of the key table alone opens nothing. On AWS the master key
would be a KMS key (the README says how); the tests run without one.

Erasure destroys the user's row's key and leaves a tombstone, so no new key
is ever made for that userId. Nothing caches keys: a user erased by another
process is never revealed here afterwards (``with_keys_of`` holds the keys it
read for the one page being shown, then drops them).
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.errors import UserErasedError

if TYPE_CHECKING:
    from collections.abc import Collection

    from projections.personal import Revealer

PREFIX = "pd1:"
"""How a sealed value starts (a name stored before names were sealed does not)."""
NONCE_BYTES = 12
KEY_BYTES = 32
_PLAIN_KEY = b"\x00"  # stored data key: as is
_WRAPPED_KEY = b"\x01"  # stored data key: wrapped by the master key


class KeyStore(Protocol):
    """The key table: one row per user, holding the user's (wrapped) data key,
    or a tombstone once the user is erased."""

    def create(self, user_id: str, stored_key: bytes) -> bytes | None:
        """Keeps ``stored_key`` unless the user has a row already; returns the
        user's stored key (theirs if they had one), or None after erasure."""
        ...

    def get(self, user_id: str) -> bytes | None:
        """The user's stored key; None when they have none (erased, or never sealed)."""
        ...

    def get_many(self, user_ids: Collection[str]) -> dict[str, bytes]:
        """The stored keys of those of ``user_ids`` that have one, in as few
        reads as the store allows (a page of the feed names many users)."""
        ...

    def destroy(self, user_id: str) -> None:
        """Replaces the user's key with a tombstone (idempotent; also for a user
        without a row, so that no key is ever made for them)."""
        ...

    def close(self) -> None: ...


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


class PersonalDataVault:
    """Seals (``domain.personal.PersonalData``) and reveals
    (``projections.personal.Revealer``) personal values with the key table."""

    def __init__(self, keys: KeyStore, master_key: bytes | None = None) -> None:
        if master_key is not None and len(master_key) != KEY_BYTES:
            msg = f"The master key must be {KEY_BYTES} bytes, not {len(master_key)}"
            raise ValueError(msg)
        self.keys = keys
        self._master = AESGCM(master_key) if master_key is not None else None

    # -- domain.personal.PersonalData -------------------------------------------

    def seal(self, user_id: str, field: str, value: str) -> str:
        stored = self.keys.create(user_id, self._wrap(user_id, AESGCM.generate_key(256)))
        if stored is None:
            msg = f"User '{user_id}' was erased; the userId stays taken"
            raise UserErasedError(msg)
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._unwrap(user_id, stored)).encrypt(
            nonce, value.encode(), _bound(user_id, field)
        )
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def destroy(self, user_id: str) -> None:
        self.keys.destroy(user_id)

    def is_sealed(self, value: str) -> bool:
        return is_sealed(value)

    # -- projections.personal.Revealer ------------------------------------------

    def reveal(self, user_id: str, field: str, value: str) -> str | None:
        """The value as given; None once the user's key is destroyed (or when the
        value does not open under it). A value stored before values were sealed
        is returned as stored."""
        if not is_sealed(value):
            return value
        return self.open(user_id, field, value, self.keys.get(user_id))

    def open(self, user_id: str, field: str, value: str, stored: bytes | None) -> str | None:
        """The sealed ``value`` opened with the user's ``stored`` key (None: erased)."""
        if stored is None:
            return None
        try:
            raw = base64.urlsafe_b64decode(value[len(PREFIX) :])
            opened = AESGCM(self._unwrap(user_id, stored)).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _bound(user_id, field)
            )
        except (InvalidTag, ValueError):
            return None
        return opened.decode()

    def with_keys_of(self, user_ids: Collection[str]) -> Revealer:
        """A revealer for values of ``user_ids`` only, their keys read at once
        (``projections.personal.shown_entries``: one read per page, not per entry)."""
        keys = self.keys.get_many(user_ids)
        return _KeysRead(self, keys)

    def close(self) -> None:
        self.keys.close()

    # -- wrapping -------------------------------------------------------------------

    def _wrap(self, user_id: str, key: bytes) -> bytes:
        if self._master is None:
            return _PLAIN_KEY + key
        nonce = os.urandom(NONCE_BYTES)
        return _WRAPPED_KEY + nonce + self._master.encrypt(nonce, key, user_id.encode())

    def _unwrap(self, user_id: str, stored: bytes) -> bytes:
        kind, rest = stored[:1], stored[1:]
        if kind == _PLAIN_KEY:
            return rest
        if self._master is None:
            msg = "A data key is wrapped by a master key, but PERSONAL_DATA_MASTER_KEY is not set"
            raise RuntimeError(msg)
        return self._master.decrypt(rest[:NONCE_BYTES], rest[NONCE_BYTES:], user_id.encode())


def _bound(user_id: str, field: str) -> bytes:
    return f"{user_id}/{field}".encode()


class _KeysRead:
    """A revealer whose users' keys were read beforehand (``with_keys_of``)."""

    def __init__(self, vault: PersonalDataVault, keys: dict[str, bytes]) -> None:
        self._vault = vault
        self._keys = keys

    def reveal(self, user_id: str, field: str, value: str) -> str | None:
        if not is_sealed(value):
            return value
        return self._vault.open(user_id, field, value, self._keys.get(user_id))
