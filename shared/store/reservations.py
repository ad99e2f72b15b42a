"""The resources' queues: one document per resource, `{_id: resource, entries: [...]}`.

Each change of a queue is one atomic write of its one document: `enter` appends a task's entry
(once: an entry already there is left as it is), `leave` pulls it and answers with the queue as it
was just before, so the caller learns whose turn the leaving gave (`newly_granted`) from the one
write that gave it, and exactly one caller learns it. Who holds a resource follows from the order
of its entries (see `shared/reservations.py`), so no grant is stored and none can disagree with
the queue. No multi-document transaction: a task's resources are taken one after the other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from shared.reservations import Entry, Mode
from shared.tracing import db_write

Doc = dict[str, Any]


def _entries(doc: Doc | None) -> list[Entry]:
    return [Entry.model_validate(e) for e in (doc or {}).get("entries") or []]


class ReservationStore:
    """The `reservations` collection."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        #: The raw collection: for the store's own modules and tests only.
        self.collection = collection

    async def queue(self, resource: str) -> list[Entry]:
        """The queue of `resource`, first entry first."""
        return _entries(await self.collection.find_one({"_id": resource}))

    @db_write("update")
    async def enter(self, resource: str, task_id: str, mode: Mode, at: datetime) -> list[Entry]:
        """Append `task_id`'s entry to the queue of `resource` unless it is there already; the
        queue after."""
        entry = {"task": task_id, "mode": mode.value, "at": at}
        try:
            doc = await self.collection.find_one_and_update(
                {"_id": resource, "entries.task": {"$ne": task_id}},
                {"$push": {"entries": entry}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            # The queue exists and holds the entry already (the filter missed, the upsert
            # collided with the queue's id): it keeps its place.
            doc = await self.collection.find_one({"_id": resource})
        return _entries(doc)

    @db_write("update")
    async def leave(self, resource: str, task_id: str) -> list[Entry] | None:
        """Take `task_id`'s entry out of the queue of `resource`: the queue just before, or None
        if the entry was not there."""
        doc = await self.collection.find_one_and_update(
            {"_id": resource, "entries.task": task_id},
            {"$pull": {"entries": {"task": task_id}}},
            return_document=ReturnDocument.BEFORE,
        )
        return None if doc is None else _entries(doc)

    async def entries_older_than(self, cutoff: datetime) -> AsyncIterator[tuple[str, Entry]]:
        """Every (resource, entry) that entered before `cutoff`: for the janitor's check that
        no task in a final state, nor a task that was never stored, keeps a place."""
        cursor = self.collection.find({"entries.at": {"$lt": cutoff}})
        async for doc in cursor:
            for raw in doc.get("entries") or []:
                if raw.get("at") is not None and raw["at"] < cutoff:
                    yield doc["_id"], Entry.model_validate(raw)
