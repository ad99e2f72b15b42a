"""`python -m services.api`: serve the API with uvicorn."""

from __future__ import annotations

import uvicorn

from services.api.app import create_app
from shared.logs import setup_logging
from shared.settings import Settings
from shared.tracing import setup_tracing


def main() -> None:
    """Run the API until interrupted."""
    settings = Settings()
    setup_logging("api", settings.log_format, settings.log_level)
    setup_tracing("api", settings)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        # The app believes X-Forwarded-* only from TASKLIGHT_TRUSTED_PROXIES (services/api/app.py).
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
