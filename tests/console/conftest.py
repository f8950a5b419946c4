"""Fixtures of the console's browser tests: one real server and one headless
Chromium (Debian's ``chromium``, driven by Playwright) for the whole module.

They never skip: without chromium or Playwright they fail, saying what to install.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from tests.api.conftest import ADMIN_KEY, API_KEYS, bearer
from tests.servers import server_process

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

# Headless, and nothing that would reach beyond this machine.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}


def chromium_path() -> str:
    """Debian's chromium (or CHROMIUM), else the test fails saying how to get it."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail(
            "The console's browser tests need Debian's chromium: run `make setup` "
            "(or `apt-get install -y chromium`), or set CHROMIUM to a Chromium binary.",
            pytrace=False,
        )
    return found


@dataclass(frozen=True)
class Console:
    """The server under test: its URL, its data and log files, an admin's client."""

    url: str
    data_dir: Path
    log: Path
    http: httpx.Client


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    data_dir = tmp_path_factory.mktemp("console") / "data"
    env = {"STORE": "sqlite", "API_KEYS": API_KEYS, "LOG_LEVEL": "INFO"}
    with server_process(data_dir, workers=1, extra_env=env) as (url, process):
        log = data_dir.parent / f"server-{url.rsplit(':', 1)[1]}.log"
        with httpx.Client(base_url=url, headers=bearer(ADMIN_KEY), timeout=30) as http:
            yield Console(url, data_dir, log, http)
        assert process.poll() is None, "the server died during the tests"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage) at desktop size."""
    context = browser.new_context(viewport=DESKTOP)
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Saves what the page shows under artifacts/screenshots (git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def sign_in(page: Page, console: Console, key: str) -> None:
    page.goto(f"{console.url}/console")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
