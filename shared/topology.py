"""Names of every exchange, queue and collection, in one place."""

from __future__ import annotations

from dataclasses import dataclass

#: Task documents, one per task.
TASKS = "tasks"
#: Collection: one queue per resource that tasks reserve.
RESERVATIONS = "reservations"
#: One document per worker process: its heartbeat and what it runs.
WORKERS = "workers"
#: Idempotency-Key records of `POST /tasks`, removed by TTL.
IDEMPOTENCY_KEYS = "idempotency_keys"
#: Submissions per user in slots of ten seconds, for the per-minute limit; removed by TTL.
SUBMISSION_COUNTS = "submission_counts"
#: Users: name, role, password hash.
USERS = "users"
#: API tokens, by the SHA-256 of the token.
API_TOKENS = "api_tokens"
#: Signed-in browser sessions, by the SHA-256 of the cookie's secret; removed by TTL.
SESSIONS = "sessions"
#: Single-use WebSocket tickets, by their SHA-256; removed by TTL.
WS_TICKETS = "ws_tickets"
#: Wrong passwords per user name in the current window; removed by TTL.
FAILED_LOGINS = "failed_logins"
#: Webhook endpoints: a user's receivers of task events, with their signing secrets.
WEBHOOK_ENDPOINTS = "webhook_endpoints"
#: Webhook deliveries: one event for one endpoint, with its attempts; removed by TTL.
WEBHOOK_DELIVERIES = "webhook_deliveries"
#: Where the webhook sender is in the tasks change stream (its resume token).
WEBHOOK_CURSORS = "webhook_cursors"

#: Routing key of `RunTask` commands on the tasks exchange.
RUN_KEY = "run"
#: Routing key of high-priority `RunTask` commands.
HIGH_RUN_KEY = "run.high"


@dataclass(frozen=True)
class Topology:
    """The broker names of one deployment, all derived from its namespace."""

    namespace: str = "tasklight"

    @property
    def tasks_exchange(self) -> str:
        """Direct exchange that takes `RunTask` commands."""
        return f"{self.namespace}.tasks"

    @property
    def tasks_queue(self) -> str:
        """Durable quorum queue the workers consume `RunTask` from."""
        return f"{self.namespace}.tasks"

    @property
    def high_tasks_queue(self) -> str:
        """Durable quorum queue of high-priority `RunTask` commands (quorum queues have no
        message priorities on RabbitMQ before 4.0)."""
        return f"{self.namespace}.tasks.high"

    @property
    def dead_exchange(self) -> str:
        """Fanout exchange where commands that cannot be run end up."""
        return f"{self.namespace}.dead"

    @property
    def dead_queue(self) -> str:
        """Queue that keeps dead-lettered commands for inspection."""
        return f"{self.namespace}.dead"

    @property
    def parked_queue(self) -> str:
        """Queue that keeps dead-lettered commands whose task could not be recorded as failed
        after every try: never consumed, for an operator to inspect."""
        return f"{self.namespace}.parked"

    def delay_queue(self, band_s: int) -> str:
        """Quorum queue where retried commands wait out delays of the band starting at `band_s`."""
        return f"{self.namespace}.retry.{band_s}s"

    def classic_delay_queue(self, band_s: int) -> str:
        """The classic queue that held the band's retries before they moved to quorum queues
        (RabbitMQ cannot change a queue's type): it drains into the tasks exchange as its
        messages expire, and is no longer published to."""
        return f"{self.namespace}.delay.{band_s}s"

    @property
    def control_exchange(self) -> str:
        """Fanout exchange for broadcasts to every worker (cancel)."""
        return f"{self.namespace}.control"
