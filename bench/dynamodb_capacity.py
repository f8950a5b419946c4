"""DynamoDB capacity units per command, split into event store and read tables.

Runs against AWS_ENDPOINT_URL_DYNAMODB if set, else starts DynamoDB Local.
Each command's read-your-writes projection is included (it is part of what a
request costs). The baseline is the seed's state-based design, counted by
hand from its task list: user creation 1 WCU; a confirmed registration one
TransactWriteItems of 2 items (2 x 2 WCU) plus reads; a leave with promotion
one TransactWriteItems of ~4 items (4 x 2 WCU) plus reads.

    python -m bench.dynamodb_capacity
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from domain.application import GatheringSpec
from infra.devtools.dynamodb_local import LOCAL_CREDENTIALS, DynamoDBLocal, install
from infra.dynamodb.capacity import PROCESS_TOTALS
from infra.settings import Settings
from infra.wiring import Container, build_container

BASELINE = {  # (RCU, WCU) of the seed's state-based design, per command
    "create user": (0.0, 1.0),
    "register (confirmed)": (2.0, 4.0),
    "register (waitlisted)": (2.0, 4.0),
    "leave with promotion": (3.0, 8.0),
}


@contextmanager
def _endpoint() -> Iterator[str]:
    url = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    if url:
        yield url
        return
    install()
    with DynamoDBLocal() as local:
        yield local.endpoint_url


def _split(prefix: str) -> dict[str, tuple[float, float]]:
    store = (0.0, 0.0)
    read = (0.0, 0.0)
    for table, units in PROCESS_TOTALS.by_table().items():
        pair = (units["readUnits"], units["writeUnits"])
        if table.startswith(f"{prefix}registrations_"):
            store = (store[0] + pair[0], store[1] + pair[1])
        else:
            read = (read[0] + pair[0], read[1] + pair[1])
    return {"event store": store, "read tables": read}


def _measure(
    container: Container, prefix: str, command: Callable[[], int]
) -> dict[str, tuple[float, float]]:
    before = _split(prefix)
    position = command()
    container.projector.wait_for(position, 10)
    after = _split(prefix)
    return {k: (after[k][0] - before[k][0], after[k][1] - before[k][1]) for k in after}


def main() -> None:
    with _endpoint() as url, tempfile.TemporaryDirectory() as scratch:
        prefix = f"bench{uuid.uuid4().hex[:8]}-"
        settings = Settings(
            store="dynamodb",
            dynamodb_endpoint_url=url,
            dynamodb_table_prefix=prefix,
            data_dir=Path(scratch),
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_region=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        )
        container = build_container(settings)
        service = container.service
        service.create_gathering(
            GatheringSpec(
                gathering_id="e", title="T", date="2025-01-01", capacity=1, waitlist_enabled=True
            )
        )
        for name in ("a", "b"):
            service.create_user(name, name)
        container.projector.catch_up()
        rows = {
            "create user": _measure(
                container, prefix, lambda: service.create_user("c", "C").position
            ),
            "register (confirmed)": _measure(
                container, prefix, lambda: service.register("a", "e").position
            ),
            "register (waitlisted)": _measure(
                container, prefix, lambda: service.register("b", "e").position
            ),
            "leave with promotion": _measure(
                container, prefix, lambda: service.leave("a", "e").position
            ),
        }
        container.close()
    print(
        "Capacity units per command on DynamoDB (RCU / WCU), beside the seed's state-based design"
    )
    print(
        f"  {'command':<24} {'event store':>14} {'read tables':>14} {'total':>14} {'baseline':>14}"
    )
    for command, parts in rows.items():
        store, read = parts["event store"], parts["read tables"]
        total = (store[0] + read[0], store[1] + read[1])
        base = BASELINE[command]
        cells = [f"{r:5.1f} / {w:5.1f}" for r, w in (store, read, total, base)]
        print(f"  {command:<24} " + " ".join(f"{c:>14}" for c in cells))


if __name__ == "__main__":
    main()
