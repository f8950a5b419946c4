"""A store written while the gatherings' read table was called ``events`` still
opens: the rows it holds are served after the rename, and nothing is lost; the
drift check names the table by its new name.

SQLite renames the earlier tables in place when it opens the file. DynamoDB
cannot rename a table: one ``regsvc rebuild`` folds the log into tables of the
new names (``check`` reports the missing rows until then; README, "Tables,
keys and conditions").
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, get_args

import pytest
from fastapi.testclient import TestClient

from api.cli import rebuild
from api.main import create_app
from api.schemas import Difference
from infra.dynamodb.read_tables import (
    DynamoDBReadModel,
    read_table_specs,
    warn_of_earlier_tables,
)
from infra.dynamodb.tables import ensure_tables
from infra.settings import Settings
from infra.wiring import Container, build_container
from projections.drift import TABLES as DRIFT_TABLES
from projections.status import READ_TABLES
from tests.support import create_event, create_user, register

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@contextmanager
def _client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@contextmanager
def _container(settings: Settings) -> Iterator[Container]:
    built = build_container(settings)
    try:
        yield built
    finally:
        built.close()


def _write_a_gathering(settings: Settings) -> dict[str, object]:
    """A gathering with one confirmed and one waiting registration, as served."""
    with _client(settings) as client:
        event = create_event(client, capacity=1, waitlistEnabled=True)
        for _ in range(2):
            user = create_user(client)
            assert register(client, user, str(event["eventId"])).status_code == 201
        served: dict[str, object] = client.get(f"/events/{event['eventId']}").json()
    return served


def _as_the_earlier_sqlite_layout(settings: Settings) -> None:
    """Renames the gatherings' read table (and its index) back to ``events``."""
    with closing(sqlite3.connect(settings.event_store_path)) as db:
        db.row_factory = sqlite3.Row
        with db:
            for index in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'gatherings' "
                "AND sql IS NOT NULL"
            ).fetchall():
                db.execute(f"DROP INDEX {index['name']}")
            db.execute("ALTER TABLE gatherings RENAME TO events")
            db.execute("CREATE INDEX events_by_status ON events (status, event_id)")


def _sqlite_names(settings: Settings) -> tuple[set[str], set[str]]:
    with closing(sqlite3.connect(settings.event_store_path)) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    tables = {row["name"] for row in rows if row["type"] == "table"}
    indexes = {row["name"] for row in rows if row["type"] == "index" and row["sql"]}
    return tables, indexes


@pytest.mark.sqlite_pass
def test_a_sqlite_file_of_the_earlier_layout_opens_with_its_rows_under_the_new_name(
    settings: Settings,
) -> None:
    served = _write_a_gathering(settings)
    _as_the_earlier_sqlite_layout(settings)
    tables, _ = _sqlite_names(settings)
    assert "events" in tables
    assert "gatherings" not in tables

    with _client(settings) as client:
        assert client.get(f"/events/{served['eventId']}").json() == served
    tables, indexes = _sqlite_names(settings)
    assert "gatherings" in tables
    assert "events" not in tables
    assert "stored_events" in tables
    assert "gatherings_by_status" in indexes
    assert not {name for name in indexes if name.startswith("events_by_status")}
    with _container(settings) as container:
        assert container.check(READ_TABLES).differences == []


@pytest.mark.sqlite_pass
def test_a_sqlite_file_renamed_once_opens_again_unchanged(settings: Settings) -> None:
    served = _write_a_gathering(settings)
    _as_the_earlier_sqlite_layout(settings)
    with _client(settings):
        pass
    renamed = _sqlite_names(settings)
    with _client(settings) as client:
        assert client.get(f"/events/{served['eventId']}").json() == served
    assert _sqlite_names(settings) == renamed


@pytest.mark.sqlite_pass
def test_a_rebuild_of_a_renamed_sqlite_file_keeps_every_row(settings: Settings) -> None:
    served = _write_a_gathering(settings)
    _as_the_earlier_sqlite_layout(settings)
    with _container(settings) as container:
        rebuild(container)
        assert container.check(READ_TABLES).differences == []
    with _client(settings) as client:
        assert client.get(f"/events/{served['eventId']}").json() == served


@pytest.mark.sqlite_pass
def test_the_drift_report_names_each_read_table_as_the_store_calls_it(settings: Settings) -> None:
    _write_a_gathering(settings)
    tables, _ = _sqlite_names(settings)

    # The check's table names (GET /admin/projections/read-tables/check, regsvc check)
    # are SQLite's read tables: the API's events are rows of `gatherings`.
    assert "gatherings" in DRIFT_TABLES
    assert set(DRIFT_TABLES) <= tables
    assert set(get_args(Difference.model_fields["table"].annotation)) == set(DRIFT_TABLES)


def _as_the_earlier_dynamodb_layout(settings: Settings) -> None:
    """Moves each generation's gatherings rows to a table called ``events`` and
    deletes the gatherings table, as the earlier version left them."""
    with _container(settings) as container:
        model = container.read_model
        assert isinstance(model, DynamoDBReadModel)
        client, prefix = model.client, model.prefix
    for spec in read_table_specs(prefix):
        if not spec.name.endswith("gatherings") or not _exists(client, spec.name):
            continue
        earlier = replace(spec, name=spec.name.removesuffix("gatherings") + "events")
        ensure_tables(client, [earlier])
        pages = client.get_paginator("scan").paginate(TableName=spec.name, ConsistentRead=True)
        for page in pages:
            for found in page["Items"]:
                client.put_item(TableName=earlier.name, Item=found)
        client.delete_table(TableName=spec.name)
        client.get_waiter("table_not_exists").wait(TableName=spec.name)


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _exists(client: DynamoDBClient, name: str) -> bool:
    try:
        client.describe_table(TableName=name)
    except client.exceptions.ResourceNotFoundException:
        return False
    return True


@pytest.mark.dynamodb_pass
def test_dynamodb_tables_of_the_earlier_layout_serve_again_after_one_rebuild(
    settings: Settings,
) -> None:
    served = _write_a_gathering(settings)
    _as_the_earlier_dynamodb_layout(settings)

    with _container(settings) as container:
        model = container.read_model
        assert isinstance(model, DynamoDBReadModel)
        warnings = _Warnings()
        logging.getLogger("infra.dynamodb.read_tables").addHandler(warnings)
        try:
            warn_of_earlier_tables(model.client, model.prefix)
        finally:
            logging.getLogger("infra.dynamodb.read_tables").removeHandler(warnings)
        assert any(f"{model.prefix}events is of the earlier layout" in w for w in warnings.lines)
        before = container.check(READ_TABLES).differences
        assert {(d.table, d.key) for d in before} >= {("gatherings", served["eventId"])}
        rebuild(container)
        assert container.check(READ_TABLES).differences == []
    with _client(settings) as client:
        assert client.get(f"/events/{served['eventId']}").json() == served
