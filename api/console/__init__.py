"""The web console at ``/console``: pages for auditors and admins.

Static files only (HTML, CSS and vanilla JavaScript, vendored here so the
service works offline): the page calls the same public API as any client, with
the API key the person enters once, kept in the tab's ``sessionStorage`` (never
in a URL, a cookie or a log). This module adds no endpoint of its own beyond
the files, and none of them is in the OpenAPI document.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).parent / "static"

# The page runs only its own files and talks only to its own origin; no frame
# may hold it and no referrer leaves it.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def install(app: FastAPI) -> None:
    """Serves the console's page at ``/console`` and its files under ``/console/assets``."""
    app.mount("/console/assets", StaticFiles(directory=ASSETS), name="console-assets")

    @app.get("/console", include_in_schema=False)
    def console() -> FileResponse:
        return FileResponse(ASSETS / "index.html", headers=SECURITY_HEADERS)
