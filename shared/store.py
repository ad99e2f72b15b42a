"""MongoDB access for tasks: the only module that writes task documents.

Every change of a task is one atomic single-document write (a compare-and-set). No multi-document
transaction is used: on SecantusDB a plain write that meets an open transaction's write retries
inside the server until that transaction ends, and under load that wait never ended. So what must
change together lives in the task document itself: its state, its run, its attempts, and
`dispatch_due_at`, the outbox mark that makes the relay publish a command the broker never
confirmed, and `history`, its state changes, each appended by the write that makes it.

Writes are what a task costs here (each statement is a commit, and with --sync-on-commit an
fsync), so a task costs as few as its guarantees need: one insert, one claim, one end, and the
clearing of its outbox mark. The claim clears the mark too: a claim proves that the command was
delivered, and when it comes first (the usual case) the batched clearing later finds nothing to
change, which costs the server a quarter of a change (0.2 against 0.9 ms, measured). Tasks
handled at the same time share their writes: inserts one `insert_many`, marks one `update_many`
(`DispatchMarks`), and claims, and ends of the same outcome, one `update_many` each
(`SharedWrites`), each still a compare-and-set per task. (A separate `task_events` log of every
change was written once and never read; the task's own history is that log.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from shared.batching import (
    MARK,
    DispatchMarks,
    GroupedWrite,
    SharedInserts,
    SharedReads,
    SharedWrites,
)
from shared.ids import new_task_id, task_id_floor
from shared.lifecycle import (
    FINAL_STATES,
    FIRST_VERSION,
    TaskState,
    known_filter,
    known_transition_write,
    transition_write,
    utcnow,
)
from shared.messages import TaskStateChanged
from shared.settings import Settings
from shared.topology import IDEMPOTENCY_KEYS, TASKS, WORKERS
from shared.tracing import db_write

Doc = dict[str, Any]

log = logging.getLogger(__name__)

#: Tries at replacing an index that other processes are replacing at the same time.
_INDEX_ATTEMPTS = 10
#: How an update clears the outbox mark.
CLEAR_MARK: Doc = {"$unset": {MARK: ""}}


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
        self.workers = self.db[WORKERS]
        self.idempotency = self.db[IDEMPOTENCY_KEYS]
        self.marks = DispatchMarks(self.tasks)
        #: Writes and reads shared by tasks (see shared/batching.py): `insert`, `changed` and
        #: `get_shared` use them, for callers that handle many tasks at once.
        self.shared_writes = SharedWrites(self.tasks)
        self.shared_reads = SharedReads(self.tasks)
        self.shared_inserts = SharedInserts(self.tasks)

    async def ensure_indexes(self) -> None:
        """Create the indexes the queries below rely on (idempotent).

        SecantusDB rewrites every index entry of a task at each of its changes, so each index
        costs every change, but a sparse one costs little for a task that lacks its field.
        Hence tasks store no `parent_id` unless they have a parent and no `finished_at` until
        they finish, and those two indexes are sparse: a claim of a task with the five indexes
        took the server 0.89 ms instead of 1.0 (measured on batches of ten).
        """
        await self.tasks.create_index([("owner", ASCENDING), ("_id", DESCENDING)])
        await self.tasks.create_index([("state", ASCENDING), ("_id", DESCENDING)])
        await self._index(self.tasks, "parent_id", sparse=True)
        # No index on the heartbeat: the liveness check reads running tasks by state, and they
        # are few (the workers' slots).
        await self._index(self.tasks, MARK, sparse=True)
        # Finished tasks are kept for `retention_s`, then removed by MongoDB.
        await self._index(
            self.tasks, "finished_at", sparse=True, expireAfterSeconds=self.retention_s
        )
        await self._index(self.idempotency, "created_at", expireAfterSeconds=self.idempotency_ttl_s)

    async def _index(self, collection: Any, field: str, **options: Any) -> None:
        """An ascending index on `field` with `options`, replacing one with other options (a
        database from an earlier version, or a changed retention setting).

        A change of TTL alone is a `collMod`, with no rebuild; any other change drops the index
        and builds it again. The api and the workers may do this at once when they start, so
        each step may find the index already changed by another process: then it looks again.
        """
        keys = [(field, ASCENDING)]
        for _ in range(_INDEX_ATTEMPTS):
            try:
                await collection.create_index(keys, **options)
                return
            except OperationFailure as exc:
                if exc.code not in (85, 86):  # IndexOptionsConflict, IndexKeySpecsConflict
                    raise
            indexes = (await collection.index_information()).values()
            existing: Doc = next((info for info in indexes if info["key"] == keys), {})
            ttl = options.get("expireAfterSeconds")
            try:
                if ttl is not None and bool(existing.get("sparse")) == bool(options.get("sparse")):
                    keyed = {"keyPattern": {field: 1}, "expireAfterSeconds": ttl}
                    await self.db.command("collMod", collection.name, index=keyed)
                else:
                    await collection.drop_index(keys)
            except OperationFailure as exc:
                if exc.code != 27:  # IndexNotFound: another process dropped it meanwhile
                    raise
        raise RuntimeError(f"the index on {collection.name}.{field} kept changing; not replaced")

    async def close(self) -> None:
        """Clear the outbox marks still pending, then close the client's connections."""
        await self.marks.close()
        await self.shared_writes.close()
        await self.shared_reads.close()
        await self.shared_inserts.close()
        await self.client.close()

    async def _update_then_read(
        self, query: Doc, update: Doc | list[Doc], projection: Doc | None = None
    ) -> Doc | None:
        """Apply a compare-and-set `update`; the task after it (a later state, if another
        writer came in between), or None if `query` matched nothing.

        Two commands instead of one findAndModify, because on SecantusDB a findAndModify costs
        about four times an update plus a read (6.6 ms against 1.8 + 0.7 ms, measured).
        """
        result = await self.tasks.update_one(query, update)
        if result.matched_count == 0:
            return None
        return await self.tasks.find_one({"_id": query["_id"]}, projection)

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        await self.db.command("ping")

    @db_write("insert")
    async def insert(
        self, doc: Doc, *, parent_id: str | None = None, dispatch_due_at: datetime | None = None
    ) -> None:
        """Store a new task and its first event; with `parent_id`, also link it to its parent.

        With `dispatch_due_at`, the task carries its outbox mark: if its command is not
        confirmed (and the mark removed) by then, the relay publishes it.
        """
        await self.shared_inserts.insert(stored_form(doc, dispatch_due_at))
        if parent_id is not None:
            await self._touch(parent_id, {"$push": {"child_ids": doc["_id"]}})

    @db_write("insert")
    async def insert_many(self, docs: list[Doc], *, dispatch_due_at: datetime) -> None:
        """Store new top-level tasks in one write, each with its first event and outbox mark."""
        if docs:
            stored = [stored_form(doc, dispatch_due_at) for doc in docs]
            await self.tasks.insert_many(stored, ordered=False)

    @db_write("delete")
    async def discard_unqueued_many(self, task_ids: list[str]) -> None:
        """Remove waiting tasks whose commands the broker did not take (no parent links)."""
        await self.tasks.delete_many({"_id": {"$in": task_ids}, "state": TaskState.WAITING.value})

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

    async def submitted_since(self, owner: str, since: datetime, limit: int) -> int:
        """How many top-level tasks `owner` created since `since` (counting up to `limit`)."""
        return await self.tasks.count_documents(_submitted_since(owner, since), limit=limit)

    async def first_submitted_since(self, owner: str, since: datetime) -> datetime | None:
        """When the first top-level task `owner` created since `since` was created."""
        first = await self.tasks.find_one(
            _submitted_since(owner, since), {"created_at": 1}, sort=[("_id", ASCENDING)]
        )
        return None if first is None else first["created_at"]

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

    @db_write("update")
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

        Returns the task after the change (or a later state of it), or None when it was no
        longer in a source state (or the guard did not match): someone else changed it first.
        """
        query, pipeline = transition_write(
            task_id,
            sources,
            target,
            at=utcnow(),
            fields=fields,
            guard=guard,
            worker=worker,
            reason=reason,
        )
        return await self._update_then_read(query, pipeline)

    @db_write("update")
    async def claim(self, task_id: str, worker: str) -> str | None:
        """Start a new run of a waiting task on `worker`: the run's id, or None when the task
        was not waiting (another delivery claimed it, it was canceled, or it was handed back).

        A waiting task is at its first version unless something changed it while it waited,
        so the claim is first tried as a known-version write that the claims of other tasks
        share (one statement; the batch's write id is the run's id), then, if that missed,
        as the compare-and-set that reads the state from the task.
        """
        query = known_filter(FIRST_VERSION)
        run_id = await self.shared_writes.apply(
            GroupedWrite(task_id, query, lambda at, run_id: first_claim(worker, run_id, at))
        )
        if run_id is not None:
            return run_id
        run_id = new_task_id()
        at = utcnow()
        query, pipeline = transition_write(
            task_id,
            [TaskState.WAITING],
            TaskState.RUNNING,
            at=at,
            fields=_first_run_fields(worker, run_id, at),
            worker=worker,
        )
        result = await self.tasks.update_one(query, [*pipeline, {"$unset": MARK}])
        return run_id if result.matched_count else None

    @db_write("update")
    async def end_run(
        self,
        task_id: str,
        run_id: str,
        sources: Iterable[TaskState],
        target: TaskState,
        *,
        fields: Mapping[str, Any],
        worker: str,
        version: int | None = None,
    ) -> bool:
        """Move a task held by run `run_id` from one of `sources` to `target`; whether it moved.

        `version`, when the caller knows that the task is still `running` at that version (it
        wrote nothing since its claim), lets the write share a statement with other tasks' ends
        of the same outcome; otherwise, or if that missed, it is the compare-and-set that reads
        the state from the task.
        """
        guard = {"run.id": run_id}
        sources = set(sources)
        if version is not None and TaskState.RUNNING in sources and _plain(fields):

            def build(at: datetime, _write_id: str) -> Doc:
                return known_transition_write(
                    TaskState.RUNNING, version, target, at=at, fields=fields, worker=worker
                )

            # The run's id is part of the query, although the version implies it: a run ends
            # only a task it holds, even when its caller is wrong about the version. The ends
            # of tasks claimed together (one run id) with the same outcome share one statement.
            query = {**known_filter(version), **guard}
            if await self.shared_writes.apply(GroupedWrite(task_id, query, build)):
                return True
        query, pipeline = transition_write(
            task_id, sources, target, at=utcnow(), fields=fields, guard=guard, worker=worker
        )
        return (await self.tasks.update_one(query, pipeline)).matched_count > 0

    async def get_shared(self, task_id: str) -> Doc | None:
        """`get`, sharing its round trip with other tasks' reads (`SharedReads`)."""
        return await self.shared_reads.get(task_id)

    @db_write("update")
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
        return await self._update_then_read(query, _with_version_bump(update), projection)

    def dispatched(self, task_id: str) -> None:
        """The broker confirmed the task's command: its outbox mark will be cleared (in a batch
        with others, a few milliseconds later; until then the relay would at worst publish it a
        second time, which a claim makes harmless)."""
        self.marks.clear(task_id)

    async def due_dispatches(self, now: datetime, limit: int = 100) -> list[Doc]:
        """Tasks whose command should have been confirmed by `now`."""
        cursor = (
            self.tasks.find({MARK: {"$lte": now}}, {"name": 1, "state": 1, "run": 1})
            .sort(MARK, ASCENDING)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    @db_write("findAndModify")
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
                        MARK: dispatch_due_at,
                    },
                    "$push": {"attempts": attempt},
                }
            ),
            return_document=ReturnDocument.AFTER,
        )

    @db_write("findAndModify")
    async def claim_released(self, task_id: str, worker: str) -> tuple[Doc, str] | None:
        """Give a released running task to a new run on `worker`: the task and the run's id, or
        None if it is not released."""
        run_id = new_task_id()
        doc = await self.tasks.find_one_and_update(
            {"_id": task_id, "state": TaskState.RUNNING.value, "run.id": None},
            _with_version_bump(
                {
                    "$set": _claim_fields(worker, run_id, utcnow()),
                    "$inc": {"runs": 1},
                    **CLEAR_MARK,
                }
            ),
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else (doc, run_id)

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
        """Remove a task whose command the broker did not take, and its link from its parent."""
        await self.discard_unqueued_many([task_id])
        if parent_id is not None:
            await self._touch(parent_id, {"$pull": {"child_ids": task_id}})

    @db_write("delete")
    async def delete_finished(self, task_id: str) -> bool:
        """Delete a finished task; False if it is not there or not finished."""
        final = [s.value for s in FINAL_STATES]
        result = await self.tasks.delete_one({"_id": task_id, "state": {"$in": final}})
        return result.deleted_count != 0

    @db_write("delete")
    async def purge(
        self, *, owner: str | None, states: Iterable[TaskState], finished_before: datetime
    ) -> int:
        """Delete final-state tasks that finished before a time."""
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
            deleted += result.deleted_count

    @db_write("update")
    async def _touch(self, task_id: str, update: Doc) -> None:
        await self.tasks.update_one({"_id": task_id}, _with_version_bump(update))


def _submitted_since(owner: str, since: datetime) -> Doc:
    """The top-level tasks `owner` created since `since` (task ids sort by creation time)."""
    floor = task_id_floor(int(since.timestamp() * 1000))
    return {"owner": owner, "_id": {"$gte": floor}, "parent_id": None}


def stored_form(doc: Doc, dispatch_due_at: datetime | None) -> Doc:
    """A new task as inserted: with its first event and, if given, its outbox mark."""
    first = TaskStateChanged(
        task_id=doc["_id"], source=None, target=TaskState.WAITING, version=doc["version"]
    ).model_dump(mode="python", exclude={"message_id", "task_id"})
    stored = {**doc, "history": [first]}
    if dispatch_due_at is not None:
        stored[MARK] = dispatch_due_at
    return stored


def first_claim(worker: str, run_id: str, at: datetime) -> Doc:
    """The update of a task's first claim, for a task still as submitted (`known_filter(
    FIRST_VERSION)`): it starts run `run_id` on `worker` and clears the outbox mark."""
    update = known_transition_write(
        TaskState.WAITING,
        FIRST_VERSION,
        TaskState.RUNNING,
        at=at,
        fields=_first_run_fields(worker, run_id, at),
        worker=worker,
    )
    return {**update, **CLEAR_MARK}


def _first_run_fields(worker: str, run_id: str, at: datetime) -> Doc:
    return {**_claim_fields(worker, run_id, at), "runs": 1}


def _claim_fields(worker: str, run_id: str, at: datetime) -> Doc:
    """What a claim sets besides the state: who runs the task, and the run that holds it."""
    return {
        "worker": {"name": worker, "last_heartbeat": at, "missing": False},
        "run": {"id": run_id, "worker": worker},
    }


def _plain(value: Any) -> bool:
    """Whether `value` can be stored by a plain `$set`: no key starts with `$` or holds a dot
    (the pipeline form stores such values as literals)."""
    if isinstance(value, Mapping):
        return all(
            isinstance(k, str) and not k.startswith("$") and "." not in k and _plain(v)
            for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return all(_plain(item) for item in value)
    return True


def _with_version_bump(update: Doc) -> Doc:
    full = dict(update)
    full["$inc"] = {**full.get("$inc", {}), "version": 1}
    full["$set"] = {**full.get("$set", {}), "updated_at": utcnow()}
    return full
