"""A rebuild's second set of read tables on DynamoDB: the generation not live.

The read tables exist twice, ``blue`` and ``green`` (``read_schema.table_set``);
the live pointer (``live_pointer.LivePointer``) says which one the API reads
and appends fold into. A rebuild fills the other one from the log, batch by
batch, each batch a transaction that also advances the rebuild's position in
that generation's ``projection_state`` (with the lease: owner and heartbeat),
so a killed rebuild resumes from its last batch.

The switch cannot take one lock over every process as SQLite's does (no item
is shared by all appends, by design), and it assumes nothing about how long
an append's request may take to land. It:

1. marks the pointer *fenced*: appends that see it wait, reads ask for the
   pointer on each request;
2. waits for every process's copy of the pointer to expire (its time to
   live), plus ``grace_seconds`` (default 0) for requests already sent;
3. folds the rest of the log, up to its head now, into the new generation
   and points the pointer at it, unfenced;
4. repairs, in the new generation, every stream of the commits indexed since
   that head (``infra/dynamodb/repair.py``).

Step 2 is not needed for exactness: it makes every process see the fence, so
that appends after the switch write the new tables and a read after their
response sees them. An append already built for the old generation may still
land there, at any time: its event items carry that tag (``g``), and it is
repaired either by step 4 (indexed before the pointer moved), by the indexer
(which reads the pointer after indexing it), by the append itself (when its
process's copy of the pointer names the new generation once it committed), or
by the stream's next append (whose version guard on the new rows fails).

Appends wait from 1 to 3; reads never stop. The old generation keeps its rows
until the next rebuild empties it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from domain.errors import RebuildInProgressError, StoreUnavailableError
from infra.dynamodb.read_schema import plain, unavailable
from infra.dynamodb.read_tables import (
    GENERATIONS,
    POSITION_KEY,
    DynamoDBReadModel,
    ensure_read_tables,
    read_table_specs,
)
from projections.ports import Commit
from projections.rebuild import RebuildState

#: Not needed for correctness (see above): a longer pause saves repairs.
SWITCH_GRACE_SECONDS = 0.0


IN_PROGRESS = "Projection 'read-tables' is being rebuilt"
TAKEN_OVER = "The rebuild of 'read-tables' was taken over by another process"


@contextmanager
def _lease_condition(refused: str) -> Iterator[None]:
    """DynamoDB's errors as named ones: a failed condition on the rebuild's item
    means that another process holds (or took) its lease."""
    try:
        yield
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            raise RebuildInProgressError(refused) from None
        raise unavailable(error) from error
    except BotoCoreError as error:
        raise unavailable(error) from error


def _other(generation: str) -> str:
    return GENERATIONS[1 - GENERATIONS.index(generation)]


def _state(item: dict[str, Any] | None) -> RebuildState | None:
    if item is None:
        return None
    return RebuildState(
        log_position=int(item["position"]),
        state="failed" if item.get("state") == "failed" else "rebuilding",
        error=item.get("error"),
        owner=str(item.get("owner", "")),
        heartbeat=float(item.get("heartbeat", 0)),
    )


class DynamoDBRebuildTarget:
    """The read tables' rebuild on DynamoDB (``projections.rebuild.RebuildTarget``)."""

    def __init__(
        self,
        live: DynamoDBReadModel,
        *,
        grace_seconds: float = SWITCH_GRACE_SECONDS,
        repair_since: Callable[[int, str], object] | None = None,
    ):
        """``repair_since(log_position, generation)``: repairs in ``generation`` the
        streams of every commit indexed after ``position`` (step 4)."""
        self.live = live
        self.client = live.client
        self.grace_seconds = grace_seconds
        self.repair_since = repair_since
        self._model: DynamoDBReadModel | None = None

    def close(self) -> None:
        """The client is the live read model's (closed with it)."""

    def _idle(self) -> DynamoDBReadModel:
        """The generation that is not live, as a read model bound to it."""
        generation = _other(self.live.pointer.read()[0])
        if self._model is None or self._model.generation != generation:
            self._model = DynamoDBReadModel(
                self.client, self.live.prefix, create_tables=False, generation=generation
            )
        return self._model

    def _item(self, model: DynamoDBReadModel) -> dict[str, Any] | None:
        try:
            found = self.client.get_item(
                TableName=model.state_table, Key={"pk": {"S": POSITION_KEY}}, ConsistentRead=True
            )
        except self.client.exceptions.ResourceNotFoundException:
            return None  # no rebuild ever created this generation's tables
        except (ClientError, BotoCoreError) as error:
            raise unavailable(error) from error
        item = found.get("Item")
        return None if item is None else plain(item)

    def state(self) -> RebuildState | None:
        return _state(self._item(self._idle()))

    def ensure_tables(self) -> None:
        """Creates whichever generation's tables are missing (a first rebuild's)."""
        ensure_read_tables(self.client, read_table_specs(self.live.prefix))

    def claim(self, owner: str, lease_seconds: float) -> int:
        self.ensure_tables()
        model = self._idle()
        item = self._item(model)
        state = _state(item)
        if state is not None and state.held(lease_seconds):
            raise RebuildInProgressError(IN_PROGRESS)
        fresh = item is None or item.get("state") == "emptying"
        values: dict[str, Any] = {
            ":o": {"S": owner},
            ":h": {"N": repr(time.time())},
            ":s": {"S": "emptying" if fresh else "rebuilding"},
        }
        update = "SET #o = :o, #h = :h, #s = :s REMOVE #e"
        if fresh:
            update = "SET #p = :zero, #o = :o, #h = :h, #s = :s REMOVE #e"
            values[":zero"] = {"N": "0"}
        condition = "attribute_not_exists(pk)"
        if item is not None:
            # Take over only the lease seen just now: two claimants racing for a
            # lapsed lease cannot both win.
            condition = "#h = :seen"
            values[":seen"] = {"N": repr(float(item.get("heartbeat", 0)))}
        with _lease_condition(IN_PROGRESS):
            self.client.update_item(
                TableName=model.state_table,
                Key={"pk": {"S": POSITION_KEY}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={
                    "#o": "owner",
                    "#h": "heartbeat",
                    "#s": "state",
                    "#e": "error",
                    **({"#p": "position"} if fresh else {}),
                },
                ExpressionAttributeValues=values,
            )
        if fresh:
            model.empty()  # the rows of the generation this one replaced, if any
            self._set(model, owner, "#s = :s", {":s": {"S": "rebuilding"}})
            return 0
        return int(item["position"]) if item is not None else 0

    def _set(
        self, model: DynamoDBReadModel, owner: str, assignment: str, values: dict[str, Any]
    ) -> None:
        with _lease_condition(TAKEN_OVER):
            self.client.update_item(
                TableName=model.state_table,
                Key={"pk": {"S": POSITION_KEY}},
                UpdateExpression=f"SET {assignment}",
                # Only the holder of the lease changes the rebuild's state.
                ConditionExpression="#o = :owner",
                ExpressionAttributeNames={
                    name: attribute
                    for name, attribute in (("#o", "owner"), ("#s", "state"), ("#e", "error"))
                    if name == "#o" or name in assignment
                },
                ExpressionAttributeValues={
                    **values,
                    ":owner": {"S": owner},
                },
            )

    def apply(
        self, owner: str, expected: int, commits: Sequence[Commit], new_log_position: int
    ) -> bool:
        model = self._idle()
        if model.apply(expected, commits, new_log_position, lease_owner=owner):
            return True
        state = self.state()
        if state is None or state.owner != owner:
            raise RebuildInProgressError(TAKEN_OVER)
        return False

    def switch(self, owner: str, rest: Callable[[int], tuple[list[Commit], int]]) -> int:
        model = self._idle()
        pointer = self.live.pointer
        self._owed_repair()  # of a switch that died before it made it
        live, fenced = pointer.read()
        if fenced:  # a switch that died between fencing and pointing: unfence first
            pointer.write(live, fenced=False, expected=(live, True))
        pointer.write(live, fenced=True, expected=(live, False))
        try:
            # Not for exactness (repairs give it): so that every process sees
            # the fence and appends after the switch write the new tables.
            time.sleep(pointer.ttl + self.grace_seconds)
            state = self.state()
            if state is None or state.owner != owner:
                raise RebuildInProgressError(TAKEN_OVER)
            commits, head = rest(state.log_position)
            if commits and not self.apply(owner, state.log_position, commits, head):
                msg = "The rebuild's position moved during its switch"
                raise StoreUnavailableError(msg)
            if not pointer.fence_holds():
                # Appends no longer wait: some may have gone to the old tables.
                msg = "The switch outlasted its fence; the rebuild resumes when asked again"
                raise StoreUnavailableError(msg)
            with _lease_condition(TAKEN_OVER):
                self.client.delete_item(
                    TableName=model.state_table,
                    Key={"pk": {"S": POSITION_KEY}},
                    # Only the holder ends the rebuild: the generation goes live.
                    ConditionExpression="#o = :owner",
                    ExpressionAttributeNames={"#o": "owner"},
                    ExpressionAttributeValues={":owner": {"S": owner}},
                )
            # The repair after pointing is recorded with the move: whoever
            # reads the pointer next (an indexer, a switch) does it if this
            # process dies first.
            owed = head if self.repair_since is not None else None
            new = model.generation or "blue"
            pointer.write(new, fenced=False, expected=(live, True), repaired_from=owed)
        except BaseException:
            current = pointer.read()
            if current == (live, True):
                pointer.write(live, fenced=False, expected=(live, True))
            raise
        self._owed_repair()
        return head

    def _owed_repair(self) -> None:
        """Step 4, for this switch or one whose process died before doing it."""
        owed = self.live.pointer.pending_repair()
        if owed is not None and self.repair_since is not None:
            generation, head = owed
            self.repair_since(head, generation)
            self.live.pointer.repaired(generation, head)

    def empty_idle(self) -> None:
        """Empties the generation that is not live (the rows it served before the
        last switch), unless a rebuild claimed it (RebuildInProgressError)."""
        model = self._idle()
        if self._item(model) is not None:
            raise RebuildInProgressError(IN_PROGRESS)
        try:
            model.empty()
        except self.client.exceptions.ResourceNotFoundException:
            return  # no rebuild ever created this generation's tables
        except (ClientError, BotoCoreError) as error:
            raise unavailable(error) from error

    def fail(self, owner: str, error: str) -> None:
        values = {":s": {"S": "failed"}, ":e": {"S": error[:500]}}
        self._set(self._idle(), owner, "#s = :s, #e = :e", values)

    def release(self, owner: str) -> None:
        self._set(self._idle(), owner, "heartbeat = :zero", {":zero": {"N": "0"}})
