"""Expired idempotency keys are deleted in bounded batches by a background sweeper,
never by the requests: a keyed request's transaction touches its own key only."""

from __future__ import annotations

import copy
import sqlite3
import threading
from pathlib import Path

import pytest

from infra.idempotency import ExpirySweeper, StoredResponse
from infra.sqlite.idempotency import SQLiteIdempotencyStore
from infra.wiring import Container

DAY = 86_400.0
ANSWER = StoredResponse(201, (("content-type", "application/json"),), b"{}")


def stores(path: Path) -> tuple[SQLiteIdempotencyStore, SQLiteIdempotencyStore]:
    """One store keeping records a day, and one whose records expire at once."""
    return (
        SQLiteIdempotencyStore(path, ttl_seconds=DAY),
        SQLiteIdempotencyStore(path, ttl_seconds=-1.0),
    )


def answered(store: SQLiteIdempotencyStore, scope: str, count: int) -> None:
    for n in range(count):
        assert store.claim(scope, f"key-{n}", "f", lease_seconds=60).outcome == "new"
        store.complete(scope, f"key-{n}", ANSWER)


def records(path: Path) -> int:
    with sqlite3.connect(path) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM idempotency").fetchone()
    return int(count)


@pytest.mark.sqlite_pass
def test_a_keyed_request_leaves_other_expired_keys_to_the_sweeper(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    kept, expiring = stores(path)
    answered(expiring, "someone", 50)

    assert kept.claim("caller", "fresh", "f", lease_seconds=60).outcome == "new"

    assert records(path) == 51


@pytest.mark.sqlite_pass
def test_a_sweep_deletes_at_most_its_limit_and_only_expired_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    kept, expiring = stores(path)
    answered(expiring, "gone", 50)
    answered(kept, "live", 5)

    assert kept.sweep(20) == 20
    assert records(path) == 35
    assert ExpirySweeper(kept, batch=20).sweep() == 30

    assert records(path) == 5
    assert kept.claim("live", "key-0", "f", lease_seconds=60).outcome == "done"


@pytest.mark.sqlite_pass
def test_a_round_sweeps_in_batches_each_within_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    kept, expiring = stores(path)
    answered(expiring, "gone", 45)
    limits: list[int] = []
    sweep = kept.sweep

    def counted(limit: int) -> int:
        limits.append(limit)
        return sweep(limit)

    kept.sweep = counted  # type: ignore[method-assign]
    assert ExpirySweeper(kept, batch=10).sweep() == 45
    assert limits == [10] * 5


def test_an_expired_key_is_claimed_anew_before_any_sweep(container: Container) -> None:
    store = container.idempotency
    expiring = copy.copy(store)
    expiring.ttl_seconds = -1.0  # type: ignore[attr-defined]
    assert expiring.claim("caller", "old", "f", lease_seconds=60).outcome == "new"
    expiring.complete("caller", "old", ANSWER)

    assert store.claim("caller", "old", "g", lease_seconds=60).outcome == "new"


def test_the_service_runs_a_sweeper_in_the_background(container: Container) -> None:
    assert container.sweeper is not None
    assert "idempotency-sweeper" in {thread.name for thread in threading.enumerate()}
    container.close()
    assert "idempotency-sweeper" not in {thread.name for thread in threading.enumerate()}
