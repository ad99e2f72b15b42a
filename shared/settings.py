"""Settings for every service, read from environment variables (and nothing else)."""

from __future__ import annotations

import secrets
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def parse_amqp_addresses(amqp_url: str) -> list[str]:
    """The addresses of a comma-separated `AMQP_URL`, in order, each a whole `amqp://` or
    `amqps://` URL; ValueError for none, or for anything else."""
    addresses = [part.strip() for part in amqp_url.split(",") if part.strip()]
    if not addresses:
        raise ValueError("no broker address given")
    for address in addresses:
        parsed = urlsplit(address)
        if parsed.scheme not in ("amqp", "amqps") or not parsed.hostname:
            shown = address.replace(f":{parsed.password}@", ":***@") if parsed.password else address
            raise ValueError(
                f"{shown!r} is not an AMQP address (amqp://user:password@host:port/vhost; "
                "several of one cluster separated by commas)"
            )
    return addresses


def lease_problems(lease_s: float, renew_s: float, janitor_interval_s: float) -> list[str]:
    """What is wrong with these lease timings (none: they make sense). A lease must outlast
    three renewals (one renewal's margin to stop before it expires, and one lost renewal is
    not yet a loss), and expired leases must be looked for at least once per lease."""
    problems = []
    if renew_s > lease_s / 3:
        problems.append(
            f"TASKLIGHT_LEASE_RENEW_S ({renew_s:g}) must be at most a third of "
            f"TASKLIGHT_LEASE_S ({lease_s:g}): renew more often, or make the lease longer"
        )
    if janitor_interval_s > lease_s:
        problems.append(
            f"TASKLIGHT_JANITOR_INTERVAL_S ({janitor_interval_s:g}) must not exceed "
            f"TASKLIGHT_LEASE_S ({lease_s:g}): expired leases would wait for the next sweep"
        )
    return problems


