"""``regsvc seal-names``'s rewrite of stored events on DynamoDB
(``infra/dynamodb/history_rewrite.py``): the events' states are replaced in
the items holding them, packed ones too, and an item changed since it was read
is not overwritten. Real DynamoDB Local.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from infra.dynamodb.errors import HistoryChangedError
from infra.dynamodb.history_rewrite import HistoryRewriter
from tests.dynamodb.test_index_pages import old_commit, old_index
from tests.dynamodb.test_indexer import recorder

if TYPE_CHECKING:
    from infra.dynamodb import DynamoDBApplicationRecorder

__all__ = ["recorder"]  # the fixture, shared with test_indexer


def rewriter(recorder: DynamoDBApplicationRecorder) -> HistoryRewriter:
    return HistoryRewriter(
        recorder.client, recorder.events_table_name, recorder.notifications_table_name
    )


def test_the_states_of_events_in_a_packed_item_are_replaced_and_the_others_kept(
    recorder: DynamoDBApplicationRecorder,
) -> None:
    stream = uuid4()
    recorder.insert_events([StoredEvent(stream, v, "t", f"v{v}".encode()) for v in (1, 2, 3)])

    rewriter(recorder)([StoredEvent(stream, 1, "t", b"one"), StoredEvent(stream, 3, "t", b"3")])

    assert [s.state for s in recorder.select_events(stream)] == [b"one", b"v2", b"3"]


def test_the_copies_of_a_log_written_before_pages_are_rewritten_with_the_events(
    recorder: DynamoDBApplicationRecorder,
) -> None:
    stream, other = uuid4(), uuid4()
    _, first = old_commit(recorder, [(stream, 1), (other, 1)])
    _, second = old_commit(recorder, [(stream, 2)])
    old_index(recorder, [first, second])  # ids 1..3, as copies

    rewriter(recorder)([StoredEvent(stream, 1, "t", b"one"), StoredEvent(stream, 2, "t", b"two")])

    assert [s.state for s in recorder.select_events(stream)] == [b"one", b"two"]
    assert [(n.id, n.state) for n in recorder.select_notifications(1, 3)] == [
        (1, b"one"),
        (2, f"{other}/1".encode()),
        (3, b"two"),
    ]


def test_an_item_changed_since_it_was_read_is_not_overwritten(
    recorder: DynamoDBApplicationRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = uuid4()
    recorder.insert_events([StoredEvent(stream, 1, "t", b"v1")])
    client = recorder.client
    send = client.transact_write_items

    def changed_first(**request: Any) -> Any:
        client.update_item(
            TableName=recorder.events_table_name,
            Key={"oid": {"S": str(stream)}, "ver": {"N": "1"}},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":s": {"B": b"changed"}},
        )
        return send(**request)

    monkeypatch.setattr(client, "transact_write_items", changed_first)

    with pytest.raises(HistoryChangedError):
        rewriter(recorder)([StoredEvent(stream, 1, "t", b"sealed")])

    assert [s.state for s in recorder.select_events(stream)] == [b"changed"]
