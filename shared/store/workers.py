"""Worker documents: each worker process's heartbeat, and who is missing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from shared.records import WorkerRecord

Doc = dict[str, Any]


class WorkerStore:
    """The `workers` collection."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def beat(
        self,
        name: str,
        *,
        at: datetime,
        started_at: datetime,
        concurrency: int,
        tasks: list[str],
        pid: int | None = None,
        host: str | None = None,
    ) -> None:
        """Record one heartbeat of worker `name` and the tasks it runs now (with its process
        id and host, when given: for operators, never shown to users)."""
        fields: Doc = {
            "last_heartbeat": at,
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

    async def mark_missing(self, heartbeat_before: datetime) -> int:
        """Mark missing the workers whose last heartbeat is before `heartbeat_before`; how many
        were newly marked."""
        marked = await self.collection.update_many(
            {"last_heartbeat": {"$lt": heartbeat_before}, "missing": False},
            {"$set": {"missing": True}},
        )
        return marked.modified_count

    async def all(self) -> list[WorkerRecord]:
        """Every worker that has heartbeated, the newest heartbeat first."""
        cursor = self.collection.find({}).sort("last_heartbeat", DESCENDING)
        return [WorkerRecord.model_validate(doc) async for doc in cursor]

    async def remove(self, name: str) -> None:
        """Forget a worker that stopped cleanly."""
        await self.collection.delete_one({"_id": name})
