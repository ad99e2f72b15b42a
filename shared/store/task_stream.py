"""Following the `tasks` change stream: one per process, resumed after errors, never skipping.

After a transient error the stream resumes after the last event it handed on (its resume token).
When the token cannot be used any more (the server pruned that history: SecantusDB keeps 1 hour
or 100,000 entries; or the stream was invalidated), a new stream is opened first and then
`on_rebuild` re-reads from the database every subscribed task changed since shortly before the
last event seen, so a change committed in the gap still reaches its subscribers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.errors import OperationFailure, PyMongoError

from shared.clock import utcnow
from shared.records import StoredTask
from shared.store.errors import history_lost
from shared.store.tasks import TaskStore, read

log = logging.getLogger(__name__)

#: Only the operations that change what a client sees.
PIPELINE: list[dict[str, Any]] = [
    {"$match": {"operationType": {"$in": ["insert", "update", "replace", "delete", "invalidate"]}}},
    # An update that leaves `version` alone changes nothing a client sees (the clearing of an
    # outbox mark): not worth a lookup, a render and a dedup per subscriber.
    {
        "$match": {
            "$or": [
                {"operationType": {"$ne": "update"}},
                {"updateDescription.updatedFields.version": {"$exists": True}},
            ]
        }
    },
]
MAX_BACKOFF_S = 5.0


class _Invalidated(Exception):
    """The stream was invalidated (collection dropped or renamed)."""


@dataclass(frozen=True)
class TaskChanged:
    """A task was stored or changed (a change that moved its version); `task` is as committed
    then or later."""

    task: StoredTask


@dataclass(frozen=True)
class TaskDeleted:
    """A task was deleted."""

    task_id: str


@dataclass(frozen=True)
class TaskUnreadable:
    """A task changed whose document does not fit the model (logged): nothing to show."""

    task_id: str


TaskEvent = TaskChanged | TaskDeleted | TaskUnreadable


class TaskStream:
    """Feeds every committed change of the tasks to `on_change`, in commit order, as typed
    events."""

    def __init__(
        self,
        tasks: TaskStore,
        on_change: Callable[[TaskEvent], None],
        on_rebuild: Callable[[datetime], Awaitable[int]],
    ) -> None:
        self.collection = tasks.collection
        self.on_change = on_change
        self.on_rebuild = on_rebuild
        #: Resume token of the last event handed on (or of the stream's start).
        self.resume_token: Mapping[str, Any] | None = None
        #: When the last event was handed on (or the stream first opened).
        self.last_seen_at: datetime = utcnow()
        #: Set once the first stream is open: from then on, no committed change is missed.
        self.ready = asyncio.Event()
        #: Rebuilds done (for tests and logs).
        self.rebuilds = 0

    async def run(self) -> None:
        """Follow the stream until cancelled."""
        backoff_s = 0.1
        rebuild_from: datetime | None = None
        while True:
            try:
                stream = await self.collection.watch(
                    PIPELINE, full_document="updateLookup", resume_after=self.resume_token
                )
                async with stream:
                    if self.resume_token is None:
                        self.resume_token = stream.resume_token
                    if rebuild_from is not None:
                        read = await self.on_rebuild(rebuild_from)
                        self.rebuilds += 1
                        log.warning("change stream rebuilt: re-read %d tasks", read)
                        rebuild_from = None
                    self.ready.set()
                    backoff_s = 0.1
                    async for change in stream:
                        if change["operationType"] == "invalidate":
                            raise _Invalidated
                        self._hand_on(change)
                        self.resume_token = stream.resume_token
            except asyncio.CancelledError:
                raise
            except (_Invalidated, OperationFailure) as exc:
                if isinstance(exc, OperationFailure) and not history_lost(exc):
                    log.warning("change stream failed: %s; resuming in %.1f s", exc, backoff_s)
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
                    continue
                log.warning("change stream cannot resume (%r); rebuilding from the database", exc)
                self.resume_token = None
                if rebuild_from is None:
                    rebuild_from = self.last_seen_at
            except PyMongoError as exc:
                log.warning("change stream failed: %r; resuming in %.1f s", exc, backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)

    def _hand_on(self, change: Mapping[str, Any]) -> None:
        self.last_seen_at = utcnow()
        event = typed(change)
        if event is None:
            return
        try:
            self.on_change(event)
        except Exception:
            log.exception("change %r could not be routed", change.get("documentKey"))


def typed(change: Mapping[str, Any]) -> TaskEvent | None:
    """The event of one change-stream document; None for one with nothing to tell (a change of
    a task deleted since: its delete event follows)."""
    task_id = (change.get("documentKey") or {}).get("_id", "")
    if change.get("operationType") == "delete":
        return TaskDeleted(task_id)
    doc = change.get("fullDocument")
    if doc is None:
        return None
    task = read(doc)
    return TaskUnreadable(task_id) if task is None else TaskChanged(task)
