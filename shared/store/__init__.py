"""The one door to MongoDB: every collection tasklight keeps, behind typed methods.

    Store
    ├── tasks         TaskStore: task documents, read as `StoredTask`s and changed by `Change`s
    │   └── reservations  ReservationStore: the resources' queues
    ├── workers       WorkerStore: heartbeats
    ├── idempotency   IdempotencyKeys: Idempotency-Key records
    ├── webhooks      WebhookStore: webhook endpoints, deliveries, the sender's stream cursor
    ├── rates         RateCounters: submissions per user and slot, for the rate limit
    ├── accounts      Accounts: users, API tokens, sessions, tickets, failed sign-ins
    └── schema        indexes, made by `migrate` and checked by every service at start

The tasks' change stream is followed by `task_stream.TaskStream` (the notifier) and
`task_changes.TaskChangeFeed` (the webhook sender), each given the `TaskStore`.

No module outside this package imports PyMongo (a unit test holds every module to that). A second
backend, or a fake for unit tests, implements these classes' methods.
"""

from __future__ import annotations

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared.settings import Settings
from shared.store import schema
from shared.store.accounts import Accounts
from shared.store.change import ANY_RUN, Change
from shared.store.documents import Doc
from shared.store.errors import (
    DatabaseError,
    DatabaseRefused,
    DatabaseTimeout,
    DatabaseUnreachable,
    ResourcesTaken,
    outcome_unknown,
    unreachable,
)
from shared.store.idempotency import IdempotencyKeys, KeyRecord
from shared.store.rates import RateCounters
from shared.store.schema import SchemaOutdated
from shared.store.tasks import DueDispatch, TaskStore
from shared.store.webhooks import WebhookStore
from shared.store.workers import WorkerStore
from shared.topology import IDEMPOTENCY_KEYS, SUBMISSION_COUNTS, TASKS, WORKERS

__all__ = [
    "ANY_RUN",
    "Accounts",
    "Change",
    "DatabaseError",
    "DatabaseRefused",
    "DatabaseTimeout",
    "DatabaseUnreachable",
    "DueDispatch",
    "IdempotencyKeys",
    "KeyRecord",
    "RateCounters",
    "ResourcesTaken",
    "SchemaOutdated",
    "Store",
    "TaskStore",
    "WebhookStore",
    "WorkerStore",
    "open_store",
    "outcome_unknown",
    "unreachable",
]


class Store:
    """Every collection of one tasklight database."""

    def __init__(
        self,
        client: AsyncMongoClient[Doc],
        database: str,
        *,
        retention_s: int = 30 * 24 * 3600,
        idempotency_ttl_s: int = 24 * 3600,
        webhook_retention_s: int = 7 * 24 * 3600,
        outbox_grace_s: float = 0.1,
    ) -> None:
        self.client = client
        #: The database itself: for the store's own modules, tests and benchmarks only.
        self.db: AsyncDatabase[Doc] = client[database]
        self.indexes = schema.indexes(retention_s=retention_s, idempotency_ttl_s=idempotency_ttl_s)
        # A confirmed command's mark is cleared half-way to when the relay would publish it.
        self.tasks = TaskStore(self.db[TASKS], mark_hold_s=outbox_grace_s / 2)
        self.workers = WorkerStore(self.db[WORKERS])
        self.idempotency = IdempotencyKeys(self.db[IDEMPOTENCY_KEYS])
        self.webhooks = WebhookStore(self.db, retention_s=webhook_retention_s)
        self.rates = RateCounters(self.db[SUBMISSION_COUNTS])
        self.accounts = Accounts(self.db)

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        await self.db.command("ping")

    async def migrate(self) -> list[str]:
        """Create every index and bring older documents up to date; what it did."""
        return await schema.migrate(self.db, self.indexes)

    async def require_schema(self) -> None:
        """Raise `SchemaOutdated` unless the database is migrated to this version."""
        await schema.require(self.db, self.indexes)

    async def close(self) -> None:
        """Send what the shared commands hold, then close the client's connections."""
        await self.tasks.close()
        await self.client.close()


def open_store(settings: Settings) -> Store:
    """A store on a new client for the configured database (the client connects lazily)."""
    client: AsyncMongoClient[Doc] = AsyncMongoClient(
        settings.mongodb_url, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    return Store(
        client,
        settings.database,
        retention_s=settings.retention_s,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        webhook_retention_s=settings.webhook_retention_s,
        outbox_grace_s=settings.outbox_grace_s,
    )
