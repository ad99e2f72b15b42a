"""Task documents: reading them as `StoredTask`s, and making the changes `shared/runs.py` asks for.

Every change of a task is one atomic single-document write (a compare-and-set). No multi-document
transaction is used: on SecantusDB a plain write that meets an open transaction's write retries
inside the server until that transaction ends, and under load that wait never ended. So what must
change together lives in the task document itself: its state and phase, its run, its attempts,
its `history` (each state change appended by the write that makes it), and `dispatch_due_at`,
the outbox mark that makes the relay publish a command the broker never confirmed.

Writes are what a task costs here (each statement is a commit, and with --sync-on-commit an
fsync), so a task costs as few as its guarantees need: one insert, one claim, one end, and the
clearing of its outbox mark. The claim clears the mark too: a claim proves that the command was
delivered, and when it comes first (the usual case) the batched clearing later finds nothing to
change, which costs the server a quarter of a change (0.2 against 0.9 ms, measured). Tasks
handled at the same time share their writes (grouping.py): inserts one `insert_many`, marks one
`update_many` (dispatch_marks.py), and changes of a known version of the same kind one
`update_many` each, each still a compare-and-set per task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from shared.clock import utcnow
from shared.lifecycle import ACTIVE_STATES, FINAL_STATES, Phase, TaskState
from shared.records import HistoryEntry, StoredTask, implied_phase
from shared.store.change import Change, stored
from shared.store.dispatch_marks import MARK, DispatchMarks
from shared.store.documents import Doc
from shared.store.errors import ResourcesTaken
from shared.store.grouping import GroupedWrite, SharedInserts, SharedReads, SharedWrites
from shared.store.reservations import HOLDS, ReservationStore, SharedHolderReads
from shared.topology import RESERVATIONS
from shared.tracing import db_write

log = logging.getLogger(__name__)

_ACTIVE = sorted(state.value for state in ACTIVE_STATES)
#: Task ids per `$in` query.
IDS_PER_QUERY = 1000
_FINAL = sorted(state.value for state in FINAL_STATES)


@dataclass(frozen=True)
class DueDispatch:
    """A task whose command the relay should publish (again): its outbox mark is due."""

    id: str
    name: str
    state: TaskState
    phase: Phase
    priority: int = 0
    #: Whether it holds its resources by key (it must look at their queues before it runs).
    holds: bool = False


def document(
    task: StoredTask, dispatch_due_at: datetime | None = None, *, hold: bool = False
) -> Doc:
    """A task as inserted: with its outbox mark if given; with `hold`, holding its resources
    by key (`holds`, see `shared/store/reservations.py`).

    Fields a task does not have yet are left out rather than stored empty: `finished_at`
    (its index is sparse), `parent_id` for a task with no parent, `question` and `answers`
    before it asks anything: a smaller document is less for the server to write and diff.
    """
    doc: Doc = stored(task)
    for sparse in (
        "finished_at",
        "parent_id",
        "join_result",
        "question",
        "waiting_for",
        "run_at",
        MARK,
    ):
        if doc.get(sparse) is None:
            doc.pop(sparse, None)
    for empty in ("answers", "reservations", "priority"):
        if not doc.get(empty):
            doc.pop(empty, None)
    if task.ui is not None:
        doc["ui"] = task.ui.model_dump(exclude_none=True)
    if dispatch_due_at is not None:
        doc[MARK] = dispatch_due_at
    if hold and (keys := task.exclusive_resources()):
        doc[HOLDS] = keys
    return doc


def _taken(exc: DuplicateKeyError) -> ResourcesTaken | None:
    """The error of an insert that failed on a resource held by another task (None: it failed
    on something else, a task id already stored, say)."""
    details = exc.details or {}
    key = details.get("keyValue") or details.get("keyPattern") or {}
    if HOLDS not in key and f"{HOLDS}_1" not in str(details.get("errmsg", exc)):
        return None
    value = key.get(HOLDS) if isinstance(key, dict) else None
    return ResourcesTaken(value if isinstance(value, str) else None)


@contextlib.contextmanager
def _keys_taken_as_resources() -> Iterator[None]:
    """A write that fails on the `holds` unique index raises `ResourcesTaken`; any other
    duplicate key goes on as it was."""
    try:
        yield
    except DuplicateKeyError as exc:
        taken = _taken(exc)
        if taken is None:
            raise
        raise taken from exc


def read(doc: Doc) -> StoredTask | None:
    """The typed task of a document, or None (logged) for one that does not fit the model: one
    odd document must not fail a whole listing."""
    try:
        return StoredTask.model_validate(doc)
    except ValidationError as exc:
        log.error("task document %r cannot be read: %s", doc.get("_id"), exc)
        return None


class TaskStore:
    """The `tasks` collection."""

    def __init__(self, collection: AsyncCollection[Doc], *, mark_hold_s: float = 0.05) -> None:
        #: The raw collection: for the store's own modules, tests and benchmarks only.
        self.collection = collection
        self.marks = DispatchMarks(collection, hold_s=mark_hold_s)
        self.shared_writes = SharedWrites(collection)
        self.shared_reads = SharedReads(collection)
        self.shared_inserts = SharedInserts(collection)
        self.shared_holders = SharedHolderReads(collection)
        #: The resources' queues, which the tasks' changes keep (`shared/runs.py`).
        self.reservations = ReservationStore(collection.database[RESERVATIONS])

    async def close(self) -> None:
        """Send what is pending in the shared commands (outbox marks included)."""
        await self.marks.close()
        await self.shared_writes.close()
        await self.shared_reads.close()
        await self.shared_inserts.close()
        await self.shared_holders.close()
        await self.reservations.close()

    # --- reads ----------------------------------------------------------------------------

    async def get(self, task_id: str) -> StoredTask | None:
        """The stored task, or None."""
        doc = await self.collection.find_one({"_id": task_id})
        return None if doc is None else read(doc)

    async def get_shared(self, task_id: str) -> StoredTask | None:
        """`get`, sharing its round trip with other tasks' reads (`SharedReads`)."""
        doc = await self.shared_reads.get(task_id)
        return None if doc is None else read(doc)

    async def _find(
        self, query: Doc, *, sort: list[tuple[str, int]] | None = None, limit: int = 0
    ) -> list[StoredTask]:
        """The readable tasks matching `query`."""
        cursor = self.collection.find(query)
        if sort:
            cursor = cursor.sort(sort)
        if limit:
            cursor = cursor.limit(limit)
        return [task async for doc in cursor if (task := read(doc)) is not None]

    async def page(
        self,
        *,
        owner: str | None,
        states: Iterable[TaskState] | None,
        name: str | None,
        limit: int,
        before: str | None,
    ) -> list[StoredTask]:
        """Up to `limit` tasks, newest first, older than the task id `before` if given; a
        document that cannot be read is left out (and logged)."""
        query: Doc = {}
        if owner is not None:
            query["owner"] = owner
        if states is not None:
            query["state"] = {"$in": sorted(s.value for s in states)}
        if name is not None:
            query["name"] = name
        if before is not None:
            query["_id"] = {"$lt": before}
        return [task async for task in self._newest_first(query, limit)]

    async def of_types(self, owner: str, names: Iterable[str]) -> list[StoredTask]:
        """Every task of `owner` of one of the task types `names`, oldest first."""
        query = {"owner": owner, "name": {"$in": sorted(names)}}
        return await self._find(query, sort=[("_id", ASCENDING)])

    async def of_ids(self, task_ids: Iterable[str], owner: str | None) -> AsyncIterator[StoredTask]:
        """The readable tasks of `task_ids` (of `owner`'s, unless None), in batches of ids."""
        wanted = list(task_ids)
        for start in range(0, len(wanted), IDS_PER_QUERY):
            query: Doc = {"_id": {"$in": wanted[start : start + IDS_PER_QUERY]}}
            if owner is not None:
                query["owner"] = owner
            async for doc in self.collection.find(query):
                if (task := read(doc)) is not None:
                    yield task

    async def changed_since(
        self, owner: str | None, since: datetime, *, oldest_first: bool = False
    ) -> AsyncIterator[StoredTask]:
        """The readable tasks (of `owner`'s, unless None) changed at or after `since`."""
        query: Doc = {"updated_at": {"$gte": since}, **_of(owner)}
        cursor = self.collection.find(query)
        if oldest_first:
            cursor = cursor.sort("updated_at", ASCENDING)
        async for doc in cursor:
            if (task := read(doc)) is not None:
                yield task

    async def latest(
        self, owner: str | None, states: Iterable[TaskState], limit: int = 0
    ) -> AsyncIterator[StoredTask]:
        """The readable tasks (of `owner`'s, unless None) in `states`, newest first; at most
        `limit` of them (0: all)."""
        query: Doc = {"state": {"$in": sorted(s.value for s in states)}, **_of(owner)}
        async for task in self._newest_first(query, limit):
            yield task

    async def _newest_first(self, query: Doc, limit: int) -> AsyncIterator[StoredTask]:
        """The readable tasks matching `query`, newest first; at most `limit` (0: all).

        An odd document is skipped (`read` logs it) and reading goes on past it, from the id of
        the last document read: a page that asks for n tasks gets n when there are n readable
        ones. Were the odd one counted against the database's limit, a page holding it would
        come back short, and a caller that takes a short page for the last one (the listing's
        `next`) would never reach the tasks older than it.
        """
        wanted = limit
        while True:
            asked = wanted
            cursor = self.collection.find(query).sort("_id", DESCENDING)
            if asked:
                cursor = cursor.limit(asked)
            raw = 0
            last_id: Any = None
            async for doc in cursor:
                raw += 1
                last_id = doc["_id"]
                if (task := read(doc)) is not None:
                    wanted -= 1
                    yield task
            if not asked or wanted == 0 or raw < asked:  # all read, enough, or no more
                return
            # Every document read so far is newer than the last one (and than `before`).
            query = {**query, "_id": {"$lt": last_id}}

    async def visible_ids(self, task_ids: list[str], owner: str) -> set[str]:
        """Those of `task_ids` whose task belongs to `owner`."""
        cursor = self.collection.find({"_id": {"$in": task_ids}, "owner": owner}, {"_id": 1})
        return {doc["_id"] async for doc in cursor}

    async def children(self, parent: StoredTask) -> list[StoredTask]:
        """The child tasks of `parent` (as read: a child links itself to its parent before it
        is stored, so they are all in its `child_ids`), oldest first."""
        if not parent.child_ids:
            return []
        return await self._find({"_id": {"$in": parent.child_ids}}, sort=[("_id", ASCENDING)])

    async def history(self, task_id: str) -> list[HistoryEntry]:
        """The state changes of a task, oldest first, from the task itself (always complete)."""
        doc = await self.collection.find_one({"_id": task_id}, {"history": 1})
        return [HistoryEntry.model_validate(e) for e in (doc or {}).get("history") or []]

    async def due_dispatches(self, now: datetime, limit: int = 100) -> list[DueDispatch]:
        """Tasks whose command should have been confirmed by `now`, the most overdue first."""
        cursor = (
            self.collection.find(
                {MARK: {"$lte": now}},
                {
                    "name": 1,
                    "state": 1,
                    "phase": 1,
                    "run": 1,
                    "awaiting_children": 1,
                    "priority": 1,
                    HOLDS: 1,
                },
            )
            .sort(MARK, ASCENDING)
            .limit(limit)
        )
        return [
            DueDispatch(
                doc["_id"],
                doc["name"],
                TaskState(doc["state"]),
                Phase(doc.get("phase") or implied_phase(doc)),
                int(doc.get("priority") or 0),
                bool(doc.get(HOLDS)),
            )
            async for doc in cursor
        ]

    async def held_without_lease(
        self, live_workers: Iterable[str], claimed_before: datetime, limit: int = 100
    ) -> list[StoredTask]:
        """Active tasks held by a run whose worker is not among `live_workers` (its lease
        expired, or it never had one), claimed before `claimed_before` (no claim younger than
        the look at who is live)."""
        query = {
            "state": {"$in": _ACTIVE},
            "phase": Phase.HELD.value,
            "run.worker": {"$nin": sorted(live_workers)},
            "worker.last_heartbeat": {"$lt": claimed_before},
        }
        return await self._find(query, limit=limit)

    async def blocked(self, updated_before: datetime, limit: int = 100) -> list[StoredTask]:
        """Tasks waiting for a resource that have not changed since `updated_before`."""
        query = {
            "state": TaskState.WAITING.value,
            "phase": Phase.BLOCKED.value,
            "updated_at": {"$lt": updated_before},
        }
        return await self._find(query, limit=limit)

    async def due_scheduled(self, now: datetime, limit: int = 100) -> list[str]:
        """The ids of scheduled tasks whose time has come, the earliest first."""
        cursor = (
            self.collection.find({MARK: {"$lte": now}, "phase": Phase.SCHEDULED.value}, {"_id": 1})
            .sort(MARK, ASCENDING)
            .limit(limit)
        )
        return [doc["_id"] async for doc in cursor]

    async def held_by(self, worker: str, limit: int = 100) -> list[StoredTask]:
        """Active tasks held by a run of `worker` (by name)."""
        query = {"state": {"$in": _ACTIVE}, "phase": Phase.HELD.value, "run.worker": worker}
        return await self._find(query, limit=limit)

    async def awaiting_children(
        self, updated_before: datetime, limit: int = 100
    ) -> list[StoredTask]:
        """Tasks awaiting their children that have not changed since `updated_before`."""
        query = {
            "state": {"$in": _ACTIVE},
            "phase": Phase.AWAITING_CHILDREN.value,
            "updated_at": {"$lt": updated_before},
        }
        return await self._find(query, limit=limit)

    async def unanswered(self, now: datetime, limit: int = 100) -> list[StoredTask]:
        """Tasks waiting for an answer that nobody will give in time: their question's deadline
        is past, or they are being canceled (a cancel that stopped between its two steps)."""
        # By the state index: a task waiting for an answer is started (running or canceling),
        # and those are few beside the waiting and the finished.
        due = await self._find(
            {
                "state": {"$in": _ACTIVE},
                "phase": Phase.AWAITING_ANSWER.value,
                "question.deadline": {"$lte": now},
            },
            limit=limit,
        )
        canceling = await self._find(
            {"state": TaskState.CANCELING.value, "phase": Phase.AWAITING_ANSWER.value},
            limit=limit,
        )
        seen = {task.id for task in due}
        return due + [task for task in canceling if task.id not in seen]

    # --- writes ---------------------------------------------------------------------------

    @db_write("insert")
    async def insert(self, task: StoredTask, *, dispatch_due_at: datetime | None = None) -> None:
        """Store a new task; with `dispatch_due_at`, it carries its outbox mark: if its command
        is not confirmed (and the mark removed) by then, the relay publishes it. A child task is
        linked to its parent first, so that its parent knows every child stored (a link to one
        never stored, its submitter having died between, finds nothing: it never runs)."""
        if task.parent_id is not None:
            await self._touch(task.parent_id, {"$push": {"child_ids": task.id}})
        await self.shared_inserts.insert(document(task, dispatch_due_at))

    @db_write("insert")
    async def insert_holding(self, task: StoredTask, *, dispatch_due_at: datetime) -> None:
        """Store a new top-level task holding its exclusive resources by key, with its outbox
        mark; raises `ResourcesTaken` (and stores nothing) if another task holds one of them."""
        with _keys_taken_as_resources():
            await self.shared_inserts.insert(document(task, dispatch_due_at, hold=True))

    async def holders(self, resources: list[str], besides: str) -> dict[str, str]:
        """Which task, other than `besides`, holds each of `resources` by key (those held); the
        read shared with others' at the same time."""
        found = await asyncio.gather(*(self.shared_holders.holder(r) for r in resources))
        return {
            resource: holder
            for resource, holder in zip(resources, found, strict=True)
            if holder is not None and holder != besides
        }

    @db_write("insert")
    async def insert_many(self, tasks: list[StoredTask], *, dispatch_due_at: datetime) -> None:
        """Store new top-level tasks in one write, each with its outbox mark."""
        if tasks:
            docs = [document(task, dispatch_due_at) for task in tasks]
            await self.collection.insert_many(docs, ordered=False)

    @db_write("update")
    async def apply(self, task_id: str, change: Change) -> StoredTask | None:
        """Make `change` if the task is still where it may start: the task after it (or a later
        state of it, if another writer came in between), or None if it was not.

        Two commands instead of one findAndModify, because on SecantusDB a findAndModify costs
        about four times an update plus a read (6.6 ms against 1.8 + 0.7 ms, measured).
        """
        if not await self.apply_blind(task_id, change):
            return None
        return await self.get(task_id)

    @db_write("update")
    async def apply_blind(self, task_id: str, change: Change) -> bool:
        """Make `change` if the task is still where it may start; whether it was made. Raises
        `ResourcesTaken` for a change that takes resources by key (`holds`) held by another."""
        query, update = change.compare_and_set(task_id, utcnow())
        with _keys_taken_as_resources():
            return (await self.collection.update_one(query, update)).matched_count > 0

    @db_write("update")
    async def apply_then_state(self, task_id: str, change: Change) -> TaskState | None:
        """`apply`, reading back only the state: None if the change was not made."""
        if not await self.apply_blind(task_id, change):
            return None
        doc = await self.collection.find_one({"_id": task_id}, {"state": 1})
        return None if doc is None else TaskState(doc["state"])

    @db_write("update")
    async def apply_at_version(
        self,
        task_id: str,
        source: TaskState,
        version: int,
        change_for: Callable[[str, datetime], Change],
    ) -> str | None:
        """Make a change of a task known to be at `version` (in `source`), in one statement with
        the same change of other tasks: the write id the batch shares, or None if the task was
        no longer at that version. `change_for(write_id, at)` describes the change at the
        batch's time (a claim names its run by the write id)."""
        probe = change_for("", utcnow())
        return await self.shared_writes.apply(
            GroupedWrite(
                task_id,
                probe.version_filter(version),
                lambda at, write_id: change_for(write_id, at).at_version(source, version, at),
            )
        )

    def dispatched(self, task_id: str) -> None:
        """The broker confirmed the task's command: its outbox mark will be cleared, unless a
        claim did first (see `DispatchMarks`; until then the relay would at worst publish it a
        second time, which a claim makes harmless)."""
        self.marks.clear(task_id)

    @db_write("delete")
    async def discard_unqueued(self, task_ids: list[str], *, parent_id: str | None = None) -> None:
        """Remove waiting tasks whose commands the broker did not take (and their links from
        `parent_id`, if they are its children)."""
        await self.collection.delete_many(
            {"_id": {"$in": task_ids}, "state": TaskState.WAITING.value}
        )
        if parent_id is not None:
            await self._touch(parent_id, {"$pull": {"child_ids": {"$in": task_ids}}})

    @db_write("delete")
    async def delete_finished(self, task_id: str) -> bool:
        """Delete a finished task; False if it is not there or not finished."""
        result = await self.collection.delete_one({"_id": task_id, "state": {"$in": _FINAL}})
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
            ids = [doc["_id"] async for doc in self.collection.find(query, {"_id": 1}).limit(1000)]
            if not ids:
                return deleted
            result = await self.collection.delete_many({**query, "_id": {"$in": ids}})
            deleted += result.deleted_count

    @db_write("update")
    async def _touch(self, task_id: str, update: Doc) -> None:
        full = dict(update)
        full["$inc"] = {**full.get("$inc", {}), "version": 1}
        full["$set"] = {**full.get("$set", {}), "updated_at": utcnow()}
        await self.collection.update_one({"_id": task_id}, full)


def _of(owner: str | None) -> Doc:
    """The query part that keeps to `owner`'s tasks (None: every task)."""
    return {} if owner is None else {"owner": owner}
