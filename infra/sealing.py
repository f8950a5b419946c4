"""Stores each domain event with its metadata and its link in its stream's hash chain.

The stored state of an event gains one key, ``__meta__``: ``requestId`` and
``actor`` (who caused it) and ``hash``, the event's digest chained to the
previous event of its stream (``projections/audit.py`` defines the chain).
Decoding drops the key, so aggregates and projections never see it; old
events without it decode as before.

To seal version ``n`` the mapper needs the digest of version ``n - 1``: it
remembers the last digest it wrote or read per stream, and otherwise reads the
stream's previous event (once, for example after a restart).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic

from projections.audit import GENESIS, META, body, link, sealed

ReadStream = Callable[..., Sequence[StoredEvent]]
"""``recorder.select_events``: (originator_id, gt=, lte=, desc=, limit=)."""

MAX_REMEMBERED = 200_000


class SealingMapper(Mapper[UUID]):
    """eventsourcing's ``Mapper`` that also seals what it stores (``seal``)."""

    read_stream: ReadStream | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # stream -> (version, digest) of the newest event written or read.
        self._digests: dict[UUID, tuple[int, str]] = {}

    def seal(
        self,
        domain_events: Sequence[DomainEventProtocol[UUID]],
        metadata: Sequence[dict[str, str | None]],
    ) -> tuple[list[StoredEvent], dict[UUID, tuple[int, str]]]:
        """The stored events, each with its metadata and digest, and the digests
        to ``remember`` once they are committed."""
        stored: list[StoredEvent] = []
        sealed: dict[UUID, tuple[int, str]] = {}
        for domain_event, meta in zip(domain_events, metadata, strict=True):
            state = dict(vars(domain_event))
            originator_id: UUID = state.pop("originator_id")
            version: int = state.pop("originator_version")
            class_version = getattr(type(domain_event), "class_version", 1)
            if class_version > 1:
                state["class_version"] = class_version
            topic = get_topic(type(domain_event))
            known = sealed.get(originator_id)
            previous = (
                known[1]
                if known is not None and known[0] == version - 1
                else self._digest_before(originator_id, version)
            )
            # The state holds plain values, datetimes and UUIDs, which the
            # transcoder decodes to equal values: the digest of what is in memory
            # is the digest of what will be read back (tests/test_tamper_evidence.py).
            digest = link(previous, body(originator_id, version, topic, {**state, META: meta}))
            state[META] = {**meta, "hash": digest}
            sealed[originator_id] = (version, digest)
            stored.append(StoredEvent(originator_id, version, topic, self._encode(state)))
        return stored, sealed

    def remember(self, digests: dict[UUID, tuple[int, str]]) -> None:
        """Keeps the digests of events now committed, for sealing their successors."""
        if len(self._digests) > MAX_REMEMBERED:
            self._digests.clear()
        self._digests.update(digests)

    def forget(self, originator_id: UUID) -> None:
        """Forgets the digests remembered of a stream whose stored events were
        rewritten (``infra/legacy_names.py``)."""
        self._digests.pop(originator_id, None)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        domain_event = super().to_domain_event(stored_event)
        meta = domain_event.__dict__.pop(META, None)
        digest = meta.get("hash") if isinstance(meta, dict) else None
        if digest is not None and isinstance(stored_event.originator_id, UUID):
            known = self._digests.get(stored_event.originator_id)
            if known is None or known[0] < stored_event.originator_version:
                self._digests[stored_event.originator_id] = (
                    stored_event.originator_version,
                    digest,
                )
        return domain_event

    def decode_state(self, stored_event: StoredEvent) -> dict[str, Any]:
        """A stored event's state as stored (metadata included, not upcast)."""
        state = stored_event.state
        if self.cipher:
            state = self.cipher.decrypt(state)
        if self.compressor:
            state = self.compressor.decompress(state)
        decoded: dict[str, Any] = self.transcoder.decode(state)
        return decoded

    def _encode(self, state: dict[str, Any]) -> bytes:
        encoded = self.transcoder.encode(state)
        if self.compressor:
            encoded = self.compressor.compress(encoded)
        if self.cipher:
            encoded = self.cipher.encrypt(encoded)
        return encoded

    def _digest_before(self, originator_id: UUID, version: int) -> str:
        """The digest of ``version - 1`` of the stream (GENESIS before its first)."""
        if version <= 1:
            return GENESIS
        known = self._digests.get(originator_id)
        if known is not None and known[0] == version - 1:
            return known[1]
        if self.read_stream is None:
            msg = "SealingMapper.read_stream is not set: cannot find the previous digest"
            raise RuntimeError(msg)
        last = self.read_stream(originator_id, lte=version - 1, desc=True, limit=1)
        if last and last[0].originator_version == version - 1:
            digest = self.decode_state(last[0]).get(META, {}).get("hash")
            if digest is not None:
                return str(digest)
        # The stream began before events were sealed: compute its chain.
        return self.chain(self.read_stream(originator_id, lte=version - 1))

    def chain(self, stored_events: Iterable[StoredEvent]) -> str:
        """The digest at the end of a stream's events, given oldest first."""
        digest = GENESIS
        for stored_event in stored_events:
            sealed_body, stored_digest = sealed(stored_event, self.decode_state(stored_event))
            digest = stored_digest or link(digest, sealed_body)
        return digest
