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

    #: Seconds without a heartbeat after which a worker is missing and its tasks are ended.
    worker_ttl_s: float = Field(default=30.0, gt=0)
    #: Seconds between a worker's checks for missing workers, stranded commands and parents.
    janitor_interval_s: float = Field(default=5.0, gt=0)
    #: Seconds a stored task may wait for its command's confirm before the relay publishes it.
    outbox_grace_s: float = Field(default=15.0, gt=0)
    #: Seconds a handler gets to reach a checkpoint after a cancel before it is stopped.
    cancel_grace_s: float = Field(default=10.0, gt=0)
    #: Seconds a stopping worker lets running tasks finish before handing them back.
    shutdown_grace_s: float = Field(default=20.0, ge=0)
    #: Seconds after which a running task's command is acknowledged, below RabbitMQ's
    #: consumer_timeout (30 min by default); from then on only the database holds the task.
    ack_deadline_s: float = Field(default=25 * 60.0, gt=0)
    #: Seconds finished tasks are kept (30 days); a TTL index removes them after.
    retention_s: int = Field(default=30 * 24 * 3600, ge=60)
    #: Seconds an Idempotency-Key is remembered (24 hours).
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)

    #: Distinct updates one WebSocket connection may have waiting; reaching it closes with 4000.
    ws_queue_limit: int = Field(default=1000, ge=4)
    #: Largest WebSocket frame the notifier accepts, in bytes; a larger one closes with 1009.
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    #: Seconds between the notifier's keepalive pings; also how long it waits for each pong.
    ws_ping_interval_s: float = Field(default=20.0, gt=0)
    #: Compress WebSocket messages (permessage-deflate); costs ~50 KiB of memory per connection.
    ws_compression: bool = False
