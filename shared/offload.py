"""CPU-bound work (password hashing) run off the event loop, a bounded number at once.

A check of a scrypt hash takes tens of milliseconds of CPU. Run on the event loop, a stream of
sign-ins (right or wrong, any names) would stall every other request of the process; run in
unbounded threads, it would take every core. Here at most `at_once` run, in threads of their
own (hashlib's scrypt releases the GIL), and at most `max_waiting` more wait for a place; one
more is refused with `Busy` at once, rather than queueing without end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Busy(RuntimeError):
    """As many calls run and wait as allowed: try again shortly."""


class Offload:
    """Run blocking calls in at most `at_once` threads, with at most `max_waiting` waiting."""

    def __init__(self, at_once: int, max_waiting: int, name: str = "offload") -> None:
        self.at_once = at_once
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(max_workers=at_once, thread_name_prefix=name)
        #: Calls running or waiting; only the event loop's thread changes it.
        self._pending = 0

    async def run(self, call: Callable[..., T], *args: object) -> T:
        """`call(*args)` in a worker thread; raises `Busy` when too many are pending."""
        if self._pending >= self.at_once + self.max_waiting:
            raise Busy(f"{self._pending} calls pending")
        loop = asyncio.get_running_loop()
        future = self._executor.submit(call, *args)
        self._pending += 1
        # Counted until the thread is done with it, even when the caller stops waiting first
        # (a client that hung up): a queue of abandoned calls is still a queue.
        future.add_done_callback(lambda _: self._finished_on(loop))
        return await asyncio.wrap_future(future)

    def _finished_on(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to count
            loop.call_soon_threadsafe(self._finished)

    def _finished(self) -> None:
        self._pending -= 1

    def close(self) -> None:
        """Let running calls finish; start no more."""
        self._executor.shutdown(wait=False, cancel_futures=True)
