"""Repairs of the read tables on DynamoDB: a stream's rows brought up to the event store.

Why repairs exist: an append writes its read-table rows in its own
transaction, into the generation (blue or green) its process believed live.
A rebuild's switch cannot stop every such transaction in flight (no item is
shared by every append, by design), so a commit tagged with the generation a
switch replaced may land after the switch folded the log into the new one:
its rows are then only in the old tables. Nothing waits for it to happen;
instead the commit is *repaired*: its streams' rows in the live generation
are re-derived from the event store.

What makes it exact (see ``read_changes.py``): every gatherings row carries
``v``, the version of its gathering's stream that its rows hold, and an
append's (or a repair's) gatherings row is conditioned on ``v`` being the version
before its first event. So a generation that missed a commit refuses the
stream's next commit instead of applying it on top of the gap, and a repair
applies each missing event once, in stream order, whoever else repairs too.

Who repairs (every commit tagged with a replaced generation is covered by one
of them; README, "Rebuilds on DynamoDB", gives the argument):

- an append whose version guard fails in the live tables repairs its streams,
  then retries (``recorders.py``);
- the indexer, after it has written a batch's pages, reads the pointer
  (ConsistentRead) and repairs the streams of every commit in the batch whose
  tag ``g`` is not the live generation (``RepairingIndexer``);
- the switch, after it has pointed at the new generation, repairs every
  stream of the commits indexed since the head it folded up to (an indexer
  that read the pointer before it moved indexed them before that).

A user's row is written once (``User.Created``) and a registration's history
note is idempotent: their streams are simply folded again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from botocore.exceptions import BotoCoreError, ClientError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import ApplicationRecorder, StoredEvent

from domain.errors import StoreUnavailableError
from infra.dynamodb.commits import image_of, key_of
from infra.dynamodb.errors import CONDITION_FAILED_CODES, cancellation_reasons, error_code
from infra.dynamodb.indexer import StreamIndexer
from infra.dynamodb.layout import GENERATION
from infra.dynamodb.live_pointer import LivePointer
from infra.dynamodb.read_changes import ROWS_PER_CHANGE, ReadTableChanges
from infra.dynamodb.read_schema import unavailable
from infra.dynamodb.read_tables import MAX_ITEMS_PER_CHUNK, DynamoDBReadModel
from projections.fold import HANDLERS, fold

if TYPE_CHECKING:
    from collections.abc import Mapping

    from infra.dynamodb.event_store import DynamoDBAggregateRecorder
    from infra.dynamodb.recorders import DynamoDBApplicationRecorder

logger = logging.getLogger(__name__)

#: Attempts of one stream's repair that lose a race (another repair or an
#: append moved the row between the read and the write) before giving up.
MAX_REPAIR_ATTEMPTS = 20

Decode = Callable[[StoredEvent], Aggregate.Event]


class ReadRowRepair:
    """Re-derives one stream's rows in one generation from the event store."""

    def __init__(self, recorder: DynamoDBAggregateRecorder, prefix: str, decode: Decode) -> None:
        self.recorder = recorder
        self.client = recorder.client
        self.prefix = prefix
        self.decode = decode
        self._models: dict[str, DynamoDBReadModel] = {}
        self._lock = threading.Lock()
        #: Events folded by repairs (they found rows missing), for tests and logs.
        self.repaired_events = 0

    def model(self, generation: str) -> DynamoDBReadModel:
        with self._lock:
            found = self._models.get(generation)
            if found is None:
                found = self._models[generation] = DynamoDBReadModel(
                    self.client, self.prefix, create_tables=False, generation=generation
                )
            return found

    @staticmethod
    def held_version(model: DynamoDBReadModel, stream_id: UUID) -> int | None:
        """The version of the stream that ``model``'s rows hold (0: none of it);
        None when nothing can follow (a deleted gathering) or the rows predate
        versions (written before rows carried ``v``: never behind a switch)."""
        name = model._get(model.state_table, {"pk": {"S": f"stream#{stream_id.hex}"}})
        if name is None:
            return 0  # not a gathering's stream, or its creation is missing here
        if "deleted" in name:
            return None
        row = model._get(model.gatherings_table, {"eventId": {"S": str(name["eventId"])}})
        if row is None or "v" not in row:
            return None
        return int(row["v"])

    def repair(self, stream_id: UUID, generation: str) -> int:
        """Folds into ``generation``'s rows every event of the stream above the
        version they hold (ConsistentRead); returns how many it folded."""
        model = self.model(generation)
        for _ in range(MAX_REPAIR_ATTEMPTS):
            held = self.held_version(model, stream_id)
            if held is None:
                return 0
            items = self.recorder._stream_items(stream_id, gt=held)
            facts = [self.decode(self.recorder._stored_event(item)) for item in items]
            facts = [fact for fact in facts if type(fact) in HANDLERS]
            if not facts:
                return 0
            if self._apply(model, facts):
                with self._lock:
                    self.repaired_events += len(facts)
                logger.info(
                    "read tables repaired: stream %s, versions %s..%s, in %s",
                    stream_id,
                    facts[0].originator_version,
                    facts[-1].originator_version,
                    generation,
                )
                return len(facts)
        msg = f"The read tables' rows of stream {stream_id} kept moving while being repaired"
        raise StoreUnavailableError(msg)

    def repair_all(self, stream_ids: Iterable[UUID], generation: str) -> int:
        return sum(self.repair(stream_id, generation) for stream_id in dict.fromkeys(stream_ids))

    def after_append(
        self, pointer: LivePointer, items: Sequence[tuple[Any, StoredEvent]], generation: str
    ) -> None:
        """An append's own part, once it committed: when this process's copy of
        the pointer (fresh within its time to live) already names another live
        generation, repairs the append's streams there before it answers, so
        a read after its response sees it. Not needed for exactness (the
        indexer and the switch repair it too); a failure is only logged: the
        command committed."""
        live, fenced = pointer.current()
        if fenced or live == generation:
            return
        try:
            self.repair_all((UUID(str(s.originator_id)) for _, s in items), live)
        except Exception:
            logger.warning("an append's repair after a switch failed", exc_info=True)

    def _apply(self, model: DynamoDBReadModel, facts: Sequence[Aggregate.Event]) -> bool:
        """Folds ``facts`` (one stream's, in order) in guarded transactions of at
        most ``MAX_ITEMS_PER_CHUNK`` items; False when a guard failed."""
        writer = ReadTableChanges(model, guarded=True)
        for fact in facts:
            if writer.size() + ROWS_PER_CHANGE > MAX_ITEMS_PER_CHUNK:
                if not self._commit(writer):
                    return False
                known = {UUID(hex=stream): event_id for stream, event_id in writer.streams.items()}
                writer = ReadTableChanges(model, known, guarded=True)
            fold(fact, writer)
        return self._commit(writer)

    def _commit(self, writer: ReadTableChanges) -> bool:
        items = list(writer.operations())
        if not items:
            return True
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as error:
            if error_code(error) != "TransactionCanceledException":
                raise unavailable(error) from error
            codes = {reason.get("Code") for reason in cancellation_reasons(error)}
            if codes & {*CONDITION_FAILED_CODES, "TransactionConflict"}:
                return False  # another repair or an append moved a row: read again
            raise unavailable(error) from error
        except BotoCoreError as error:
            raise unavailable(error) from error
        return True


