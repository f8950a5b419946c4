"""Per-shard leases of the in-process stream pollers (``ShardLeases``).

With N API processes each running a poller, a poller's thread reads only the
shards it leases: a lease per shard on the shard's checkpoint item in the
index table (``o`` its owner, ``x`` its end, epoch milliseconds), taken and
renewed with conditional writes every ``renew_seconds`` (not per poll),
released on stop, taken over by another poller once it expires (its owner was
killed or stalled). AWS advises at most two readers per shard; the lease keeps
the thread readers at one. Correctness never depends on it (see
``infra/dynamodb/shards.py``).
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import TYPE_CHECKING

from eventsourcing.persistence import IntegrityError, OperationalError

from infra.dynamodb.errors import translate_errors
from infra.dynamodb.layout import LEASE_EXPIRY, LEASE_OWNER, checkpoint_key, n_, s_

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

logger = logging.getLogger(__name__)

# WHY: renew only a lease this poller still holds: if it lapsed and another
# poller took it over, that one reads the shard now, and this one must stop
# instead of taking it back.
RENEW_LEASE = "#o = :o"
# WHY: take a shard nobody leases, or whose lease has ended (its owner was
# killed or stalled): never one another live owner holds.
TAKE_LEASE = "attribute_not_exists(#o) OR #o = :o OR #x < :now"


class Lease(Enum):
    """What :meth:`ShardLeases.hold` found."""

    HELD = "held"
    """This poller held the lease and still does: read on where it was."""
    TAKEN = "taken"
    """This poller has just taken it: resume from the latest checkpoint of any poller."""
    REFUSED = "refused"
    """Another live poller holds it (or just took it from this one): do not read."""


class ShardLeases:
    """The leases one poller holds, as far as it knows, and the writes that
    take, renew and release them."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        *,
        owner: str,
        lease_seconds: float,
        renew_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self.client = client
        self.table = table
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        # Wall-clock seconds: lease ends are compared across processes.
        self._clock = clock
        self._held: dict[str, float] = {}  # shard -> when this poller last took or renewed it
        self._busy: dict[str, float] = {}  # shard -> leased by another: try again after this

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    def hold(self, shard_id: str) -> Lease:
        """Whether this poller may read the shard now: it holds the shard's
        lease, renewing it every ``renew_seconds``, or takes it."""
        now = self._clock()
        held = self._held.get(shard_id)
        if held is not None and now - held < self.renew_seconds:
            return Lease.HELD
        if held is None and now < self._busy.get(shard_id, float("-inf")):
            return Lease.REFUSED
        if self._lease(shard_id, now, renewing=held is not None):
            self._held[shard_id] = now
            if held is None:
                logger.info("Took the lease of a stream shard", extra={"shard": shard_id})
                return Lease.TAKEN
            return Lease.HELD
        if held is not None:
            logger.warning(
                "Lost the lease of a stream shard to another poller; no longer reading it",
                extra={"shard": shard_id},
            )
        self._held.pop(shard_id, None)
        # Another owner renews before its lease ends: look again after one lease.
        self._busy[shard_id] = now + self.lease_seconds
        return Lease.REFUSED

    def forget(self, shard_id: str) -> None:
        """A done shard is read no more: its lease lapses by itself."""
        self._held.pop(shard_id, None)

    def _lease(self, shard_id: str, now: float, *, renewing: bool) -> bool:
        """Takes or renews the shard's lease until ``now + lease_seconds``;
        False when another poller holds it."""
        condition = RENEW_LEASE if renewing else TAKE_LEASE
        values: dict[str, AttributeValueTypeDef] = {
            ":o": s_(self.owner),
            ":x": n_(int((now + self.lease_seconds) * 1000)),
        }
        if not renewing:
            values[":now"] = n_(int(now * 1000))
        try:
            with translate_errors():
                self.client.update_item(
                    TableName=self.table,
                    Key=checkpoint_key(shard_id),
                    UpdateExpression="SET #o = :o, #x = :x",
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#o": LEASE_OWNER, "#x": LEASE_EXPIRY},
                    ExpressionAttributeValues=values,
                )
        except IntegrityError:
            return False
        return True

    def release_all(self) -> None:
        for shard_id in list(self._held):
            try:
                with translate_errors():
                    self.client.update_item(
                        TableName=self.table,
                        Key=checkpoint_key(shard_id),
                        UpdateExpression="REMOVE #o, #x",
                        # WHY: release only this poller's own lease: one another
                        # poller took over after it lapsed stays that poller's.
                        ConditionExpression="#o = :o",
                        ExpressionAttributeNames={"#o": LEASE_OWNER, "#x": LEASE_EXPIRY},
                        ExpressionAttributeValues={":o": s_(self.owner)},
                    )
            except (IntegrityError, OperationalError) as error:
                # It ends by itself after lease_seconds.
                logger.info(
                    "Could not release a shard lease",
                    extra={"shard": shard_id, "error": str(error)},
                )
        self._held.clear()
