"""The web console's files: served by the app itself, locked to its own origin,
and no part of the API's contract."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

# Static files, the same on either store.
pytestmark = pytest.mark.sqlite_pass


def test_the_console_page_is_served_with_a_policy_that_keeps_it_on_its_own_origin(
    shared_client: TestClient,
) -> None:
    response = shared_client.get("/console")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/console/assets/console.js">' in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["referrer-policy"] == "no-referrer"


def test_the_consoles_assets_are_vendored_and_name_no_other_host(
    shared_client: TestClient,
) -> None:
    for name, kind in (
        ("console.js", "javascript"),
        ("plot.js", "javascript"),
        ("console.css", "text/css"),
    ):
        response = shared_client.get(f"/console/assets/{name}")
        assert response.status_code == 200, name
        assert kind in response.headers["content-type"]
        assert "http://" not in response.text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in response.text


def test_the_console_adds_nothing_to_the_api_contract(shared_client: TestClient) -> None:
    paths = shared_client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/console")]
