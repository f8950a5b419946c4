"""Which generation of the read tables is live: one item of blue's ``projection_state``.

``pk = "generation#read-tables"``: ``live`` (``blue`` or ``green``), ``fenced``
while a rebuild's switch holds appends, ``until`` (epoch seconds) when that
fence lapses. See ``infra/dynamodb/rebuild.py`` for the switch.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from domain.errors import StoreUnavailableError
from infra.dynamodb.read_schema import item, plain, serialize, unavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# In blue's projection_state: which generation of the read tables is live.
POINTER_KEY = "generation#read-tables"
# How long a process trusts its copy of the pointer (seconds).
POINTER_TTL_SECONDS = 2.0
# The longest an append waits for a switch to end before answering 503.
FENCE_WAIT_LIMIT_SECONDS = 60.0
# The longest a fence holds: a switch must point at its tables within it, or
# give up (so a switch whose process died stops fencing appends).
FENCE_LEASE_SECONDS = 120.0


def _fence_holds(item: dict[str, Any]) -> bool:
    return bool(item.get("fenced", False)) and time.time() < float(item.get("until", 0))


class LivePointer:
    """Which generation is live: one item of blue's ``projection_state``.

    Each process caches it for ``ttl`` seconds from the moment it asked. A
    rebuild's switch first *fences* it (the live generation stays, appends
    wait), waits until every process's cached copy has expired, folds the
    rest of the log into the other generation and then points at it; an
    append that lands in the old generation later is repaired
    (``infra/dynamodb/repair.py``). While fenced, every read asks again, so
    no process reads the old generation after the switch.
    """

    def __init__(self, client: DynamoDBClient, table: str, ttl: float = POINTER_TTL_SECONDS):
        self.client = client
        self.table = table
        self.ttl = ttl
        self._lock = threading.Lock()
        self._live = "blue"
        self._fenced = False
        self._valid_until = 0.0

    def _item(self) -> dict[str, Any]:
        try:
            found = self.client.get_item(
                TableName=self.table, Key={"pk": {"S": POINTER_KEY}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as error:
            raise unavailable(error) from error
        return plain(found.get("Item") or {})

    def pending_repair(self) -> tuple[str, int] | None:
        """(generation, head) when a switch pointed at ``generation`` and has
        not yet repaired the commits indexed after ``head`` (a consistent read):
        whoever sees it does that repair (``repair.py``)."""
        live, _, head = self.look()
        return None if head is None else (live, head)

    def look(self) -> tuple[str, bool, int | None]:
        """The live generation, whether it is fenced, and the head a pending
        repair starts from (None: none), in one consistent read."""
        item = self._item()
        owed = item.get("repaired_from")
        live, fenced = str(item.get("live", "blue")), bool(item.get("fenced", False))
        return live, fenced, None if owed is None else int(owed)

    def repaired(self, live: str, head: int) -> None:
        """Clears the pending repair (once it is done)."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": POINTER_KEY}},
                UpdateExpression="REMOVE #r",
                # Only the repair it names: not one a later switch recorded.
                ConditionExpression="#l = :l AND #r = :r",
                ExpressionAttributeNames={"#l": "live", "#r": "repaired_from"},
                ExpressionAttributeValues={":l": {"S": live}, ":r": {"N": str(head)}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise unavailable(error) from error
        except BotoCoreError as error:
            raise unavailable(error) from error

    def read(self) -> tuple[str, bool]:
        """The live generation and whether a switch has fenced it, as stored (a
        consistent read)."""
        item = self._item()
        return str(item.get("live", "blue")), bool(item.get("fenced", False))

    def fence_holds(self) -> bool:
        """Whether the pointer is fenced and its fence not past its end (a switch
        whose process died fences appends for at most ``FENCE_LEASE_SECONDS``)."""
        return _fence_holds(self._item())

    def current(self) -> tuple[str, bool]:
        """The live generation and whether appends must wait, from this process's
        copy while it is fresh; one read of the item otherwise."""
        with self._lock:
            if time.monotonic() < self._valid_until:
                return self._live, self._fenced
        asked = time.monotonic()
        item = self._item()
        live, fenced = str(item.get("live", "blue")), _fence_holds(item)
        with self._lock:
            self._live, self._fenced = live, fenced
            self._valid_until = asked if fenced else asked + self.ttl
        return live, fenced

    def live(self) -> str:
        return self.current()[0]

    def for_append(self) -> str:
        """The live generation once it is not fenced (appends wait for a switch)."""
        deadline = time.monotonic() + FENCE_WAIT_LIMIT_SECONDS
        while True:
            live, fenced = self.current()
            if not fenced:
                return live
            if time.monotonic() > deadline:
                msg = "The read tables are being switched to a rebuilt set; please retry"
                raise StoreUnavailableError(msg)
            time.sleep(0.05)

    def confirms(self, generation: str) -> bool:
        """Whether an append built for ``generation`` may still be sent."""
        live, fenced = self.current()
        return live == generation and not fenced

    def expire(self) -> None:
        """Forgets this process's copy: the next look reads the item."""
        with self._lock:
            self._valid_until = 0.0

    def write(
        self,
        live: str,
        *,
        fenced: bool,
        expected: tuple[str, bool],
        repaired_from: int | None = None,
    ) -> None:
        """Moves the pointer from ``expected`` (ConditionalCheckFailed otherwise);
        ``repaired_from``: a repair the switch owes (``pending_repair``)."""
        values: dict[str, Any] = {
            "pk": POINTER_KEY,
            "live": live,
            "fenced": fenced,
            "repaired_from": repaired_from,
        }
        if fenced:
            values["until"] = int(time.time() + FENCE_LEASE_SECONDS)
        condition = "attribute_not_exists(pk)" if expected == ("blue", False) else None
        names: dict[str, str] = {"#l": "live", "#f": "fenced"}
        expected_values = {":l": expected[0], ":f": expected[1]}
        expression = "(#l = :l AND #f = :f)"
        if condition:
            expression = f"{condition} OR {expression}"
        # Two switches never race: only the holder of the rebuild's lease moves
        # the pointer, and only from the state it last saw.
        self.client.put_item(
            TableName=self.table,
            Item=item(values),
            ConditionExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={k: serialize(v) for k, v in expected_values.items()},
        )
        with self._lock:
            self._valid_until = 0.0
