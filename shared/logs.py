"""Logging set-up shared by the services."""

from __future__ import annotations

import logging
import os


def setup_logging(service: str) -> None:
    """Log to stderr, one line per record, prefixed with the service's name."""
    logging.basicConfig(
        level=os.environ.get("TASKLIGHT_LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
