"""The submissions-per-minute limit of each user: exact within an api process, shared across
replicas through the database at a cost that does not grow with the rate.

Counting a user's tasks of the last minute on every submission cost the database more the more
tasks the user had (measured: 2.2 ms of its CPU with 10 in the window, 23.8 ms with 600). Here
each api process counts submissions in memory, in slots of `SLOT_S` seconds, and once per
`sync_s` adds what it counted to the users' counters in the database (one command for all
users) and reads back every replica's counts of the users it serves (one more). A submission
itself touches the database only when its user is new to this process.

The window slides: the slots of the last minute count whole, the oldest partly, as much of it
as still lies in the minute. Within one process the check and the count are one step, so
concurrent requests cannot overshoot. Across R replicas a user can overshoot by what the other
replicas admitted since their last sync: at most (R - 1) x (the user's submissions to one
replica in `sync_s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from shared.store.rates import RateCounters

log = logging.getLogger(__name__)

WINDOW_S = 60
#: Seconds per counting slot.
SLOT_S = 10


class RateLimited(RuntimeError):
    """The user submitted their limit of tasks in the last minute already."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(f"more than {limit} submissions in one minute; retry in {retry_after_s} s")
        self.limit = limit
        self.retry_after_s = retry_after_s


def slot_of(at: datetime) -> datetime:
    """The start of the slot that `at` falls in."""
    return datetime.fromtimestamp(at.timestamp() // SLOT_S * SLOT_S, UTC)


class RateLimiter:
    """`limit` submissions per user per sliding minute (0: no limit)."""

    def __init__(self, counters: RateCounters, limit: int, *, sync_s: float = 1.0) -> None:
        self.counters = counters
        self.limit = limit
        self.sync_s = sync_s
        #: Every replica's counts by user and slot, as of the last read, plus ours since.
        self._counts: dict[str, dict[datetime, int]] = {}
        #: When each user's counts were last read from the database (monotonic seconds).
        self._read_at: dict[str, float] = {}
        #: What this process counted and has not added to the database yet.
        self._unsynced: defaultdict[datetime, defaultdict[str, int]] = _slots()
        self._last_sync = 0.0
        self._syncing: asyncio.Task[None] | None = None
        #: The read of each user's counts under way, which concurrent requests share.
        self._reading: dict[str, asyncio.Future[None]] = {}

    async def take(self, owner: str, count: int = 1) -> None:
        """Count `count` submissions of `owner`, or raise `RateLimited` and count none."""
        if self.limit == 0:
            return
        if count > self.limit:
            raise RateLimited(self.limit, WINDOW_S)
        if time.monotonic() - self._read_at.get(owner, -math.inf) > self.sync_s:
            # New here, or idle here while other replicas may have counted: read first.
            await self._read_once(owner)
        now = datetime.now(UTC)
        if self._in_window(owner, now) + count > self.limit:
            raise RateLimited(self.limit, self._retry_after_s(owner, now, count))
        self._count(owner, slot_of(now), count)

    def give_back(self, owner: str, count: int = 1) -> None:
        """Uncount submissions that `take` counted but that were not stored after all."""
        if self.limit and owner in self._counts:
            self._count(owner, slot_of(datetime.now(UTC)), -count)

    def _count(self, owner: str, slot: datetime, count: int) -> None:
        counts = self._counts.setdefault(owner, {})
        counts[slot] = counts.get(slot, 0) + count
        self._unsynced[slot][owner] += count
        self._sync_soon()

    def _in_window(self, owner: str, now: datetime) -> float:
        start = now - timedelta(seconds=WINDOW_S)
        used = 0.0
        for slot, count in self._counts.get(owner, {}).items():
            end = slot + timedelta(seconds=SLOT_S)
            if end > start:
                used += count * min(1.0, (end - start).total_seconds() / SLOT_S)
        return used

    def _retry_after_s(self, owner: str, now: datetime, count: int) -> int:
        """Whole seconds until enough of the window has slid past for `count` more to fit."""
        for wait_s in range(1, WINDOW_S + SLOT_S + 1):
            if self._in_window(owner, now + timedelta(seconds=wait_s)) + count <= self.limit:
                return wait_s
        return WINDOW_S

    def _sync_soon(self) -> None:
        if self._syncing is None or self._syncing.done():
            wait_s = max(0.0, self._last_sync + self.sync_s - time.monotonic())
            syncing = self._sync_after(wait_s)
            self._syncing = asyncio.create_task(syncing, context=contextvars.Context())

    async def _sync_after(self, wait_s: float) -> None:
        await asyncio.sleep(wait_s)
        try:
            await self.sync()
        except Exception as exc:
            log.warning("submission counts not synced: %r; trying again", exc)
        if any(any(counts.values()) for counts in self._unsynced.values()):
            self._syncing = None
            self._sync_soon()

    async def sync(self) -> None:
        """Add what this process counted to the database, and read every replica's counts of
        the users it counted for."""
        self._last_sync = time.monotonic()
        unsynced, self._unsynced = self._unsynced, _slots()
        try:
            for slot, counts in unsynced.items():
                await self.counters.add(counts, slot, keep_s=WINDOW_S + 2 * SLOT_S)
        except BaseException:
            for slot, counts in unsynced.items():  # not added: they go with the next sync
                for owner, count in counts.items():
                    self._unsynced[slot][owner] += count
            raise
        await self._read(sorted({owner for counts in unsynced.values() for owner in counts}))
        self._forget_idle()

    async def _read_once(self, owner: str) -> None:
        """Read `owner`'s counts; requests that find them stale meanwhile wait for the same
        read (measured without: a read per request in flight each time they went stale)."""
        reading = self._reading.get(owner)
        if reading is None:
            reading = asyncio.ensure_future(self._read([owner]))
            self._reading[owner] = reading
            reading.add_done_callback(lambda _: self._reading.pop(owner, None))
        # A request that gives up does not cancel the read the others wait for.
        await asyncio.shield(reading)

    async def _read(self, owners: list[str]) -> None:
        if not owners:
            return
        read_at = time.monotonic()
        start = slot_of(datetime.now(UTC) - timedelta(seconds=WINDOW_S))
        found = await self.counters.since(owners, start)
        for owner, counts in found.items():
            for slot, pending in self._unsynced.items():  # ours not in the database yet
                if pending.get(owner):
                    counts[slot] = counts.get(slot, 0) + pending[owner]
            self._counts[owner] = counts
            self._read_at[owner] = read_at

    def _forget_idle(self) -> None:
        """Drop slots that left the window, and users with none left."""
        start = slot_of(datetime.now(UTC) - timedelta(seconds=WINDOW_S))
        for owner in list(self._counts):
            counts = {slot: n for slot, n in self._counts[owner].items() if slot >= start}
            if counts:
                self._counts[owner] = counts
            else:
                del self._counts[owner]
                self._read_at.pop(owner, None)

    async def close(self) -> None:
        """Add what is counted and not yet synced."""
        if self._syncing is not None:
            self._syncing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncing
        with contextlib.suppress(Exception):
            await self.sync()


def _slots() -> defaultdict[datetime, defaultdict[str, int]]:
    return defaultdict(lambda: defaultdict(int))
