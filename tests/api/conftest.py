"""Fixtures of the API tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from infra.settings import Settings
from tests.support import fresh_store_settings


@pytest.fixture(scope="module")
def shared_client(
    store_name: str, endpoint: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """One real application for a whole module, for tests that need no fresh store.

    Such tests only read, expect a refusal that changes nothing, or write under
    fresh unique ids; starting an application per parametrized case would
    dominate the suite's run time.
    """
    settings = Settings(
        **fresh_store_settings(store_name, endpoint),  # type: ignore[arg-type]
        data_dir=tmp_path_factory.mktemp("shared") / "data",
        environment="test",
    )
    with TestClient(create_app(settings)) as client:
        yield client
