"""Retry policy: which failures are retried, how often, and after what delay.

Delays are exponential with jitter, and are served by the broker: the command waits, with a
per-message expiration, in one of a fixed set of delay queues and is dead-lettered back to the tasks
exchange when it expires. A worker never sleeps for a retry. RabbitMQ expires messages only at the
head of a queue, so each queue holds delays of one power-of-two band [b, 2b): a message waits at
most until 2b, never behind a much longer delay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Lower bounds, in seconds, of the delay bands; each band has its own delay queue.
DELAY_BUCKETS_S: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600)


@dataclass(frozen=True)
class RetryPolicy:
    """Retry up to `max_attempts` runs in all, on `Retry` and on the listed exception types."""

    max_attempts: int = 3
    base_s: float = 1.0
    max_delay_s: float = 3600.0
    retry_on: tuple[type[Exception], ...] = ()

    def retries(self, error: Exception) -> bool:
        """Whether `error` is worth another attempt under this policy."""
        from shared.errors import Retry

        return isinstance(error, (Retry, *self.retry_on))

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed run `attempt`: base·2^(attempt-1), upper half jittered."""
        ceiling = min(self.max_delay_s, self.base_s * 2 ** max(attempt - 1, 0))
        return (rng or random).uniform(ceiling / 2, ceiling)


def bucket_for(delay_s: float) -> int:
    """The delay band (its lower bound in seconds) that a delay waits in."""
    fitting = [b for b in DELAY_BUCKETS_S if b <= delay_s]
    return fitting[-1] if fitting else DELAY_BUCKETS_S[0]
