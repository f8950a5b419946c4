"""GET /health shows the capacity the process consumed: DynamoDB's units, nothing on SQLite.

The HTTP app gets its meters from the store's kit (``StoreKit.metering``, picked by
the wiring), not from a store package; each request's own share is in its log line
(tests/api/test_logging.py).
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.helpers import json_of
from tests.support import create_user


def test_health_shows_the_units_the_process_consumed_on_dynamodb_and_none_on_sqlite(
    client: TestClient, store_name: str
) -> None:
    before = json_of(client.get("/health"), 200).get("consumedCapacity")
    create_user(client)
    after = json_of(client.get("/health"), 200).get("consumedCapacity")

    if store_name == "dynamodb":
        assert before is not None
        assert after is not None
        assert after["writeUnits"] > before["writeUnits"]
        assert after["readUnits"] >= before["readUnits"]
    else:
        assert before is None
        assert after is None
