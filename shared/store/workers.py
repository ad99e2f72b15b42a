"""Worker documents: each worker process's heartbeat, which renews its lease, and who is
missing (its lease is past)."""

from __future__ import annotations

from datetime import datetime

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from shared.records import WorkerRecord
from shared.store.documents import Doc


class WorkerStore:
    """The `workers` collection."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def beat(
        self,
        name: str,
        *,
        at: datetime,
        lease_until: datetime,
        started_at: datetime,
        concurrency: int,
        tasks: list[str],
        pid: int | None = None,
        host: str | None = None,
    ) -> None:
        """Record one heartbeat of worker `name`, renewing its lease on every task it holds until
        `lease_until`, and the tasks it runs now (with its process id and host, when given: for
        operators, never shown to users). One write, however many tasks it holds."""
        fields: Doc = {
            "last_heartbeat": at,
            "lease_until": lease_until,
            "missing": False,
            "started_at": started_at,
            "concurrency": concurrency,
            "tasks": tasks,
        }
        if pid is not None:
            fields["pid"] = pid
        if host is not None:
            fields["host"] = host
        await self.collection.update_one({"_id": name}, {"$set": fields}, upsert=True)

    async def mark_missing(self, now: datetime, heartbeat_before: datetime) -> int:
        """Mark missing the workers whose lease is past at `now` (or, for a document without a
        lease, whose last heartbeat is before `heartbeat_before`); how many were newly marked."""
        marked = await self.collection.update_many(
            {"missing": False, **_expired(now, heartbeat_before)},
            {"$set": {"missing": True}},
        )
        return marked.modified_count

    async def live(self, now: datetime) -> dict[str, datetime]:
        """The workers whose lease still holds at `now`, and until when it does."""
        cursor = self.collection.find({"lease_until": {"$gte": now}}, {"lease_until": 1})
        return {str(doc["_id"]): doc["lease_until"] async for doc in cursor}

    async def lease_expired(self, name: str, now: datetime) -> bool:
        """Whether worker `name` holds no lease at `now`: it expired, or there is no such
        worker."""
        live = await self.collection.find_one(
            {"_id": name, "lease_until": {"$gte": now}}, {"_id": 1}
        )
        return live is None

    async def all(self) -> list[WorkerRecord]:
        """Every worker that has heartbeated, the newest heartbeat first."""
        cursor = self.collection.find({}).sort("last_heartbeat", DESCENDING)
        return [WorkerRecord.model_validate(doc) async for doc in cursor]

    async def remove(self, name: str) -> None:
        """Forget a worker that stopped cleanly."""
        await self.collection.delete_one({"_id": name})


def _expired(now: datetime, heartbeat_before: datetime) -> Doc:
    return {
        "$or": [
            {"lease_until": {"$lt": now}},
            {"lease_until": {"$exists": False}, "last_heartbeat": {"$lt": heartbeat_before}},
        ]
    }
