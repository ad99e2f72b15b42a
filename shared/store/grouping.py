"""Database commands shared by many tasks: what a task costs is mostly statements and commits.

A worker running many short tasks would send one update per claim and one per end; here the
commands that tasks need at the same time go together (group commit: at once when none is in
flight, else together once it returns). Inserts go as one `insert_many`, reads as one `find`,
and compare-and-sets of the same change as one `update_many`. Each caller still gets its own
answer: whether its own write applied, its own document, its own error.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import bson
from bson.errors import InvalidDocument
from pymongo import UpdateMany
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    BulkWriteError,
    DocumentTooLarge,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    WTimeoutError,
)

from shared.clock import utcnow
from shared.store.documents import Doc

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

#: Most items sent together.
MAX_BATCH = 200
#: MongoDB's error code for a duplicate key.
DUPLICATE_KEY = 11000


class _Batcher(Generic[T, R]):
    """Sends items with `send`, one batch at a time: an item submitted while no batch is in
    flight goes at once (with whatever else was submitted in the same turn of the event loop);
    items submitted while one is in flight wait for it to return and then go together.

    This is group commit: alone, an item waits for nothing; under load, batches grow with the
    database's answer time, so the statements per item fall as the load rises instead of the
    queue. (A fixed linger would add its wait to every item and still send one per item when
    items come further apart than it.) `send` answers each item's future.
    """

    def __init__(
        self, send: Callable[[list[tuple[T, asyncio.Future[R]]]], Coroutine[Any, Any, None]]
    ):
        self._send = send
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._scheduled: asyncio.Handle | None = None
        self._sending: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if self._sending is None and self._scheduled is None:
            self._scheduled = loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = None
        if self._sending is not None or not self._pending:
            return
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        # A fresh context: the batch belongs to none of its callers (their task ids, bound
        # for logging, must not label its lines).
        self._sending = asyncio.create_task(self._run(batch), context=contextvars.Context())
        self._sending.add_done_callback(self._sent)

    def _sent(self, _: asyncio.Task[None]) -> None:
        self._sending = None
        self._flush()

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            await self._send(batch)
        except Exception as exc:
            if len(batch) > 1 and refused_whole(exc):
                # One member's bad document must not fail the others: each goes alone, so
                # only the guilty one gets the error.
                for item in batch:
                    if not item[1].done():
                        await self._run([item])
                return
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)

    async def close(self) -> None:
        """Send what is pending and wait until every batch has returned."""
        while self._pending or self._sending is not None:
            self._flush()
            if self._sending is not None:
                await asyncio.gather(self._sending, return_exceptions=True)


def refused_whole(exc: Exception) -> bool:
    """Whether `exc` says the database (or the driver, before sending) refused a whole command
    for what it holds, having applied none of it: safe to send its members again one by one.

    Not so for a lost connection or a timeout, after which some of it may have applied: such an
    outcome is unknown, and every member's caller must resolve it."""
    if isinstance(exc, InvalidDocument | DocumentTooLarge | RecursionError):
        return True  # raised while encoding, before anything was sent
    return isinstance(exc, OperationFailure) and not isinstance(
        exc, BulkWriteError | ExecutionTimeout | WTimeoutError
    )


class SharedCommand(Generic[T, R]):
    """One kind of command on a collection, sent for the items of many callers at once."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._collection = collection
        self._batcher: _Batcher[T, R] = _Batcher(self._send)

    async def _send(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        """Send one batch and answer each item's future."""
        raise NotImplementedError

    async def close(self) -> None:
        """Send what is pending."""
        await self._batcher.close()


@dataclass(frozen=True)
class GroupedWrite:
    """One task's compare-and-set, in a form that many tasks' can share one statement.

    `query` is the filter without `_id`; `build` makes the update from the time and the write id
    that the whole batch shares, so that the same change of many tasks is the same update
    document. Writes with the same query and update become one statement, whose filter is
    `query` and the tasks' ids: no per-task condition, since an `$or` of them makes SecantusDB
    scan the whole collection (12.8 ms per task against 0.8, measured).
    """

    task_id: str
    query: Doc
    build: Callable[[datetime, str], Doc]


