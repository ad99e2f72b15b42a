"""Settings for every service, read from environment variables (and nothing else)."""

from __future__ import annotations

import os
import socket

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_worker_name() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


class Settings(BaseSettings):
    """One settings class for all services; each reads what it needs.

    Every field is set by `TASKLIGHT_<FIELD>`; the two connection URLs also by their common names,
    `MONGODB_URL` and `AMQP_URL`.
    """

    model_config = SettingsConfigDict(env_prefix="TASKLIGHT_", extra="ignore")

    mongodb_url: str = Field(
        default="mongodb://127.0.0.1:27017/?directConnection=true",
        validation_alias=AliasChoices("MONGODB_URL", "TASKLIGHT_MONGODB_URL"),
    )
    amqp_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/",
        validation_alias=AliasChoices("AMQP_URL", "TASKLIGHT_AMQP_URL"),
    )
    #: Database name in MongoDB.
    database: str = "tasklight"
    #: Prefix of every exchange and queue name, so that several deployments share one broker.
    namespace: str = "tasklight"

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    notifier_host: str = "127.0.0.1"
    notifier_port: int = 8001
    #: Largest request body the API accepts, in bytes.
    max_body_bytes: int = 256 * 1024
    #: The user every request acts as until users and tokens exist.
    dev_user: str = "dev"
    #: Largest page of `GET /tasks`.
    max_page_size: int = 500

    #: Tasks one worker process runs at once.
    worker_concurrency: int = Field(default=8, ge=1, le=1000)
    worker_name: str = Field(default_factory=_default_worker_name)
    #: Seconds between a worker's heartbeats.
    heartbeat_s: float = Field(default=5.0, gt=0)
    #: Seconds a broker publish waits for its confirm before the API gives up.
    publish_timeout_s: float = Field(default=5.0, gt=0)
    #: Deliveries of one command before the broker dead-letters it (a crash loop guard).
    delivery_limit: int = Field(default=5, ge=1)
    #: Python modules whose import registers extra task types, comma separated.
    task_modules: str = ""
