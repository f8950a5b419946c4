"""``regsvc seal-names``: seals the names of a history written before names were sealed.

Such a history holds each user's name as given, in their ``User.Created``
event, which destroying a key cannot erase (``POST /admin/users/{userId}/erase``
refuses such a user: 409 PERSONAL_DATA_NOT_SEALED). This one-time migration
rewrites each of those events with the name sealed under the user's key, and
recomputes the chain digests of that user's stream (its events' stored
``hash``), so that ``/audit/verify`` passes on the rewritten history; the
read tables are then rebuilt, and the store compacted (SQLite: ``VACUUM``,
then its WAL truncated), so that no copy of the plaintext is left in it.

It is the one operation that rewrites stored history. Run it with the service
stopped (a running server remembers the digests it chained), and take a new
export afterwards: the digests of the rewritten streams changed, so an export
made before it no longer matches them (the README says so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from domain.model import User
from infra.personal_data import PersonalDataVault, is_sealed
from infra.sealing import SealingMapper
from projections.audit import GENESIS, META, link, sealed

Rewrite = Callable[[Sequence[StoredEvent]], None]
"""Replaces the stored state of events already stored (the store's)."""

CREATED = get_topic(User.Created)


def unsealed_users(
    notifications: Sequence[StoredEvent] | Any, mapper: SealingMapper
) -> list[StoredEvent]:
    """The ``User.Created`` events (given the log's events) whose name is not sealed."""
    found = []
    for stored in notifications:
        if stored.topic != CREATED:
            continue
        name = mapper.decode_state(stored).get("name")
        if isinstance(name, str) and not is_sealed(name):
            found.append(stored)
    return found


def resealed_stream(
    stream: Sequence[StoredEvent], mapper: SealingMapper, vault: PersonalDataVault
) -> list[StoredEvent]:
    """A user's stream (oldest first) with the name sealed and its digests
    recomputed: the events whose stored state changes, rewritten."""
    rewritten: list[StoredEvent] = []
    digest = GENESIS
    for stored in stream:
        state: dict[str, Any] = mapper.decode_state(stored)
        before = dict(state)
        if stored.topic == CREATED and not is_sealed(str(state.get("name"))):
            state["name"] = vault.seal(str(state["user_id"]), "name", str(state["name"]))
        meta = state.get(META)
        if isinstance(meta, dict):
            state[META] = {k: v for k, v in meta.items() if k != "hash"}
        body, _ = sealed(stored, state)
        digest = link(digest, body)
        if isinstance(meta, dict) and meta.get("hash") is not None:
            state[META] = {**state[META], "hash": digest}
        elif isinstance(meta, dict):
            state[META] = meta
        if state != before:
            rewritten.append(
                StoredEvent(
                    stored.originator_id,
                    stored.originator_version,
                    stored.topic,
                    mapper._encode(state),
                )
            )
    return rewritten


def seal_names(
    log: Sequence[StoredEvent] | Any,
    read_stream: Callable[[UUID], Sequence[StoredEvent]],
    mapper: SealingMapper,
    vault: PersonalDataVault,
    rewrite: Rewrite,
    rewritten_stream: Callable[[UUID, str], None] = lambda _stream, _user: None,
) -> int:
    """Seals every name the log (its events, in order) holds as given; returns
    how many users' streams were rewritten (each told to ``rewritten_stream``
    with its user id, so that what remembers the stream or the name forgets it)."""
    users = 0
    for created in unsealed_users(log, mapper):
        stream = read_stream(created.originator_id)  # type: ignore[arg-type]
        rewritten = resealed_stream(stream, mapper, vault)
        if rewritten:
            rewrite(rewritten)
            mapper.forget(created.originator_id)  # type: ignore[arg-type]
            user_id = str(mapper.decode_state(created)["user_id"])
            rewritten_stream(created.originator_id, user_id)  # type: ignore[arg-type]
            users += 1
    return users