def _default_worker_name() -> str:
    # Shown to users in their tasks: nothing of the machine (the process id and host name are
    # in the worker's heartbeat, for administrators: GET /api/v1/workers).
    return f"worker-{secrets.token_hex(4)}"


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
    #: RabbitMQ: one address, or the addresses of a cluster's nodes, comma separated; each
    #: process connects to the first that answers and moves to the next when it loses it.
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
    #: Where the api serves its Prometheus metrics (and /healthz, /readyz), apart from what
    #: users reach: operators scrape this port. 0: a free one (logged).
    api_metrics_port: int = Field(default=8003, ge=0, le=65535)
    #: The api's address as browsers reach it (`https://tasks.example.com`): URLs the api
    #: builds (the notifier's, in pages) use it, never the request's Host header. Empty: a
    #: Host naming one of `origins()` is used, any other Host gets `http://127.0.0.1:<api_port>`.
    public_url: str = ""
    #: Addresses (or networks, `10.0.0.0/8`) of the proxies in front of the api, comma
    #: separated, or `*` for any: only a request from one of them has its X-Forwarded-For
    #: (the client's address) and X-Forwarded-Proto believed. Empty: none is.
    trusted_proxies: str = ""
    notifier_host: str = "127.0.0.1"
    notifier_port: int = 8001
    #: Where the notifier serves its Prometheus metrics (and /healthz, /readyz), apart from the
    #: port of /ws, which users reach: operators scrape this port. 0: a free one (logged).
    notifier_metrics_port: int = Field(default=8005, ge=0, le=65535)
    #: Where a worker answers /healthz, /readyz and /metrics; port 0: a free one (logged).
    worker_host: str = "127.0.0.1"
    worker_port: int = Field(default=8002, ge=0, le=65535)
    #: Largest request body the API accepts, in bytes.
    max_body_bytes: int = 256 * 1024
    #: Largest `args` of one task, as JSON, in bytes; a larger one is refused with 413.
    max_args_bytes: int = Field(default=64 * 1024, ge=2)
    #: Tasks one user may submit per minute (a sliding minute); 0 for no limit. More get 429.
    submit_rate_per_minute: int = Field(default=600, ge=0)

    #: DEVELOPMENT ONLY: accept the built-in user `dev` (password `dev`, token
    #: `tl_dev_insecure_development_token`). `make run` turns it on; never in production.
    dev_mode: bool = False
    #: The first administrator: created at the API's start if no user of this name exists.
    admin_user: str = ""
    #: The first administrator's password (for the web UI); empty: none.
    admin_password: str = Field(default="", repr=False)
    #: An API token for the first administrator, stored hashed; empty: none (use the CLI).
    admin_token: str = Field(default="", repr=False)
    #: Wrong passwords for one user name within 15 minutes after which its sign-in answers 429
    #: until the 15 minutes are over (API tokens are not affected).
    max_failed_logins: int = Field(default=10, ge=1)
    #: Wrong passwords (for any names) from one client address within 15 minutes after which
    #: its sign-ins answer 429 until the 15 minutes are over; set above what one office behind
    #: one address may get wrong.
    max_failed_logins_per_address: int = Field(default=50, ge=1)
    #: Password checks (scrypt, some 16 MiB and tens of ms each) one api process runs at once,
    #: off its event loop; more sign-ins wait, and beyond 8 times this many waiting, one is
    #: refused with 503 `sign-in-busy`.
    password_checks_at_once: int = Field(default=2, ge=1, le=64)
    #: Seconds a process remembers whose an API token is, saving two reads per request; a
    #: revoked token keeps working for at most this long. 0: ask the database every time.
    token_cache_s: float = Field(default=10.0, ge=0)
    #: Seconds a web UI sign-in lasts (8 hours).
    session_ttl_s: int = Field(default=8 * 3600, ge=60)
    #: Seconds a WebSocket ticket from `POST /api/v1/ws-tickets` stays valid (single use).
    ws_ticket_ttl_s: int = Field(default=60, ge=5)
    #: Mark cookies `Secure` even on plain HTTP requests (behind a TLS-terminating proxy that
    #: does not say so); HTTPS requests always get `Secure` cookies.
    cookie_secure: bool = False
    #: Origins the web UI is served from, comma separated: the only ones whose pages may open a
    #: WebSocket (cross-site WebSocket hijacking). Empty: the API's own address, as
    #: `http://127.0.0.1:<api_port>` and `http://localhost:<api_port>`.
    allowed_origins: str = ""

    #: Tasks one worker process claims and runs at once. Handlers are coroutines on one event
    #: loop, so a slot costs little; what it buys is group commit: the claims and ends of tasks
    #: in hand at once share their statements (no-op tasks end to end: 8 slots, 4 tasks a
    #: statement and 2.7 ms of database CPU a task; 32 slots, 14 tasks and 1.9 ms).
    worker_concurrency: int = Field(default=32, ge=1, le=1000)
    #: Commands one worker takes from the queue at once (unacknowledged); 0: twice
    #: `worker_concurrency`. More than the concurrency keeps the slots busy while finished tasks'
    #: outcomes are written; for long tasks, whose commands wait in a busy worker while another
    #: may be idle, set it to the concurrency.
    worker_prefetch: int = Field(default=0, ge=0, le=10000)
    #: The worker's name in its tasks (which users see) and in /api/v1/workers; by default a
    #: random `worker-<8 hex digits>` per process.
    worker_name: str = Field(default_factory=_default_worker_name)
    #: Seconds a broker publish waits for its confirm before the API gives up.
    publish_timeout_s: float = Field(default=5.0, gt=0)
    #: Seconds between AMQP heartbeats (unless an address asks otherwise, `?heartbeat=`): a
    #: broker node that stops answering without closing (paused, cut off) is given up, and the
    #: next address tried, after about three times this.
    amqp_heartbeat_s: int = Field(default=10, ge=1, le=600)
    #: Seconds one attempt to connect to one broker address may take.
    amqp_connect_timeout_s: float = Field(default=5.0, gt=0)
    #: Seconds between attempts to connect after one failed (each attempt: the next address).
    amqp_reconnect_s: float = Field(default=1.0, gt=0)
    #: Replicas of each quorum queue when it is first declared (`x-quorum-initial-group-size`):
    #: 3 on a cluster of three nodes. 0: RabbitMQ's own default. Fixed once a queue exists:
    #: RabbitMQ refuses a declaration that asks for another number.
    quorum_group_size: int = Field(default=0, ge=0, le=99)
    #: Deliveries of one command before the broker dead-letters it (a crash loop guard).
    delivery_limit: int = Field(default=5, ge=1)
    #: Tries at recording a dead-lettered command's task as failed, refused by the database,
    #: before the command is parked (moved to the `<namespace>.parked` queue and counted), each
    #: after a doubling backoff. A try the database did not answer is not one of them.
    dead_letter_attempts: int = Field(default=5, ge=1)
    #: Seconds before the second try of a dead-lettered command; doubles, at most 30 s.
    dead_letter_backoff_s: float = Field(default=0.5, gt=0)
    #: Python modules whose import registers extra task types, comma separated.
    task_modules: str = ""
    #: Register the built-in `test.*` and `demo.*` task types, for trying tasklight and for its
    #: tests (`make run` and the tests turn it on); off in a deployment.
    builtin_tasks: bool = False

    #: Seconds a worker's hold on its tasks (its lease) lasts without renewal: a worker whose
    #: lease is past is missing, and its tasks are requeued or ended (its own tasks it stops
    #: itself, a renewal before, see `lease_renew_s`). The worker's heartbeat is the renewal.
    #: (`TASKLIGHT_WORKER_TTL_S`, its older name, is read too.)
    lease_s: float = Field(
        default=5.0,
        gt=0,
        validation_alias=AliasChoices("TASKLIGHT_LEASE_S", "TASKLIGHT_WORKER_TTL_S", "lease_s"),
    )
    #: Seconds between a worker's heartbeats, each renewing its lease (one write per worker);
    #: a worker with no renewal answered for `lease_s` minus this stops its tasks and writes
    #: nothing about them (self-fencing). (`TASKLIGHT_HEARTBEAT_S` is read too.)
    lease_renew_s: float = Field(
        default=1.0,
        gt=0,
        validation_alias=AliasChoices(
            "TASKLIGHT_LEASE_RENEW_S", "TASKLIGHT_HEARTBEAT_S", "lease_renew_s"
        ),
    )
    #: Seconds between a worker's checks for expired leases, stranded commands and parents;
    #: a killed worker's tasks are requeued within `lease_s` plus this.
    janitor_interval_s: float = Field(default=1.0, gt=0)
    #: Seconds a stored task may wait for its command's confirm before the relay publishes it.
    outbox_grace_s: float = Field(default=15.0, gt=0)
    #: Seconds ahead a task may be scheduled at most (`run_at`, `delay_s`): 30 days.
    max_schedule_ahead_s: float = Field(default=30 * 24 * 3600.0, gt=0)
    #: Seconds between a worker's looks for scheduled tasks whose time came.
    schedule_poll_s: float = Field(default=0.25, gt=0)
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
    #: Bytes of messages one WebSocket connection may have waiting (beyond the one being sent);
    #: more closes it with 4000, so a client that does not read cannot pin the notifier's memory.
    ws_queue_limit_bytes: int = Field(default=1024 * 1024, ge=64 * 1024)
    #: Seconds a WebSocket connection's send queue may stay non-empty; then it closes with 4000.
    ws_drain_timeout_s: float = Field(default=10.0, gt=0)
    #: Largest WebSocket frame the notifier accepts, in bytes; a larger one closes with 1009.
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    #: Seconds between the notifier's keepalive pings; also how long it waits for each pong.
    ws_ping_interval_s: float = Field(default=20.0, gt=0)
    #: Subscriptions one WebSocket connection may hold; one more gets a 429 `error`.
    ws_max_subscriptions: int = Field(default=100, ge=1)
    #: WebSocket connections one user may hold on one notifier process; one more is closed
    #: with 4429.
    ws_max_connections_per_user: int = Field(default=50, ge=1)
    #: Seconds a connection without credentials in its handshake has to send `auth`; then 4401.
    ws_auth_timeout_s: float = Field(default=10.0, gt=0)
    #: Compress WebSocket messages (permessage-deflate); costs ~50 KiB of memory per connection.
    ws_compression: bool = False

    #: Where the webhook sender answers /healthz, /readyz and /metrics; port 0: a free one.
    webhooks_host: str = "127.0.0.1"
    webhooks_port: int = Field(default=8004, ge=0, le=65535)
    #: Let webhooks go to loopback addresses (127.0.0.0/8, ::1): for development and tests.
    webhook_allow_loopback: bool = False
    #: Networks webhooks may go to although they are not public, comma separated CIDRs
    #: (`10.20.0.0/16,fd00::/8`); every other private, link-local or reserved address is refused.
    webhook_allowed_networks: str = ""
    #: Seconds one delivery attempt may take, connecting included; longer is a failed attempt.
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    #: Seconds before the first retry of a failed delivery; each retry waits twice as long (a
    #: random half of it taken off), up to `webhook_retry_max_interval_s`.
    webhook_retry_base_s: float = Field(default=10.0, gt=0)
    #: The longest wait between two attempts of a delivery (1 hour).
    webhook_retry_max_interval_s: float = Field(default=3600.0, gt=0)
    #: Seconds a delivery is retried for, from when it was recorded or replayed (24 hours);
    #: then it is marked failed.
    webhook_retry_window_s: float = Field(default=24 * 3600.0, gt=0)
    #: Deliveries to one endpoint that fail for good one after another (no success between)
    #: after which the endpoint is disabled, with the reason shown to its owner.
    webhook_disable_after_failures: int = Field(default=5, ge=1)
    #: Seconds a rotated-out endpoint secret goes on signing deliveries, beside the new one.
    webhook_secret_overlap_s: int = Field(default=24 * 3600, ge=0)
    #: Delivery attempts one sender makes at once in its main lane, over all endpoints that
    #: answer; an attempt leaves it after `webhook_slow_after_s`.
    webhook_concurrency: int = Field(default=32, ge=1, le=1000)
    #: Delivery attempts one sender makes at once to one endpoint in the main lane.
    webhook_endpoint_concurrency: int = Field(default=4, ge=1, le=100)
    #: Delivery attempts one sender makes at once to slow endpoints (the slow lane), shared by
    #: all of them, one at a time each: what endpoints that do not answer are left with.
    webhook_slow_concurrency: int = Field(default=4, ge=1, le=1000)
    #: Seconds after which a running attempt leaves the main lane for the slow lane and its
    #: endpoint is slow, until an attempt of it ends sooner (at most the attempt timeout).
    webhook_slow_after_s: float = Field(default=2.0, gt=0)
    #: Seconds between the sender's looks for due retries and changed endpoints.
    webhook_poll_s: float = Field(default=1.0, gt=0)
    #: Endpoints one user may register.
    webhook_max_endpoints: int = Field(default=20, ge=1)
    #: Seconds a delivery and its attempts are kept after it was recorded or replayed (7 days).
    webhook_retention_s: int = Field(default=7 * 24 * 3600, ge=60)

    #: Log level of the services.
    log_level: str = "INFO"
    #: `json`: one JSON object per line (for log collectors); `text`: plain lines for people.
    log_format: Literal["json", "text"] = "json"
    #: Trace with OpenTelemetry (needs the `otel` extra), exporting OTLP over HTTP as the
    #: standard `OTEL_*` variables say; also on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    otel_enabled: bool = False

    @model_validator(mode="after")
    def _leases_make_sense(self) -> Settings:
        problems = lease_problems(self.lease_s, self.lease_renew_s, self.janitor_interval_s)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("amqp_url")
    @classmethod
    def _amqp_addresses(cls, value: str) -> str:
        parse_amqp_addresses(value)
        return value

    def amqp_addresses(self) -> list[str]:
        """The broker addresses of `amqp_url`, in the order they are tried."""
        return parse_amqp_addresses(self.amqp_url)

    @field_validator("public_url")
    @classmethod
    def _an_http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if value and (parts.scheme not in ("http", "https") or not parts.netloc):
            raise ValueError("must be an http:// or https:// URL, e.g. https://tasks.example.com")
        return value.strip().rstrip("/")

    def public_origin(self) -> str | None:
        """The origin of `public_url` (`scheme://host[:port]`), or None when it is not set."""
        if not self.public_url:
            return None
        parts = urlsplit(self.public_url.strip())
        return f"{parts.scheme}://{parts.netloc}"

    def prefetch(self) -> int:
        """The worker's prefetch (see `worker_prefetch`)."""
        return max(self.worker_prefetch or 2 * self.worker_concurrency, self.worker_concurrency)

    def origins(self) -> frozenset[str]:
        """The allowed browser origins (see `allowed_origins`)."""
        configured = {o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()}
        if configured:
            return frozenset(configured)
        port = self.api_port
        return frozenset({f"http://127.0.0.1:{port}", f"http://localhost:{port}"})
