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
from typing import Any, Protocol

from projections.views import UserRow

ERASED = "erased"
"""What the read tables hold for the name of an erased user."""

#: The personal fields of each entry type that has any: type -> (data key, field).
PERSONAL_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {"UserCreated": (("name", "name"),)}


class Revealer(Protocol):
    def reveal(self, user_id: str, field: str, value: str) -> str | None:
        """The value ``field`` of the user was sealed from; None once the user's
        key is destroyed."""
        ...


def shown_user(row: UserRow, revealer: Revealer) -> UserRow:
    """The user as reads show them: the name opened, or None and ``erased``."""
    if row.erased or row.name is None or row.name == ERASED:
        return replace(row, name=None, erased=True)
    name = revealer.reveal(row.user_id, "name", row.name)
    return replace(row, name=name, erased=name is None)


def shown_entry(entry: dict[str, Any], revealer: Revealer) -> dict[str, Any]:
    """A log entry with its personal fields opened (None once erased, with
    ``erased`` True in ``data``) and their stored values under ``sealed``."""
    fields = PERSONAL_FIELDS.get(entry.get("type", ""))
    data = entry.get("data")
    if not fields or not isinstance(data, dict) or not isinstance(data.get("userId"), str):
        return entry
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
