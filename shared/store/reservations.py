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


class ReservationStore:
    """The `reservations` collection."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        #: The raw collection: for the store's own modules and tests only.
        self.collection = collection
        self.changes = SharedQueueChanges(collection)

    async def queue(self, resource: str) -> list[Entry]:
        """The queue of `resource`, first entry first."""
        return _entries(await self.collection.find_one({"_id": resource}))

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

    async def entries_older_than(self, cutoff: datetime) -> AsyncIterator[tuple[str, Entry]]:
        """Every (resource, entry) that entered before `cutoff`: for the janitor's check that
        no task in a final state, nor a task that was never stored, keeps a place."""
        cursor = self.collection.find({"entries.at": {"$lt": cutoff}})
        async for doc in cursor:
            for raw in doc.get("entries") or []:
                if raw.get("at") is not None and raw["at"] < cutoff:
                    yield doc["_id"], Entry.model_validate(raw)
