"""Fixtures of the API tests."""

from __future__ import annotations

import hashlib
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


ADMIN_KEY = "admin-key-5b0c2f7e91d4"
AUDITOR_KEY = "auditor-key-8e1f3a6c27b9"
CLIENT_KEY = "client-key-4d9a7e2b10c5"
# Configured by its digest only: the service never sees this key in its settings.
HASHED_AUDITOR_KEY = "hashed-auditor-key-6f2e9d1c"
API_KEYS = ",".join(
    (
        f"ops:admin:{ADMIN_KEY}",
        f"alice-auditor:auditor:{AUDITOR_KEY}",
        f"reporting:client:{CLIENT_KEY}",
        f"vault:auditor:sha256:{hashlib.sha256(HASHED_AUDITOR_KEY.encode()).hexdigest()}",
    )
)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def keyed_client(
    store_name: str, endpoint: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """One application for a module, with API keys of every role configured."""
    settings = Settings(
        **fresh_store_settings(store_name, endpoint),  # type: ignore[arg-type]
        data_dir=tmp_path_factory.mktemp("keyed") / "data",
        environment="test",
        api_keys=API_KEYS,
    )
    with TestClient(create_app(settings)) as client:
        yield client
