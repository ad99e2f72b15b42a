"""The REST api's OpenAPI document, as FastAPI renders it for the default deployment."""

from __future__ import annotations

from typing import Any

from services.api.app import create_app
from services.contracts.defaults import default_settings


def openapi_document() -> dict[str, Any]:
    """`app.openapi()` of the api (what `/openapi.json` serves); connects to nothing."""
    return create_app(default_settings()).openapi()
