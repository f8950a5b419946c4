"""Shared fixtures. Every test that touches storage runs on the store named by
``--store`` (default: sqlite), so one suite serves both stores."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from api.main import create_app
from infra.logs import flush_logs
from infra.settings import Settings
from infra.wiring import Container, build_container
from tests import support
from tests.dynamodb_session import _dynamodb_instances, dynamodb_endpoint
from tests.support import fresh_store_settings

__all__ = ["_dynamodb_instances", "dynamodb_endpoint"]  # fixtures shared by every test module

hypothesis_settings.register_profile(
    "default",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
hypothesis_settings.register_profile(
    "exhaustive",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# On DynamoDB Local every call is a network round trip: the default profile
# runs a fifth of the examples there (the exhaustive one runs them all). The
# rules are the store's as much as the domain's, but the domain's are covered
# by the SQLite pass's 40, and this keeps `make test` inside its 15 minutes.
hypothesis_settings.register_profile(
    "default-dynamodb",
    parent=hypothesis_settings.get_profile("default"),
    max_examples=8,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store",
        action="store",
        default=os.environ.get("TEST_STORE", "sqlite"),
        choices=("sqlite", "dynamodb"),
        help="Which event store and read tables the suite runs on.",
    )


def pytest_configure(config: pytest.Config) -> None:
    support.SELECTED_STORE = str(config.getoption("--store"))
    profile = os.environ.get("HYPOTHESIS_PROFILE", "default")
    if profile == "default" and support.SELECTED_STORE == "dynamodb":
        profile = "default-dynamodb"
    hypothesis_settings.load_profile(profile)


# What a test asks for when it runs on the store under test.
STORE_FIXTURES = frozenset({"store_name", "endpoint", "dynamodb_endpoint"})


def runs_on_this_pass(item: pytest.Item, store: str) -> bool:
    """Whether ``item`` runs in this store's pass of the suite.

    A test that touches no store (the pure domain, the log writer, the OpenAPI
    document...) would pass or fail alike on both: it runs once, in the SQLite
    pass. A test marked ``dynamodb_pass`` (it starts DynamoDB Local itself) runs
    only in the DynamoDB pass; ``tests/dynamodb`` runs only there anyway. One
    marked ``sqlite_pass`` (about SQLite alone) runs only in the SQLite pass,
    where it would otherwise start a DynamoDB Local only to skip.
    """
    if item.get_closest_marker("dynamodb_pass") is not None:
        return store == "dynamodb"
    if item.get_closest_marker("sqlite_pass") is not None:
        return store == "sqlite"
    if store == "sqlite" or item.nodeid.startswith("tests/dynamodb/"):
        return True
    return bool(STORE_FIXTURES & set(getattr(item, "fixturenames", ())))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each pass keeps its own tests (``runs_on_this_pass``), long ones first, so
    that pytest-xdist overlaps them with the short ones.

    Every module is one unit of work for ``--dist loadgroup`` (unless its tests
    name a group of their own): on DynamoDB each module starts its own DynamoDB
    Local, and a module split between the two workers would start two.
    """
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
    store = str(config.getoption("--store"))
    kept: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        (kept if runs_on_this_pass(item, store) else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def store_name(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--store"))


@pytest.fixture(scope="module")
def endpoint(store_name: str, request: pytest.FixtureRequest) -> str | None:
    """DynamoDB Local's URL when the suite runs on DynamoDB (one instance per module)."""
    if store_name != "dynamodb":
        return None
    return str(request.getfixturevalue("dynamodb_endpoint"))


@pytest.fixture
def store_settings(store_name: str, endpoint: str | None) -> dict[str, object]:
    """What selects the store under test, with fresh tables."""
    return fresh_store_settings(store_name, endpoint)


@pytest.fixture
def settings(store_settings: dict[str, object], tmp_path: Path) -> Settings:
    """Settings for a fresh, isolated store."""
    return Settings(
        **store_settings,  # type: ignore[arg-type]
        data_dir=tmp_path / "data",
        environment="test",
        # DynamoDB: a rebuild's switch waits only for the pointer's time to live
        # (the tests' requests are all sent from this machine).
        rebuild_switch_grace_seconds=0.0,
    )


@pytest.fixture(autouse=True)
def _written_logs() -> Iterator[None]:
    """Log lines are written in batches: what a test logged goes to its own
    captured output, not to the terminal when the session ends."""
    yield
    flush_logs()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The real application, through its HTTP interface."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def container(settings: Settings) -> Iterator[Container]:
    """The service and its read tables, without HTTP (commands group-committed)."""
    built = build_container(settings)
    built.start()
    try:
        yield built
    finally:
        built.close()
