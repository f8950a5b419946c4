"""A barrier from the read tables: what every process has committed, at one moment.

``wait_until_indexed`` knows the commits of its own process; another
process's commit shows in the events table's stream only a moment after it
committed, so a drained stream does not prove that the log holds it. The read
tables do: they are written in the same transaction as the events, and each
row carries the version of its stream that it holds (``read_changes.py``).
So a consistent scan of the live rows' ``v`` (gatherings rows, users rows, and
the ``deleted`` version of a deleted gathering's stream name) gives, for
every gathering and user stream, a version committed before the scan began;
once the commit holding each of those versions is indexed, every earlier
commit of those streams is too (the indexer places a stream's commits in
version order). Every command of the service writes a gathering's or a
user's stream, so this covers every commit made before the call.

Not covered: rows of the layout before versions (no ``v``), and a commit that
landed in a generation a rebuild's switch replaced until it is repaired.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.model import user_aggregate_id
from infra.dynamodb.commits import Key, lead_of
from infra.dynamodb.datastore import batch_get
from infra.dynamodb.errors import translate_errors
from infra.dynamodb.layout import COMMIT_LEAD, EVENT_PK, EVENT_SK, n_, s_

if TYPE_CHECKING:
    from collections.abc import Iterator

    from infra.dynamodb.recorders import DynamoDBApplicationRecorder


def _scan(recorder: DynamoDBApplicationRecorder, table: str, *names: str) -> Iterator[Any]:
    """``names`` of every item of ``table``, read consistently, page after page."""
    request: dict[str, Any] = {
        "TableName": table,
        "ProjectionExpression": ", ".join(f"#a{n}" for n in range(len(names))),
        "ExpressionAttributeNames": {f"#a{n}": name for n, name in enumerate(names)},
        # The barrier must see every row committed before the call.
        "ConsistentRead": True,
    }
    with translate_errors():
        while True:
            page = recorder.client.scan(**request)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def committed_versions(recorder: DynamoDBApplicationRecorder) -> dict[str, int]:
    """Every gathering's and user's stream (as the events table names it) with
    the version its live rows hold."""
    names = recorder.read_tables().tables()
    found: dict[str, int] = {}
    for row in _scan(recorder, names.gatherings, "streamId", "v"):
        if "v" in row and "streamId" in row:
            stream = UUID(hex=row["streamId"]["S"])
            found[recorder.encode_originator_id(stream)] = int(row["v"]["N"])
    for row in _scan(recorder, names.users, "userId", "v"):
        if "v" in row:
            stream = user_aggregate_id(row["userId"]["S"])
            found[recorder.encode_originator_id(stream)] = int(row["v"]["N"])
    for row in _scan(recorder, names.state, "pk", "deleted"):
        pk = row["pk"]["S"]
        if pk.startswith("stream#") and "deleted" in row:
            stream = UUID(hex=pk.removeprefix("stream#"))
            found[recorder.encode_originator_id(stream)] = int(row["deleted"]["N"])
    return found


def committed_leads(recorder: DynamoDBApplicationRecorder) -> list[Key]:
    """The leads of the commits holding each stream's version in
    :func:`committed_versions`: once they are indexed, everything committed
    before the call is."""
    versions = committed_versions(recorder)
    items = batch_get(
        recorder.client,
        recorder.events_table_name,
        [{EVENT_PK: s_(oid), EVENT_SK: n_(version)} for oid, version in versions.items()],
        ProjectionExpression="#oid, #ver, #l",
        ExpressionAttributeNames={"#oid": EVENT_PK, "#ver": EVENT_SK, "#l": COMMIT_LEAD},
        # Events of commits just made, maybe in other processes: all of them.
        ConsistentRead=True,
    )
    return list(dict.fromkeys(lead_of(item) for item in items))