class RepairingIndexer(StreamIndexer):
    """The stream indexer that, once a batch's commits are indexed, has the
    commits tagged with a generation that is not live repaired.

    ``on_indexed`` gets ``(stream, version, g)`` of every record carrying a
    tag. It runs under the indexer's lock (made re-entrant here), so a caller
    of ``indexed_among`` in this process sees a commit indexed only once its
    repair is done.
    """

    def __init__(
        self,
        *args: Any,
        on_indexed: Callable[[list[tuple[str, int, str]]], object],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.RLock()  # type: ignore[assignment]
        self.on_indexed = on_indexed

    def index_records(self, records: Iterable[Mapping[str, Any]]) -> int:
        records = list(records)
        with self._lock:
            written = super().index_records(records)
            tagged: list[tuple[str, int, str]] = []
            for record in records:
                image = image_of(record)
                if image is not None and GENERATION in image:
                    oid, version = key_of(image)
                    tagged.append((oid, version, str(image[GENERATION]["S"])))
            if tagged:
                # After the pages are written (see the module docstring).
                self.on_indexed(tagged)
            return written


def repair_late(
    repairs: ReadRowRepair,
    pointer: LivePointer,
    tagged: Sequence[tuple[str, int, str]],
    log: ApplicationRecorder | None = None,
) -> int:
    """The indexer's part: repairs, in the live generation, the streams of the
    commits just indexed whose rows went to another. The pointer is read now
    (ConsistentRead), after the pages were written: if it still names the
    tag's generation, fenced or not, the switch has not pointed yet and its
    own repair after pointing covers these commits (they are indexed by then).
    That repair, if its switch died before making it, is made here (``log``)."""
    live, _, owed = pointer.look()
    if owed is not None and log is not None:
        repair_since(repairs, log, owed, live)
        pointer.repaired(live, owed)
    late = [UUID(oid) for oid, _, generation in tagged if generation != live]
    return repairs.repair_all(late, live) if late else 0


def repairing_indexer(recorder: DynamoDBApplicationRecorder) -> StreamIndexer:
    """The stream indexer of ``recorder``'s tables: repairing once repairs are
    enabled (``DynamoDBApplicationRecorder.enable_repairs``)."""
    tables = (recorder.client, recorder.events_table_name, recorder.notifications_table_name)
    repairs = recorder.repairs
    if repairs is None:
        return StreamIndexer(*tables)

    def on_indexed(tagged: list[tuple[str, int, str]]) -> None:
        repair_late(repairs, recorder.read_tables().pointer, tagged, recorder)

    return RepairingIndexer(*tables, on_indexed=on_indexed)


def repair_since(
    repairs: ReadRowRepair, log: ApplicationRecorder, log_position: int, generation: str
) -> int:
    """The switch's part, once it has pointed at ``generation``: repairs there
    every stream of the commits indexed after ``log_position`` (the head it folded
    up to), the head read now."""
    head = log.max_notification_id() or 0
    streams: list[UUID] = []
    start = log_position + 1
    while start <= head:
        batch = log.select_notifications(start, limit=500, stop=head)
        if not batch:
            break
        streams += [UUID(str(n.originator_id)) for n in batch]
        start = batch[-1].id + 1
    return repairs.repair_all(streams, generation)
