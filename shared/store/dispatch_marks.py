"""The outbox mark: a task whose command may not have been published carries it, and the relay
publishes the command of a task whose mark is due. Clearing marks is batched here."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import deque

from pymongo.asynchronous.collection import AsyncCollection

from shared.store.documents import Doc

log = logging.getLogger(__name__)

#: The field of the outbox mark: the time after which the relay publishes the command again.
MARK = "dispatch_due_at"


class DispatchMarks:
    """Clears the outbox marks of confirmed commands, late and in batches, only where still set.

    A confirmed command's mark must go before it falls due (`outbox_grace_s` after the
    submission), or the relay publishes the command again. But most marks are gone long before:
    a claim clears the mark too (it proves the command was delivered), and in a busy system the
    claim comes within milliseconds. Clearing at once would rewrite nearly every task a second
    time (measured: 99 % of those writes changed the task, at about 1.2 ms of database CPU
    each). So each mark is cleared `hold_s` after its confirm (half the grace), in one
    `update_many` with every other mark of the moment, and only where it is still set: a mark
    the claim took costs the database a look, not a write.

    A mark left behind by a crash costs a second publish of its command, which the claim drops;
    so a batch that fails is logged and dropped too.
    """

    def __init__(self, collection: AsyncCollection[Doc], *, hold_s: float = 0.05) -> None:
        self._collection = collection
        self.hold_s = hold_s
        #: (when it was confirmed, monotonic seconds; task id), oldest first.
        self._pending: deque[tuple[float, str]] = deque()
        self._flusher: asyncio.Task[None] | None = None

    def clear(self, task_id: str) -> None:
        """Clear one task's mark (if still there) `hold_s` from now."""
        self._pending.append((time.monotonic(), task_id))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(
                self._flush_when_due(), context=contextvars.Context()
            )

    async def _flush_when_due(self) -> None:
        while self._pending:
            wait_s = self._pending[0][0] + self.hold_s - time.monotonic()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            await self.flush(older_than_s=self.hold_s)

    async def flush(self, *, older_than_s: float = 0) -> int:
        """Clear the pending marks confirmed at least `older_than_s` ago; how many tasks that
        changed (marks a claim took already change nothing)."""
        cutoff = time.monotonic() - older_than_s
        changed = 0
        while self._pending and self._pending[0][0] <= cutoff:
            batch: list[str] = []
            while self._pending and self._pending[0][0] <= cutoff and len(batch) < 1000:
                batch.append(self._pending.popleft()[1])
            try:
                result = await self._collection.update_many(
                    {"_id": {"$in": batch}, MARK: {"$exists": True}}, {"$unset": {MARK: ""}}
                )
                changed += result.modified_count
            except Exception as exc:
                log.warning("clearing %d outbox marks failed: %r; the relay will", len(batch), exc)
        return changed

    async def close(self) -> None:
        """Clear what is pending now; no more batches after."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
