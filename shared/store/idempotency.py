"""Idempotency-Key records of `POST /tasks`: which key, with which body, made which task."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from shared.store.documents import Doc


@dataclass(frozen=True)
class KeyRecord:
    """One key of one owner: the digest of the body it came with, and its task once stored."""

    owner: str
    key: str
    digest: str
    created_at: datetime
    task_id: str | None = None


class IdempotencyKeys:
    """The `idempotency_keys` collection (records removed by a TTL index)."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def reserve(self, record: KeyRecord) -> KeyRecord | None:
        """Store a new key: None if stored, else the record that is already there."""
        while True:
            try:
                await self.collection.insert_one(_doc(record))
                return None
            except DuplicateKeyError:
                existing = await self.collection.find_one(_key(record))
            if existing is not None:
                return _record(existing)
            # It expired in between: a fresh start is right.

    async def take_over(self, old: KeyRecord, new: KeyRecord) -> bool:
        """Replace a record abandoned by a request that died half-way; False if another request
        took it first."""
        query = {**_key(old), "created_at": old.created_at}
        return await self.collection.find_one_and_replace(query, _doc(new)) is not None

    async def release(self, record: KeyRecord) -> None:
        """Forget a key whose request failed, so that the same key may be tried again."""
        await self.collection.delete_one({**_key(record), "created_at": record.created_at})

    async def complete(self, record: KeyRecord, task_id: str) -> None:
        """The key's task was stored and queued."""
        await self.collection.update_one(_key(record), {"$set": {"task_id": task_id}})


def _key(record: KeyRecord) -> Doc:
    return {"_id": {"owner": record.owner, "key": record.key}}


def _doc(record: KeyRecord) -> Doc:
    return {
        **_key(record),
        "digest": record.digest,
        "task_id": record.task_id,
        "created_at": record.created_at,
    }


def _record(doc: Doc) -> KeyRecord:
    return KeyRecord(
        owner=doc["_id"]["owner"],
        key=doc["_id"]["key"],
        digest=doc["digest"],
        created_at=doc["created_at"],
        task_id=doc.get("task_id"),
    )
