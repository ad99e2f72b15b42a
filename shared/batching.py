"""Database commands shared by many tasks: what a task costs is mostly round trips and commits.

A worker running many short tasks would send one update per claim and one per end; here the
writes that arrive within a couple of milliseconds of each other go as one `bulk_write`, and the
reads as one `find`. Each caller still gets its own answer: whether its compare-and-set applied,
its own document. The semantics of each write are unchanged (same filter, same update); only
the transport is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

Doc = dict[str, Any]
T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

#: Seconds a command waits for others to share its round trip; short next to a commit (~2 ms).
LINGER_S = 0.002
#: Most commands sent together.
MAX_BATCH = 200


class _Batcher(Generic[T, R]):
    """Collects items for `LINGER_S` (or `MAX_BATCH` of them), then runs `send` on them all;
    `send` answers each item's future."""

    def __init__(
        self, send: Callable[[list[tuple[T, asyncio.Future[R]]]], Coroutine[Any, Any, None]]
    ):
        self._send = send
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._pending) >= MAX_BATCH:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(LINGER_S, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.create_task(self._run(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            await self._send(batch)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)

    async def close(self) -> None:
        """Send what is pending and wait for every batch in flight."""
        self._flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


class SharedWrites:
    """Compare-and-set updates of several tasks sent as one unordered `bulk_write`.

    Each update also stamps a `write_id` of its own on the task. When the bulk write matched
    every update (the usual case) all applied; when it matched fewer, one `find` of the stamps
    tells each caller whether its own update is the one the task holds.
    """

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._collection = collection
        self._batcher: _Batcher[tuple[Doc, list[Doc], str], bool] = _Batcher(self._send)

    async def apply(self, query: Doc, pipeline: list[Doc]) -> bool:
        """Whether the update applied (its filter matched)."""
        stamp = uuid.uuid4().hex
        stamped = [*pipeline, {"$set": {"write_id": {"$literal": stamp}}}]
        return await self._batcher.submit((query, stamped, stamp))

    async def _send(
        self, batch: list[tuple[tuple[Doc, list[Doc], str], asyncio.Future[bool]]]
    ) -> None:
        requests = [UpdateOne(query, pipeline) for (query, pipeline, _), _ in batch]
        try:
            result = await self._collection.bulk_write(requests, ordered=False)
            all_matched = result.matched_count == len(batch)
        except BulkWriteError:
            all_matched = False  # some applied, some not: the stamps say which
        if all_matched:
            for _, future in batch:
                future.set_result(True)
            return
        ids = list({query["_id"] for (query, _, _), _ in batch})
        cursor = self._collection.find({"_id": {"$in": ids}}, {"write_id": 1})
        stamps = {doc["_id"]: doc.get("write_id") async for doc in cursor}
        for (query, _, stamp), future in batch:
            future.set_result(stamps.get(query["_id"]) == stamp)

    async def close(self) -> None:
        """Send what is pending."""
        await self._batcher.close()


class SharedInserts:
    """Inserts of new tasks sent as one unordered `insert_many` per few milliseconds: the API
    answering many submissions at once pays one command and one commit for all of them."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._collection = collection
        self._batcher: _Batcher[Doc, None] = _Batcher(self._send)

    async def insert(self, doc: Doc) -> None:
        """Store `doc`; raises what inserting it alone would (`DuplicateKeyError`, say)."""
        await self._batcher.submit(doc)

    async def _send(self, batch: list[tuple[Doc, asyncio.Future[None]]]) -> None:
        failed: dict[int, Exception] = {}
        try:
            await self._collection.insert_many([doc for doc, _ in batch], ordered=False)
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                code = error.get("code")
                kind = DuplicateKeyError if code == 11000 else OperationFailure
                failed[error["index"]] = kind(error.get("errmsg", "insert failed"), code, error)
        for index, (_, future) in enumerate(batch):
            if index in failed:
                future.set_exception(failed[index])
            else:
                future.set_result(None)

    async def close(self) -> None:
        """Send what is pending."""
        await self._batcher.close()


class SharedReads:
    """Reads of single tasks by id, sent as one `find` per few milliseconds."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._collection = collection
        self._batcher: _Batcher[str, Doc | None] = _Batcher(self._send)

    async def get(self, task_id: str) -> Doc | None:
        """The task, or None."""
        return await self._batcher.submit(task_id)

    async def _send(self, batch: list[tuple[str, asyncio.Future[Doc | None]]]) -> None:
        ids = list({task_id for task_id, _ in batch})
        found = {doc["_id"]: doc async for doc in self._collection.find({"_id": {"$in": ids}})}
        for task_id, future in batch:
            future.set_result(found.get(task_id))

    async def close(self) -> None:
        """Send what is pending."""
        await self._batcher.close()


class DispatchMarks:
    """Clears outbox marks in batches: one write for all the commands confirmed meanwhile.

    A mark left behind by a crash costs a second publish of its command after
    `outbox_grace_s`, which the claim drops; so a batch that fails is logged and dropped too.
    """

    #: Seconds a confirmed mark waits for others to be cleared with it.
    LINGER_S = 0.01

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._collection = collection
        self._pending: list[str] = []
        self._flusher: asyncio.Task[None] | None = None

    def clear(self, task_id: str) -> None:
        """Clear one task's mark soon."""
        self._pending.append(task_id)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.LINGER_S)
        await self.flush()

    async def flush(self) -> None:
        """Clear every pending mark now."""
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            try:
                await self._collection.update_many(
                    {"_id": {"$in": batch}}, {"$unset": {"dispatch_due_at": ""}}
                )
            except Exception as exc:
                log.warning("clearing %d outbox marks failed: %r; the relay will", len(batch), exc)

    async def close(self) -> None:
        """Clear what is pending; no more batches after."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
