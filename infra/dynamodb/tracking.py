"""Tracking and process recorders on DynamoDB: one item per upstream
application, written in the same transaction as the events it led to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import (
    IntegrityError,
    ProcessRecorder,
    StoredEvent,
    Tracking,
    TrackingRecorder,
)

from infra.dynamodb.datastore import DynamoDBDatastore, TableSpec
from infra.dynamodb.errors import (
    translate_errors,
)
from infra.dynamodb.event_store import DynamoDBRecorder
from infra.dynamodb.layout import (
    NID,
    TRACKING_PK,
    n_,
    s_,
)
from infra.dynamodb.recorders import DynamoDBApplicationRecorder

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
    )

    Item = dict[str, AttributeValueTypeDef]
    ItemOut = Mapping[str, Any]


_s = s_
_n = n_


class DynamoDBTrackingRecorder(DynamoDBRecorder, TrackingRecorder):
    """One item per upstream application: its highest processed notification."""

    def __init__(
        self,
        datastore: DynamoDBDatastore,
        tracking_table_name: str = "notification_tracking",
        **kwargs: Any,
    ) -> None:
        super().__init__(datastore, **kwargs)
        self.tracking_table_name = datastore.table_name(tracking_table_name)

    def table_specs(self) -> list[TableSpec]:
        return [
            *super().table_specs(),
            TableSpec(self.tracking_table_name, TRACKING_PK, "S"),
        ]

    def _tracking_put(self, tracking: Tracking) -> TransactWriteItemTypeDef:
        return {
            "Put": {
                "TableName": self.tracking_table_name,
                "Item": {
                    TRACKING_PK: _s(tracking.application_name),
                    NID: _n(tracking.notification_id),
                },
                # WHY: a position only moves forward. Equal means this upstream
                # notification was already processed (duplicate delivery);
                # lower means an older one arrived late. Either way recording it
                # would repeat or reorder work, so it is an IntegrityError (and
                # in the process recorder the events with it are not written).
                "ConditionExpression": "attribute_not_exists(#app) OR #nid < :nid",
                "ExpressionAttributeNames": {"#app": TRACKING_PK, "#nid": NID},
                "ExpressionAttributeValues": {":nid": _n(tracking.notification_id)},
            }
        }

    def insert_tracking(self, tracking: Tracking) -> None:
        put = self._tracking_put(tracking)["Put"]
        try:
            with translate_errors():
                self.client.put_item(
                    TableName=put["TableName"],
                    Item=put["Item"],
                    # WHY: see _tracking_put.
                    ConditionExpression=put["ConditionExpression"],
                    ExpressionAttributeNames=put["ExpressionAttributeNames"],
                    ExpressionAttributeValues=put["ExpressionAttributeValues"],
                )
        except IntegrityError as e:
            msg = (
                f"Tracking {tracking.application_name} "
                f"{tracking.notification_id} is not ahead of the recorded position"
            )
            raise IntegrityError(msg) from e

    def max_tracking_id(self, application_name: str) -> int | None:
        with translate_errors():
            response = self.client.get_item(
                TableName=self.tracking_table_name,
                Key={TRACKING_PK: _s(application_name)},
                # A follower resumes from this: it must not be stale.
                ConsistentRead=True,
            )
        item = response.get("Item")
        if not item or NID not in item:
            return None
        return int(item[NID]["N"])


class DynamoDBProcessRecorder(
    DynamoDBTrackingRecorder, DynamoDBApplicationRecorder, ProcessRecorder
):
    """Application recorder whose inserts may carry a Tracking object that is
    written in the same transaction as the events.
    """

    def __init__(
        self,
        datastore: DynamoDBDatastore,
        *,
        events_table_name: str = "stored_events",
        notifications_table_name: str = "stored_notifications",
        tracking_table_name: str = "notification_tracking",
    ) -> None:
        DynamoDBApplicationRecorder.__init__(
            self,
            datastore,
            events_table_name=events_table_name,
            notifications_table_name=notifications_table_name,
        )
        self.tracking_table_name = datastore.table_name(tracking_table_name)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        tracking: Tracking | None = kwargs.get("tracking")
        self._append(stored_events, tracking, kwargs.get("inline"))
        self._appended(stored_events)
        return None

    def _extra_items(
        self, tracking: Tracking | None
    ) -> list[tuple[TransactWriteItemTypeDef, tuple[str, str]]]:
        if tracking is None:
            return []
        label = f"tracking {tracking.application_name} {tracking.notification_id}"
        return [(self._tracking_put(tracking), ("tracking", label))]

    def _write_tracking_alone(self, tracking: Tracking) -> None:
        self.insert_tracking(tracking)
