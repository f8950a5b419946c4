"""``python -m api``: serve the API with uvicorn on the configured host and port."""

from __future__ import annotations

import uvicorn

from infra.logs import configure_logging
from infra.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level)
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
