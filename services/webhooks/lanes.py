"""Which delivery attempts may start: a bulkhead of two lanes, so that endpoints that do not
answer never hold the slots of endpoints that do.

An attempt starts in the main lane (`main_slots`, at most `endpoint_slots` of one endpoint),
unless its endpoint is slow. An attempt still running after `slow_after_s` leaves the main lane:
its endpoint is slow from then on, and the attempt counts in the slow lane until it ends. So a
main-lane slot is held for at most `slow_after_s`, however long the attempt goes on, and a
healthy endpoint finds one free within that time even while every other endpoint hangs.

A slow endpoint's attempts start in the slow lane only (`slow_slots`, shared by every slow
endpoint), one at a time each, and only while the lane has room (attempts moved there count,
even beyond its size). An attempt of it that ends sooner than `slow_after_s`, answered or failed
at once, makes it fast again.

What this costs: attempts that moved out of the main lane run on beside it until their timeout,
so a sender may have more attempts open than `main_slots + slow_slots`, at most about
`main_slots` more for each `slow_after_s` of the timeout, and only while new endpoints start
hanging (an endpoint moves at most `endpoint_slots` attempts before it is slow). Pure: the clock
is given.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

log = logging.getLogger(__name__)


class Lane(StrEnum):
    """Where an attempt counts."""

    MAIN = "main"
    SLOW = "slow"


@dataclass
class _Running:
    endpoint_id: str
    started: float
    lane: Lane


class Lanes:
    """The attempts in flight of one sender, by lane and endpoint."""

    def __init__(
        self,
        *,
        main_slots: int,
        endpoint_slots: int,
        slow_slots: int,
        slow_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.main_slots = main_slots
        self.endpoint_slots = endpoint_slots
        self.slow_slots = slow_slots
        self.slow_after_s = slow_after_s
        self.clock = clock
        self._running: dict[int, _Running] = {}
        self._slow: set[str] = set()
        self._tokens = itertools.count()

    def _settle(self) -> None:
        """Move main-lane attempts that have run for `slow_after_s` to the slow lane."""
        now = self.clock()
        for running in self._running.values():
            if running.lane is Lane.MAIN and now - running.started >= self.slow_after_s:
                running.lane = Lane.SLOW
                self._mark_slow(running.endpoint_id)

    def _mark_slow(self, endpoint_id: str) -> None:
        if endpoint_id not in self._slow:
            self._slow.add(endpoint_id)
            log.info(
                "webhook endpoint %s is slow (an attempt took %g s or more): its attempts go "
                "to the slow lane",
                endpoint_id,
                self.slow_after_s,
            )

    def _count(self, lane: Lane) -> int:
        return sum(1 for running in self._running.values() if running.lane is lane)

    def _of(self, endpoint_id: str) -> int:
        return sum(1 for running in self._running.values() if running.endpoint_id == endpoint_id)

    def lane_for(self, endpoint_id: str) -> Lane | None:
        """The lane an attempt of the endpoint would start in now; None: neither has room."""
        self._settle()
        if endpoint_id in self._slow:
            if self._of(endpoint_id) >= 1 or self._count(Lane.SLOW) >= self.slow_slots:
                return None
            return Lane.SLOW
        if self._of(endpoint_id) >= self.endpoint_slots:
            return None
        return Lane.MAIN if self._count(Lane.MAIN) < self.main_slots else None

    def free(self) -> tuple[int, int]:
        """Free slots of the main lane and of the slow lane."""
        self._settle()
        return (
            max(0, self.main_slots - self._count(Lane.MAIN)),
            max(0, self.slow_slots - self._count(Lane.SLOW)),
        )

    def blocked(self) -> set[str]:
        """The endpoints known to have no room now (at their cap, or slow while the slow lane is
        full); any other endpoint has room while its lane does."""
        self._settle()
        known = {running.endpoint_id for running in self._running.values()} | self._slow
        return {endpoint_id for endpoint_id in known if self.lane_for(endpoint_id) is None}

    def slow_endpoints(self) -> set[str]:
        """The endpoints whose attempts go to the slow lane."""
        self._settle()
        return set(self._slow)

    def reserve(self, endpoint_id: str) -> int | None:
        """Take a slot for an attempt of the endpoint, if its lane has one; the token to `end`
        (or `cancel`) it with."""
        lane = self.lane_for(endpoint_id)
        if lane is None:
            return None
        token = next(self._tokens)
        self._running[token] = _Running(endpoint_id, self.clock(), lane)
        return token

    def cancel(self, token: int) -> None:
        """Give back a slot whose attempt never started; says nothing about its endpoint."""
        self._running.pop(token, None)

    def end(self, token: int) -> None:
        """An attempt ended: its endpoint is slow if it took `slow_after_s` or more, else fast."""
        running = self._running.pop(token, None)
        if running is None:
            return
        if self.clock() - running.started >= self.slow_after_s:
            self._mark_slow(running.endpoint_id)
        elif running.endpoint_id in self._slow:
            self._slow.discard(running.endpoint_id)
            log.info(
                "webhook endpoint %s answers again: back in the main lane", running.endpoint_id
            )

    def forget(self, endpoint_id: str) -> None:
        """Drop what is known of a removed endpoint."""
        self._slow.discard(endpoint_id)

    def in_flight(self) -> int:
        """Attempts running, in both lanes."""
        return len(self._running)

    def next_move_in(self) -> float | None:
        """Seconds until the next main-lane attempt moves to the slow lane (freeing its slot);
        None if none runs."""
        self._settle()
        now = self.clock()
        ages = [now - r.started for r in self._running.values() if r.lane is Lane.MAIN]
        return max(0.0, self.slow_after_s - max(ages)) if ages else None
