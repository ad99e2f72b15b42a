"""A worker's slots, handed out by priority: a freed slot goes to the command of the highest
priority that waits for one, the oldest first among equals.

Why here and not in the broker: the tasks queues are quorum queues, and RabbitMQ's quorum queues
have no message priorities before 4.0 (this deployment runs 3.10). So a high-priority command
goes to a queue of its own (`<namespace>.tasks.high`, a quorum queue too: the same replication,
delivery limit and dead-lettering), which every worker consumes on a channel of its own. Its
command is delivered at once, however many normal ones are queued, and waits here only for the
next slot that frees, which it gets before the normal commands the worker has prefetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator


class Slots:
    """`count` slots; `held(priority)` waits for one."""

    def __init__(self, count: int) -> None:
        self.free = count
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @contextlib.asynccontextmanager
    async def held(self, priority: int = 0) -> AsyncIterator[None]:
        """Hold a slot for the block."""
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()

    async def acquire(self, priority: int = 0) -> None:
        """Wait for a slot: one free now (and nobody waiting), or the next one released to
        this priority's turn."""
        if self.free > 0 and not self._waiting:
            self.free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (-priority, next(self._order), turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed a slot in the instant it was cancelled: pass it on
            raise

    def release(self) -> None:
        """Give a slot back: to the first waiter in priority order, else to the free ones."""
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)
                return
        self.free += 1

    def locked(self) -> bool:
        """Whether a new holder would have to wait (as `asyncio.Semaphore.locked`)."""
        return self.free == 0 or bool(self.waiting)

    @property
    def waiting(self) -> int:
        """Commands waiting for a slot."""
        return sum(1 for _, _, turn in self._waiting if not turn.done())