class SharedWrites(SharedCommand[GroupedWrite, str | None]):
    """Compare-and-sets of many tasks as few `update_many` statements, in one `bulk_write`.

    On SecantusDB a statement costs more than the documents it changes (measured here: 2.4 ms
    of server time for a single-task plain update, 2.9 ms as a pipeline, 1.5 ms per task in
    an `update_many`), so writes that arrive together are grouped by their filter and update,
    and each group is one statement for all its tasks. The batch's time and write id are the
    same for all of its writes; every update also stamps that
    `write_id`, so when a statement matched fewer tasks than it named, one `find` tells each
    caller whether its own task holds it. Each caller gets the write id, or None if its filter
    did not match.
    """

    async def apply(self, write: GroupedWrite) -> str | None:
        """The write id if the write applied, None if its filter matched nothing."""
        return await self._batcher.submit(write)

    async def _send(self, batch: list[tuple[GroupedWrite, asyncio.Future[str | None]]]) -> None:
        # Two writes of one task go in turn, as they would one by one: in one statement, both
        # would find the batch's stamp on the task and both would think they applied.
        firsts: dict[str, tuple[GroupedWrite, asyncio.Future[str | None]]] = {}
        again = []
        for item in batch:
            if item[0].task_id in firsts:
                again.append(item)
            else:
                firsts[item[0].task_id] = item
        await self._send_distinct(list(firsts.values()))
        if again:
            await self._send(again)

    async def _send_distinct(
        self, batch: list[tuple[GroupedWrite, asyncio.Future[str | None]]]
    ) -> None:
        at = utcnow()
        stamp = uuid.uuid4().hex
        groups: dict[bytes, tuple[Doc, Doc, list[GroupedWrite]]] = {}
        for write, _ in batch:
            update = write.build(at, stamp)
            update["$set"] = {**update.get("$set", {}), "write_id": stamp}
            key = bson.encode({"q": write.query, "u": update})
            groups.setdefault(key, (write.query, update, []))[2].append(write)
        requests = [
            UpdateMany({"_id": {"$in": [write.task_id for write in writes]}, **query}, update)
            for query, update, writes in groups.values()
        ]
        try:
            result = await self._collection.bulk_write(requests, ordered=False)
            all_matched = result.matched_count == len(batch)
        except BulkWriteError:
            all_matched = False  # some applied, some not: the stamps say which
        if all_matched:
            for _, future in batch:
                future.set_result(stamp)
            return
        ids = list({write.task_id for write, _ in batch})
        cursor = self._collection.find({"_id": {"$in": ids}}, {"write_id": 1})
        stamps = {doc["_id"]: doc.get("write_id") async for doc in cursor}
        for write, future in batch:
            future.set_result(stamp if stamps.get(write.task_id) == stamp else None)


class SharedInserts(SharedCommand[Doc, None]):
    """Inserts of new tasks sent together as one unordered `insert_many`: the API answering
    many submissions at once pays one command and one commit for all of them."""

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
                kind = DuplicateKeyError if code == DUPLICATE_KEY else OperationFailure
                failed[error["index"]] = kind(error.get("errmsg", "insert failed"), code, error)
        for index, (_, future) in enumerate(batch):
            if index in failed:
                future.set_exception(failed[index])
            else:
                future.set_result(None)


class SharedReads(SharedCommand[str, Doc | None]):
    """Reads of single tasks by id, sent together as one `find`."""

    async def get(self, task_id: str) -> Doc | None:
        """The task, or None."""
        return await self._batcher.submit(task_id)

    async def _send(self, batch: list[tuple[str, asyncio.Future[Doc | None]]]) -> None:
        ids = list({task_id for task_id, _ in batch})
        found = {doc["_id"]: doc async for doc in self._collection.find({"_id": {"$in": ids}})}
        for task_id, future in batch:
            future.set_result(found.get(task_id))
