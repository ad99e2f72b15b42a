"""MongoDB access for tasks and their events: the only module that writes task documents."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from shared.lifecycle import FINAL_STATES, TaskState, transition_write, utcnow
from shared.messages import TaskStateChanged
from shared.settings import Settings
from shared.topology import IDEMPOTENCY_KEYS, OUTBOX, TASK_EVENTS, TASKS, WORKERS

log = logging.getLogger(__name__)

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
        #: Commands stored with their task and removed once the broker confirmed them.
        self.outbox = self.db[OUTBOX]
        self.idempotency = self.db[IDEMPOTENCY_KEYS]

    async def ensure_indexes(self) -> None:
        """Create the indexes the queries below rely on (idempotent)."""
        await self.tasks.create_index([("owner", ASCENDING), ("_id", DESCENDING)])
        await self.tasks.create_index([("state", ASCENDING), ("_id", DESCENDING)])
        await self.tasks.create_index([("parent_id", ASCENDING)])
        await self.tasks.create_index([("state", ASCENDING), ("worker.last_heartbeat", ASCENDING)])
        await self.events.create_index([("task_id", ASCENDING), ("version", ASCENDING)])
        await self.outbox.create_index([("due_at", ASCENDING)])
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

        With `dispatch_due_at`, an outbox entry is stored too: if the command is not confirmed
        (and the entry removed) by then, the relay publishes it.
        """
        event = TaskStateChanged(
            task_id=doc["_id"], source=None, target=TaskState.WAITING, version=doc["version"]
        )

        async def work(session: AsyncClientSession) -> Any:
            await self.tasks.insert_one(doc, session=session)
            await self.events.insert_one(_event_doc(event), session=session)
            if dispatch_due_at is not None:
                await self.outbox.insert_one(
                    {"_id": doc["_id"], "name": doc["name"], "due_at": dispatch_due_at},
                    session=session,
                )
            if parent_id is not None:
                await self._touch(parent_id, {"$push": {"child_ids": doc["_id"]}}, session=session)
            return None

        await self._transaction(work)

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

    async def children(self, parent_id: str) -> list[Doc]:
        """The child tasks of a task, oldest first."""
        cursor = self.tasks.find({"parent_id": parent_id}).sort("_id", ASCENDING)
        return [doc async for doc in cursor]

    async def history(self, task_id: str) -> list[Doc]:
        """The state changes of a task, oldest first."""
        cursor = self.events.find({"task_id": task_id}, {"_id": 0}).sort("version", ASCENDING)
        return [doc async for doc in cursor]

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
        query, update = transition_write(
            task_id, sources, target, at=at, fields=fields, guard=guard
        )

        async def work(session: AsyncClientSession) -> Any:
            # BEFORE, so that the event names the state this change replaced; the update only
            # sets fields and bumps the version, so the state after it is derived exactly.
            before = await self.tasks.find_one_and_update(
                query, update, return_document=ReturnDocument.BEFORE, session=session
            )
            if before is None:
                return None
            doc = {**before, **update["$set"], "version": before["version"] + 1}
            event = TaskStateChanged(
                task_id=task_id,
                source=TaskState(before["state"]),
                target=target,
                version=doc["version"],
                worker=worker,
                reason=reason,
                at=at,
            )
            await self.events.insert_one(_event_doc(event), session=session)
            return doc

        changed: Doc | None = await self._transaction(work)
        return changed

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
        """The broker confirmed the task's command: the relay need not publish it."""
        await self.outbox.delete_one({"_id": task_id})

    async def due_dispatches(self, now: datetime, limit: int = 100) -> list[Doc]:
        """Outbox entries whose command should have been confirmed by `now`."""
        cursor = self.outbox.find({"due_at": {"$lte": now}}).sort("due_at", ASCENDING).limit(limit)
        return [doc async for doc in cursor]

    async def release(
        self, task_id: str, run_id: str, attempt: Doc, *, dispatch_due_at: datetime
    ) -> Doc | None:
        """Take a running task back from run `run_id` so that another run may claim it.

        The task stays `running` (the lifecycle has no way back to `waiting`), its run is
        cleared, `attempt` is added to its attempts, and an outbox entry makes sure its
        command is published again. None if the run no longer held it.
        """

        async def work(session: AsyncClientSession) -> Any:
            doc = await self.tasks.find_one_and_update(
                {"_id": task_id, "run.id": run_id, "state": TaskState.RUNNING.value},
                _with_version_bump(
                    {
                        "$set": {"run": {"id": None, "released": attempt["outcome"]}},
                        "$push": {"attempts": attempt},
                    }
                ),
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            if doc is None:
                return None
            await self.outbox.replace_one(
                {"_id": task_id},
                {"_id": task_id, "name": doc["name"], "due_at": dispatch_due_at},
                upsert=True,
                session=session,
            )
            return doc

        released: Doc | None = await self._transaction(work)
        return released

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

        async def work(session: AsyncClientSession) -> Any:
            await self.outbox.delete_one({"_id": task_id}, session=session)
            await self.tasks.delete_one(
                {"_id": task_id, "state": TaskState.WAITING.value}, session=session
            )
            await self.events.delete_many({"task_id": task_id}, session=session)
            if parent_id is not None:
                await self._touch(parent_id, {"$pull": {"child_ids": task_id}}, session=session)
            return None

        await self._transaction(work)

    async def delete_finished(self, task_id: str) -> bool:
        """Delete a finished task and its events; False if it is not there or not finished."""
        final = [s.value for s in FINAL_STATES]

        async def work(session: AsyncClientSession) -> Any:
            result = await self.tasks.delete_one(
                {"_id": task_id, "state": {"$in": final}}, session=session
            )
            if result.deleted_count == 0:
                return False
            await self.events.delete_many({"task_id": task_id}, session=session)
            return True

        deleted: bool = await self._transaction(work)
        return deleted

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

            deleted += await self._transaction(functools.partial(self._delete_batch, query, ids))

    async def _delete_batch(self, query: Doc, ids: list[str], session: AsyncClientSession) -> int:
        result = await self.tasks.delete_many({**query, "_id": {"$in": ids}}, session=session)
        await self.events.delete_many({"task_id": {"$in": ids}}, session=session)
        return result.deleted_count

    async def _transaction(self, work: Callable[[AsyncClientSession], Awaitable[Any]]) -> Any:
        """Run `work` in a transaction, retried as MongoDB advises on transient errors."""
        tries = 0

        async def counted(session: AsyncClientSession) -> Any:
            nonlocal tries
            tries += 1
            if tries > 1:
                name = getattr(work, "__qualname__", work)
                log.warning("transaction retry %d of %s", tries, name)
            return await work(session)

        async with self.client.start_session() as session:
            return await session.with_transaction(counted)

    async def _touch(
        self, task_id: str, update: Doc, *, session: AsyncClientSession | None = None
    ) -> None:
        await self.tasks.update_one({"_id": task_id}, _with_version_bump(update), session=session)


def _with_version_bump(update: Doc) -> Doc:
    full = dict(update)
    full["$inc"] = {**full.get("$inc", {}), "version": 1}
    full["$set"] = {**full.get("$set", {}), "updated_at": utcnow()}
    return full


def _event_doc(event: TaskStateChanged) -> Doc:
    doc = event.model_dump(mode="python")
    doc["_id"] = doc.pop("message_id")
    return doc
