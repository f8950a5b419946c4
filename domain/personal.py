"""Personal data: what the domain stores of a person is sealed under that person's key.

A user's personal data (today the name) is never stored as given: the
command seals it (``PersonalData.seal``) and the events, the snapshots and the
read tables hold the sealed value, an opaque string. Erasing the user
destroys the key (``PersonalData.destroy``), after which no sealed value of
theirs can be opened again, while every stored byte of history, and so its
hash chains, stays as it was (crypto-shredding). The store's implementation
(AES-GCM, keys in a key table) is ``infra/personal_data.py``; reads open sealed
values through ``projections/personal.py``.
"""

from __future__ import annotations

from typing import Protocol


class PersonalData(Protocol):
    """Seals personal values under a per-user key, and destroys that key."""

    def seal(self, user_id: str, field: str, value: str) -> str:
        """``value`` (of ``field``) sealed under the user's key, which is made on
        first use; raises ``UserErasedError`` once the user's key was destroyed."""
        ...

    def destroy(self, user_id: str) -> None:
        """Destroys the user's key for good (idempotent): nothing sealed under it
        can be opened afterwards, and nothing new is sealed for the user."""
        ...

    def is_sealed(self, value: str) -> bool:
        """Whether ``value`` is sealed (a history written before values were
        sealed holds them as given)."""
        ...


class Unsealed:
    """Keeps values as given: for the domain's own tests, which run without a
    store. The service always runs with the store's sealer (``infra/wiring.py``)."""

    def seal(self, user_id: str, field: str, value: str) -> str:
        return value

    def destroy(self, user_id: str) -> None:
        return

    def is_sealed(self, value: str) -> bool:
        return True
