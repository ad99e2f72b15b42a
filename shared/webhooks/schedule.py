"""When a failed delivery is tried again, and when it is given up. Pure.

The n-th retry waits `min(max_interval_s, base_s * 2**(n-1))`, of which a random half is taken
off ("equal jitter"): receivers that failed together are not retried together. A delivery is
tried again while its next try falls within `window_s` of when it was recorded (or replayed);
else it is marked failed. With the defaults (10 s, doubling to at most 1 hour, for 24 hours) that is
about 40 attempts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetrySchedule:
    """The retry rule of the configured settings."""

    base_s: float
    max_interval_s: float
    window_s: float

    def delay_s(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds before the next try of a delivery that has failed `failures` times (>= 1)."""
        ceiling = min(self.max_interval_s, self.base_s * 2.0 ** max(0, failures - 1))
        return ceiling / 2 + rand() * ceiling / 2

    def next_attempt(
        self,
        failures: int,
        *,
        window_from: datetime,
        now: datetime,
        rand: Callable[[], float] = random.random,
    ) -> datetime | None:
        """When to try again after the `failures`-th failure, or None: its window is over."""
        due = now + timedelta(seconds=self.delay_s(failures, rand))
        if due > window_from + timedelta(seconds=self.window_s):
            return None
        return due
