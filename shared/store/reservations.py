"""The resources' queues: one document per resource, `{_id: resource, entries: [...]}`.

Each change of a queue is one atomic update of its one document: `enter` appends a task's entry
(once: an entry already there is left as it is), `leave` pulls it. Who holds a resource follows
from the order of its entries (see `shared/reservations.py`), so no grant is stored and none can
disagree with the queue. No multi-document transaction: a task's resources are taken one after
the other.

Entering and leaving are what a reserved task costs beyond an unreserved one, so the changes
that many tasks make at the same time go together (group commit, as `grouping.py` does for the
tasks): one ordered `bulk_write` of every queue's updates, in the order they were asked for (so a
resource's queue keeps the order of its tasks' submissions), then one `find` of the queues they
touched. Each caller gets its queue as that read found it: never earlier than its own change,
perhaps later. That is enough, because what a caller does with it is idempotent: a task that
sees itself holding the resource holds it; a leaving task hands the turn to every task that holds
the resource now and waits for it (`Runs.take_turn`, a compare-and-set that one caller wins).

Most tasks never meet another on their resources, and for them the queues would be most of what a
reservation costs (an entering, a leaving, and a read after each). So a task whose resources are
all exclusive first takes them by key: it is stored with `holds`, the list of its resources,
under a unique index of the tasks, so the insert that stores it takes them or fails on a
resource another task holds (the database decides; no read before). The change that ends a task
removes its `holds` (`shared/store/change.py`), so no task in a final state holds anything. A
queue exists only where tasks met: those that found a resource taken queue as above, and a
holder by key and a queue's tasks keep out of each other's way by a write-then-read on each side
(`Runs.hold_by_key`, `Runs.enter_queues`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from pymongo import UpdateMany, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from shared.reservations import Entry, Mode
from shared.store.documents import Doc
from shared.store.grouping import DUPLICATE_KEY, SharedCommand
from shared.tracing import db_write

#: The field of a task that holds its resources by key: their names, under a unique index.
HOLDS = "holds"


def _entries(doc: Doc | None) -> list[Entry]:
    return [Entry.model_validate(e) for e in (doc or {}).get("entries") or []]


@dataclass(frozen=True)
class QueueChange:
    """One task entering or leaving one resource's queue."""

    resource: str
    task_id: str
    #: The mode it enters in; None: it leaves.
    mode: Mode | None = None
    at: datetime | None = None
    #: Whether entering creates the queue if there is none yet.
    upsert: bool = True

    def request(self) -> UpdateOne:
        """The update of the queue's document that enters the task (once); for an entering."""
        assert self.mode is not None, "a leave is sent with the leaves beside it (`_requests`)"
        entry = {"task": self.task_id, "mode": self.mode.value, "at": self.at}
        return UpdateOne(
            {"_id": self.resource, "entries.task": {"$ne": self.task_id}},
            {"$push": {"entries": entry}},
            upsert=self.upsert,
        )


class SharedQueueChanges(SharedCommand[QueueChange, list[Entry]]):
    """Queue changes of many tasks as one ordered `bulk_write` and one read of the queues."""

    async def change(self, change: QueueChange) -> list[Entry]:
        """Make `change`; the queue after it."""
        return await self._batcher.submit(change)

    async def _send(self, batch: list[tuple[QueueChange, asyncio.Future[list[Entry]]]]) -> None:
        changes = [change for change, _ in batch]
        while changes:
            changes = await self._write(changes)
        resources = list({change.resource for change, _ in batch})
        cursor = self._collection.find({"_id": {"$in": resources}})
        queues = {doc["_id"]: _entries(doc) async for doc in cursor}
        for change, future in batch:
            future.set_result(queues.get(change.resource, []))

    async def _write(self, changes: list[QueueChange]) -> list[QueueChange]:
        """Send `changes` in order; those to send again: from the one whose upsert collided
        with another's (an ordered bulk write stops there)."""
        requests, firsts = _requests(changes)
        try:
            await self._collection.bulk_write(requests, ordered=True)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if not errors or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            # Only an entering upsert collides (its filter missed on a queue that exists: the
            # entry is there already, or another upsert created the queue), and it is a request
            # of its own. That change goes again as a plain update (which misses if its entry is
            # there already), and those after it as they were.
            index = firsts[errors[0]["index"]]
            again = dataclasses.replace(changes[index], upsert=False)
            return [again, *changes[index + 1 :]]
        return []


