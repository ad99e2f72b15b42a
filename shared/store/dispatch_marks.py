"""The outbox mark: a task whose command may not have been published carries it, and the relay
publishes the command of a task whose mark is due. Clearing marks is batched here."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

Doc = dict[str, Any]

log = logging.getLogger(__name__)

#: The field of the outbox mark: the time after which the relay publishes the command again.
MARK = "dispatch_due_at"


class DispatchMarks:
    """Clears outbox marks in batches: one write for all the commands confirmed meanwhile.

    A mark left behind by a crash costs a second publish of its command after
    `outbox_grace_s`, which the claim drops; so a batch that fails is logged and dropped too.
    """

    #: Seconds a confirmed mark waits for others to be cleared with it. Nobody waits for a mark
    #: to go, and a crash costs only republishes, so it may wait long enough to share its
    #: statement even at a modest rate (about 1.5 ms of server time saved per mark shared).
    LINGER_S = 0.05

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._collection = collection
        self._pending: list[str] = []
        self._flusher: asyncio.Task[None] | None = None

    def clear(self, task_id: str) -> None:
        """Clear one task's mark soon."""
        self._pending.append(task_id)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon(), context=contextvars.Context())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.LINGER_S)
        await self.flush()

    async def flush(self) -> None:
        """Clear every pending mark now."""
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            try:
                await self._collection.update_many({"_id": {"$in": batch}}, {"$unset": {MARK: ""}})
            except Exception as exc:
                log.warning("clearing %d outbox marks failed: %r; the relay will", len(batch), exc)

    async def close(self) -> None:
        """Clear what is pending; no more batches after."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
