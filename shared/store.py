"""MongoDB access for tasks and their events: the only module that writes task documents.

Every change of a task is one atomic single-document write (a compare-and-set). No multi-document
transaction is used: on SecantusDB a plain write that meets an open transaction's write retries
inside the server until that transaction ends, and under load that wait never ended. So what must
change together lives in the task document itself: its state, its run, its attempts, and
`dispatch_due_at`, the outbox mark that makes the relay publish a command the broker never
confirmed, and `history`, its state changes, each appended by the write that makes it. The
`task_events` log (all tasks' changes, for queries across tasks) is written right after, with an
id made of the task id and its version, so writing it twice is harmless; a writer that dies
between the two writes leaves that one change out of the log, never out of the task's history.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from shared.ids import task_id_floor
from shared.lifecycle import FINAL_STATES, TaskState, transition_write, utcnow
from shared.messages import TaskStateChanged
from shared.settings import Settings
from shared.topology import IDEMPOTENCY_KEYS, TASK_EVENTS, TASKS, WORKERS

Doc = dict[str, Any]


def open_store(settings: Settings) -> TaskStore:
    """A store on a new client for the configured database (the client connects lazily)."""
    client: AsyncMongoClient[Doc] = AsyncMongoClient(
        settings.mongodb_url, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    return TaskStore(
        client,
        settings.database,
        retention_s=settings.retention_s,
        idempotency_ttl_s=settings.idempotency_ttl_s,
    )


class TaskStore:
    """Tasks, task events and workers in one MongoDB database."""

    def __init__(
        self,
        client: AsyncMongoClient[Doc],
        database: str,
        *,
        retention_s: int = 30 * 24 * 3600,
        idempotency_ttl_s: int = 24 * 3600,
    ) -> None:
        self.client = client
        self.retention_s = retention_s
        self.idempotency_ttl_s = idempotency_ttl_s
        self.db: AsyncDatabase[Doc] = client[database]
        self.tasks = self.db[TASKS]
        self.events = self.db[TASK_EVENTS]
        self.workers = self.db[WORKERS]
        self.idempotency = self.db[IDEMPOTENCY_KEYS]

    async def ensure_indexes(self) -> None:
        """Create the indexes the queries below rely on (idempotent)."""
        await self.tasks.create_index([("owner", ASCENDING), ("_id", DESCENDING)])
        await self.tasks.create_index([("state", ASCENDING), ("_id", DESCENDING)])
        await self.tasks.create_index([("parent_id", ASCENDING)])
        await self.tasks.create_index([("state", ASCENDING), ("worker.last_heartbeat", ASCENDING)])
        await self.events.create_index([("task_id", ASCENDING), ("version", ASCENDING)])
        await self.tasks.create_index([("dispatch_due_at", ASCENDING)], sparse=True)
        # Finished tasks (and their events) are kept for `retention_s`, then removed by MongoDB.
        await self._ttl_index(self.tasks, "finished_at", self.retention_s)
        await self._ttl_index(self.events, "at", self.retention_s)
        await self._ttl_index(self.idempotency, "created_at", self.idempotency_ttl_s)

    async def _ttl_index(self, collection: Any, field: str, seconds: int) -> None:
        try:
            await collection.create_index([(field, ASCENDING)], expireAfterSeconds=seconds)
        except OperationFailure as exc:
            if exc.code not in (85, 86):  # the index exists with another TTL: change it
                raise
            await self.db.command(
                "collMod",
                collection.name,
                index={"keyPattern": {field: 1}, "expireAfterSeconds": seconds},
            )

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.close()

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        await self.db.command("ping")

    async def insert(
        self, doc: Doc, *, parent_id: str | None = None, dispatch_due_at: datetime | None = None
    ) -> None:
        """Store a new task and its first event; with `parent_id`, also link it to its parent.

        With `dispatch_due_at`, the task carries its outbox mark: if its command is not
        confirmed (and the mark removed) by then, the relay publishes it.
        """
        first = TaskStateChanged(
            task_id=doc["_id"], source=None, target=TaskState.WAITING, version=doc["version"]
        ).model_dump(mode="python", exclude={"message_id", "task_id"})
        doc = {**doc, "history": [first]}
        if dispatch_due_at is not None:
            doc["dispatch_due_at"] = dispatch_due_at
        await self.tasks.insert_one(doc)
        await self._log(doc["_id"], first)
        if parent_id is not None:
            await self._touch(parent_id, {"$push": {"child_ids": doc["_id"]}})

    async def get(self, task_id: str) -> Doc | None:
        """The stored task, or None."""
        return await self.tasks.find_one({"_id": task_id})

    async def page(
        self,
        *,
        owner: str | None,
        states: Iterable[TaskState] | None,
        name: str | None,
        limit: int,
        before: str | None,
    ) -> list[Doc]:
        """Up to `limit` tasks, newest first, older than the task id `before` if given."""
        query: Doc = {}
        if owner is not None:
            query["owner"] = owner
        if states is not None:
            query["state"] = {"$in": sorted(s.value for s in states)}
        if name is not None:
            query["name"] = name
        if before is not None:
            query["_id"] = {"$lt": before}
        cursor = self.tasks.find(query).sort("_id", DESCENDING).limit(limit)
        return [doc async for doc in cursor]

    async def submitted_since(
        self, owner: str, since: datetime, limit: int
    ) -> tuple[int, datetime | None]:
        """How many top-level tasks `owner` created since `since` (counting to `limit`), and
        when the oldest of those was created."""
        query = {
            "owner": owner,
            "_id": {"$gte": task_id_floor(int(since.timestamp() * 1000))},
            "parent_id": None,
        }
        count = await self.tasks.count_documents(query, limit=limit)
        oldest = await self.tasks.find_one(query, {"created_at": 1}, sort=[("_id", ASCENDING)])
        return count, None if oldest is None else oldest["created_at"]

    async def visible_ids(self, task_ids: list[str], owner: str) -> set[str]:
        """Those of `task_ids` whose task belongs to `owner`."""
        cursor = self.tasks.find({"_id": {"$in": task_ids}, "owner": owner}, {"_id": 1})
        return {doc["_id"] async for doc in cursor}

    async def children(self, parent_id: str) -> list[Doc]:
        """The child tasks of a task, oldest first."""
        cursor = self.tasks.find({"parent_id": parent_id}).sort("_id", ASCENDING)
        return [doc async for doc in cursor]

    async def history(self, task_id: str) -> list[Doc]:
        """The state changes of a task, oldest first, from the task itself (always complete)."""
        doc = await self.tasks.find_one({"_id": task_id}, {"history": 1})
        return list((doc or {}).get("history") or [])

    async def transition(
        self,
        task_id: str,
        sources: Iterable[TaskState],
        target: TaskState,
        *,
        fields: Mapping[str, Any] | None = None,
        guard: Mapping[str, Any] | None = None,
        worker: str | None = None,
        reason: str | None = None,
    ) -> Doc | None:
        """Move a task to `target` if it is still in one of `sources`; record the event.

        Returns the task after the change, or None when it was no longer in a source state (or
        the guard did not match): someone else changed it first.
        """
        at = utcnow()
        query, pipeline = transition_write(
            task_id,
            sources,
            target,
            at=at,
            fields=fields,
            guard=guard,
            worker=worker,
            reason=reason,
        )
        doc = await self.tasks.find_one_and_update(
            query, pipeline, return_document=ReturnDocument.AFTER
        )
        if doc is None:
            return None
        await self._log(task_id, doc["history"][-1])
        return doc

    async def update_running(
        self, task_id: str, run_id: str, update: Doc, *, projection: Doc | None = None
    ) -> Doc | None:
        """Apply `update` to a task still held by run `run_id` (running or canceling).

        Returns the task after the change (only the `projection` fields if given), or None if
        the run no longer holds it.
        """
        query = {
            "_id": task_id,
            "run.id": run_id,
            "state": {"$in": [TaskState.RUNNING.value, TaskState.CANCELING.value]},
        }
        full = _with_version_bump(update)
        return await self.tasks.find_one_and_update(
            query, full, projection=projection, return_document=ReturnDocument.AFTER
        )

    async def dispatched(self, task_id: str) -> None:
        """The broker confirmed the task's command: clear its outbox mark."""
        await self.tasks.update_one({"_id": task_id}, {"$unset": {"dispatch_due_at": ""}})

    async def due_dispatches(self, now: datetime, limit: int = 100) -> list[Doc]:
        """Tasks whose command should have been confirmed by `now`."""
        cursor = (
            self.tasks.find({"dispatch_due_at": {"$lte": now}}, {"name": 1, "state": 1, "run": 1})
            .sort("dispatch_due_at", ASCENDING)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def release(
        self, task_id: str, run_id: str, attempt: Doc, *, dispatch_due_at: datetime
    ) -> Doc | None:
        """Take a running task back from run `run_id` so that another run may claim it.

        The task stays `running` (the lifecycle has no way back to `waiting`), its run is
        cleared, `attempt` is added to its attempts, and its outbox mark makes sure that its
        command is published again. None if the run no longer held it.
        """
        return await self.tasks.find_one_and_update(
            {"_id": task_id, "run.id": run_id, "state": TaskState.RUNNING.value},
            _with_version_bump(
                {
                    "$set": {
                        "run": {"id": None, "released": attempt["outcome"]},
                        "dispatch_due_at": dispatch_due_at,
                    },
                    "$push": {"attempts": attempt},
                }
            ),
            return_document=ReturnDocument.AFTER,
        )

    async def claim_released(self, task_id: str, run: Doc, worker: Doc) -> Doc | None:
        """Give a released running task to a new run; None if it is not released."""
        return await self.tasks.find_one_and_update(
            {"_id": task_id, "state": TaskState.RUNNING.value, "run.id": None},
            _with_version_bump({"$set": {"run": run, "worker": worker}, "$inc": {"runs": 1}}),
            return_document=ReturnDocument.AFTER,
        )

    async def stale_running(self, heartbeat_before: datetime, limit: int = 100) -> list[Doc]:
        """Running or canceling tasks held by a run whose worker stopped heartbeating."""
        cursor = self.tasks.find(
            {
                "state": {"$in": [TaskState.RUNNING.value, TaskState.CANCELING.value]},
                "run.id": {"$ne": None},
                "awaiting_children": {"$ne": True},
                "worker.last_heartbeat": {"$lt": heartbeat_before},
            }
        ).limit(limit)
        return [doc async for doc in cursor]

    async def waiting_parents(self, updated_before: datetime, limit: int = 100) -> list[Doc]:
        """Tasks waiting for their children that have not changed since `updated_before`."""
        cursor = self.tasks.find(
            {
                "state": {"$in": [TaskState.RUNNING.value, TaskState.CANCELING.value]},
                "awaiting_children": True,
                "updated_at": {"$lt": updated_before},
            }
        ).limit(limit)
        return [doc async for doc in cursor]

    async def discard_unqueued(self, task_id: str, *, parent_id: str | None) -> None:
        """Remove a task whose command the broker did not take, with its events and link."""
        await self.tasks.delete_one({"_id": task_id, "state": TaskState.WAITING.value})
        await self.events.delete_many({"task_id": task_id})
        if parent_id is not None:
            await self._touch(parent_id, {"$pull": {"child_ids": task_id}})

    async def delete_finished(self, task_id: str) -> bool:
        """Delete a finished task and its events; False if it is not there or not finished."""
        final = [s.value for s in FINAL_STATES]
        result = await self.tasks.delete_one({"_id": task_id, "state": {"$in": final}})
        if result.deleted_count == 0:
            return False
        await self.events.delete_many({"task_id": task_id})
        return True

    async def purge(
        self, *, owner: str | None, states: Iterable[TaskState], finished_before: datetime
    ) -> int:
        """Delete final-state tasks (and their events) that finished before a time."""
        final = [s.value for s in states if s in FINAL_STATES]
        query: Doc = {"state": {"$in": final}, "finished_at": {"$lt": finished_before}}
        if owner is not None:
            query["owner"] = owner
        deleted = 0
        while True:
            ids = [doc["_id"] async for doc in self.tasks.find(query, {"_id": 1}).limit(1000)]
            if not ids:
                return deleted
            result = await self.tasks.delete_many({**query, "_id": {"$in": ids}})
            await self.events.delete_many({"task_id": {"$in": ids}})
            deleted += result.deleted_count

    async def _log(self, task_id: str, entry: Doc) -> None:
        """Append a state change to the `task_events` log; its id makes a rewrite a no-op."""
        doc = {**entry, "_id": f"{task_id}:{entry['version']}", "task_id": task_id}
        with contextlib.suppress(DuplicateKeyError):
            await self.events.insert_one(doc)

    async def _touch(self, task_id: str, update: Doc) -> None:
        await self.tasks.update_one({"_id": task_id}, _with_version_bump(update))


def _with_version_bump(update: Doc) -> Doc:
    full = dict(update)
    full["$inc"] = {**full.get("$inc", {}), "version": 1}
    full["$set"] = {**full.get("$set", {}), "updated_at": utcnow()}
    return full