def _requests(changes: list[QueueChange]) -> tuple[list[UpdateOne | UpdateMany], list[int]]:
    """The bulk write's requests for `changes`, and the index of each one's first change.

    Each entering is an update of its own (what it pushes is its own). Leaves next to each
    other are one statement: pulling the entries of all their tasks from all their queues,
    which pulls each task only where it is (on SecantusDB a statement costs about as much as
    the documents it changes)."""
    requests: list[UpdateOne | UpdateMany] = []
    firsts: list[int] = []
    index = 0
    while index < len(changes):
        if changes[index].mode is not None:
            requests.append(changes[index].request())
            firsts.append(index)
            index += 1
            continue
        end = index
        while end < len(changes) and changes[end].mode is None:
            end += 1
        leaving = changes[index:end]
        requests.append(
            UpdateMany(
                {"_id": {"$in": sorted({c.resource for c in leaving})}},
                {"$pull": {"entries": {"task": {"$in": sorted({c.task_id for c in leaving})}}}},
            )
        )
        firsts.append(index)
        index = end
    return requests, firsts


class SharedQueueReads(SharedCommand[str, list[Entry]]):
    """Reads of resources' queues, sent together as one `find`: a queue no task entered (the
    usual case) is no document at all, and reads as empty."""

    async def queue(self, resource: str) -> list[Entry]:
        """The queue of `resource` as it is now, first entry first."""
        return await self._batcher.submit(resource)

    async def _send(self, batch: list[tuple[str, asyncio.Future[list[Entry]]]]) -> None:
        resources = list({resource for resource, _ in batch})
        cursor = self._collection.find({"_id": {"$in": resources}})
        queues = {doc["_id"]: _entries(doc) async for doc in cursor}
        for resource, future in batch:
            future.set_result(queues.get(resource, []))


class SharedHolderReads(SharedCommand[str, str | None]):
    """Who holds each resource by key, for many callers as one `find` of the tasks: a task
    whose turn comes by a queue looks for a holder by key of each of its resources, and those
    looks of tasks in hand together go as one read."""

    async def holder(self, resource: str) -> str | None:
        """The task that holds `resource` by key now, or None."""
        return await self._batcher.submit(resource)

    async def _send(self, batch: list[tuple[str, asyncio.Future[str | None]]]) -> None:
        resources = list({resource for resource, _ in batch})
        # The filter names `holds` alone: with `_id` beside it SecantusDB scans the collection.
        cursor = self._collection.find({HOLDS: {"$in": resources}}, {HOLDS: 1})
        held: dict[str, str] = {}
        async for doc in cursor:
            for resource in doc.get(HOLDS) or []:
                held[resource] = doc["_id"]
        for resource, future in batch:
            future.set_result(held.get(resource))


class ReservationStore:
    """The `reservations` collection."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        #: The raw collection: for the store's own modules and tests only.
        self.collection = collection
        self.changes = SharedQueueChanges(collection)
        self.reads = SharedQueueReads(collection)

    async def queue(self, resource: str) -> list[Entry]:
        """The queue of `resource`, first entry first (its read shared with others' at the
        same time)."""
        return await self.reads.queue(resource)

    async def queues(self, resources: list[str]) -> dict[str, list[Entry]]:
        """The queues of `resources`, in one read with others' at the same time."""
        found = await asyncio.gather(*(self.reads.queue(resource) for resource in resources))
        return dict(zip(resources, found, strict=True))

    @db_write("update")
    async def enter(self, resource: str, task_id: str, mode: Mode, at: datetime) -> list[Entry]:
        """Append `task_id`'s entry to the queue of `resource` unless it is there already; the
        queue after (see the module's note on how much after)."""
        return await self.changes.change(QueueChange(resource, task_id, mode, at))

    @db_write("update")
    async def leave(self, resource: str, task_id: str) -> list[Entry]:
        """Take `task_id`'s entry out of the queue of `resource` (if it is there); the queue
        after."""
        return await self.changes.change(QueueChange(resource, task_id))

    async def close(self) -> None:
        """Send what is pending."""
        await self.changes.close()
        await self.reads.close()

    async def entries_older_than(self, cutoff: datetime) -> AsyncIterator[tuple[str, Entry]]:
        """Every (resource, entry) that entered before `cutoff`: for the janitor's check that
        no task in a final state, nor a task that was never stored, keeps a place."""
        cursor = self.collection.find({"entries.at": {"$lt": cutoff}})
        async for doc in cursor:
            for raw in doc.get("entries") or []:
                if raw.get("at") is not None and raw["at"] < cutoff:
                    yield doc["_id"], Entry.model_validate(raw)
