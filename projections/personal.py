"""Personal data as reads show it: opened with the user's key, or erased.

The read tables, like the events, hold a user's name sealed
(``domain/personal.py``); once the user is erased, the fold of ``User.Erased``
replaces it with ``ERASED``, so that neither the live tables nor a rebuild of
them holds anything of the name. Reads open the sealed name with the user's
key (``Revealer``): a name whose key is destroyed shows as ``name`` None and
``erased`` True.

Entries of the log (the feed, histories, the export) show the name the same
way (``data.erased`` says which); an entry whose personal data is sealed also
carries what is stored under ``sealed``, so that its chain can still be
recomputed from the entry alone: drop ``data.erased`` and put ``sealed`` back
into ``data``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from projections.views import UserRow

if TYPE_CHECKING:
    from collections.abc import Collection

ERASED = "erased"
"""What the read tables hold for the name of an erased user."""

#: The personal fields of each entry type that has any: type -> (data key, field).
PERSONAL_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {"UserCreated": (("name", "name"),)}


class Revealer(Protocol):
    def reveal(self, user_id: str, field: str, value: str) -> str | None:
        """The value ``field`` of the user was sealed from; None once the user's
        key is destroyed."""
        ...


class KeysReader(Revealer, Protocol):
    def with_keys_of(self, user_ids: Collection[str]) -> Revealer:
        """A revealer for values of ``user_ids``, their keys read at once."""
        ...


def shown_user(row: UserRow, revealer: Revealer) -> UserRow:
    """The user as reads show them: the name opened, or None and ``erased``."""
    if row.erased or row.name is None or row.name == ERASED:
        return replace(row, name=None, erased=True)
    name = revealer.reveal(row.user_id, "name", row.name)
    return replace(row, name=name, erased=name is None)


def _named_user(entry: dict[str, Any]) -> str | None:
    """The user whose personal data ``entry`` holds, if it holds any."""
    data = entry.get("data")
    if entry.get("type", "") not in PERSONAL_FIELDS or not isinstance(data, dict):
        return None
    user_id = data.get("userId")
    return user_id if isinstance(user_id, str) else None


def shown_entries(entries: list[dict[str, Any]], revealer: KeysReader) -> list[dict[str, Any]]:
    """The entries of one page as ``shown_entry`` shows them, the keys of the
    users they name read in one go (a page of sign-ups names a user per entry)."""
    named = {user_id for entry in entries if (user_id := _named_user(entry)) is not None}
    if not named:
        return entries
    page = revealer.with_keys_of(named)
    return [shown_entry(entry, page) for entry in entries]


def shown_entry(entry: dict[str, Any], revealer: Revealer) -> dict[str, Any]:
    """A log entry with its personal fields opened (None once erased, with
    ``erased`` True in ``data``) and their stored values under ``sealed``."""
    if _named_user(entry) is None:
        return entry
    fields = PERSONAL_FIELDS[entry["type"]]
    data = entry["data"]
    shown = dict(data)
    stored: dict[str, Any] = {}
    erased = False
    for key, field in fields:
        value = data.get(key)
        if not isinstance(value, str):
            continue
        shown[key] = revealer.reveal(data["userId"], field, value)
        erased = erased or shown[key] is None
        if shown[key] != value:
            stored[key] = value
    shown["erased"] = erased
    return {**entry, "data": shown, **({"sealed": stored} if stored else {})}
