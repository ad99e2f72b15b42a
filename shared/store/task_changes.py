"""A feed of the tasks change stream for the webhook sender: changes of state (and, if asked, of
progress), in commit order, in batches, each with the resume token after it.

One reader task reads the stream as fast as it delivers and queues what it reads; `batch` hands
on everything queued, so a busy stream is handled in large batches without waiting for it to go
quiet. A resume token that the server no longer has raises `HistoryLost`: the caller then
catches up from the tasks themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from pymongo.errors import OperationFailure

from shared.lifecycle import TaskState
from shared.store.documents import Doc
from shared.store.errors import history_lost
from shared.store.tasks import TaskStore, read
from shared.webhooks.events import TaskChange


class HistoryLost(RuntimeError):
    """The stream cannot resume where it was: changes since then must be read from the tasks."""


@dataclass
class FeedBatch:
    """Changes read together, and the resume token after the last of them."""

    changes: list[TaskChange] = field(default_factory=list)
    #: Changes of tasks that were deleted before they could be read.
    unreadable: int = 0
    token: Mapping[str, Any] | None = None


def pipeline(*, progress: bool) -> list[Doc]:
    """The stream's filter: updates that change the state, or (with `progress`) the reports.
    Everything else (heartbeats, outbox marks, inserts) is dropped by the server."""
    changed: list[Doc] = [{"updateDescription.updatedFields.state": {"$exists": True}}]
    if progress:
        changed.append({"updateDescription.updatedFields.progress_reports": {"$exists": True}})
    return [
        {
            "$match": {
                "$or": [
                    {"operationType": "invalidate"},
                    {"operationType": "update", "$or": changed},
                ]
            }
        }
    ]


class TaskChangeFeed:
    """`async with TaskChangeFeed(tasks, ...) as feed`: the stream of `tasks` open from
    `resume_after` (None: from now); `await feed.batch()` for what happened since."""

    def __init__(
        self,
        tasks: TaskStore,
        *,
        progress: bool,
        resume_after: Mapping[str, Any] | None,
        batch_limit: int = 500,
        queued_limit: int = 5000,
        linger_s: float = 0.05,
    ) -> None:
        # The collection stays in the store package: callers hand over the TaskStore.
        self.collection = tasks.collection
        self.progress = progress
        self.resume_after = resume_after
        self.batch_limit = batch_limit
        #: Seconds a batch waits after its first change for others to share its writes.
        self.linger_s = linger_s
        self._queue: asyncio.Queue[tuple[Doc, Mapping[str, Any] | None] | BaseException] = (
            asyncio.Queue(queued_limit)
        )
        self._reader: asyncio.Task[None] | None = None
        #: What ended the stream, once the changes before it were handed on.
        self._failure: BaseException | None = None
        #: The stream's resume token when it opened: the place if nothing happens.
        self.opened_token: Mapping[str, Any] | None = None

    async def __aenter__(self) -> TaskChangeFeed:
        try:
            self._stream = await self.collection.watch(
                pipeline(progress=self.progress),
                full_document="updateLookup",
                resume_after=self.resume_after,
            )
        except OperationFailure as exc:
            if history_lost(exc):
                raise HistoryLost(str(exc)) from exc
            raise
        self.opened_token = self._stream.resume_token
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        with contextlib.suppress(Exception):
            await self._stream.close()

    async def _read(self) -> None:
        try:
            async for change in self._stream:
                await self._queue.put((change, self._stream.resume_token))
        except asyncio.CancelledError:
            raise
        except OperationFailure as exc:
            failure: BaseException = HistoryLost(str(exc)) if history_lost(exc) else exc
            await self._queue.put(failure)
        except Exception as exc:
            await self._queue.put(exc)

    async def batch(self, timeout_s: float) -> FeedBatch:
        """What was committed since the last batch, waiting up to `timeout_s` for the first
        change (an empty batch if none came). Raises what ended the stream."""
        out = FeedBatch()
        if self._failure is not None:
            raise self._failure
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout_s)
        except TimeoutError:
            return out
        # Changes come in bursts (a claim, an end): what follows within the linger shares the
        # batch's writes (its deliveries' insert, the read of the endpoints).
        linger_until = asyncio.get_running_loop().time() + self.linger_s
        while self._queue.qsize() < self.batch_limit:
            left = linger_until - asyncio.get_running_loop().time()
            if left <= 0:
                break
            await asyncio.sleep(min(left, 0.01))
        while True:
            if isinstance(item, BaseException):
                if out.changes or out.unreadable:
                    # Hand on what came before the failure; the failure comes with the next.
                    self._failure = item
                    return out
                raise item
            change, token = item
            if change["operationType"] == "invalidate":
                raise HistoryLost("the tasks collection was dropped or renamed")
            task_change = _task_change(change)
            if task_change is None:
                out.unreadable += 1
            else:
                out.changes.append(task_change)
            out.token = token
            if len(out.changes) + out.unreadable >= self.batch_limit or self._queue.empty():
                return out
            item = self._queue.get_nowait()


def _task_change(change: Mapping[str, Any]) -> TaskChange | None:
    doc = change.get("fullDocument")
    task = None if doc is None else read(doc)
    if task is None:
        return None
    updated = (change.get("updateDescription") or {}).get("updatedFields") or {}
    state = updated.get("state")
    return TaskChange(
        task=task,
        new_state=TaskState(state) if state is not None else None,
        version=int(updated.get("version", task.version)),
        progress=any(key.split(".", 1)[0] == "progress_reports" for key in updated),
    )
