"""The retry policy: what is retried, and delays that grow, jittered, within their band."""

from __future__ import annotations

import random

from shared.retries import DELAY_BUCKETS_S, RetryPolicy, bucket_for
from shared.tasks import Retry


def test_retry_and_the_listed_errors_are_retried_others_not() -> None:
    policy = RetryPolicy(retry_on=(TimeoutError,))
    assert policy.retries(Retry())
    assert policy.retries(TimeoutError())
    assert not policy.retries(ValueError())


def test_delays_double_per_attempt_in_their_upper_half_up_to_the_cap() -> None:
    policy = RetryPolicy(base_s=1.0, max_delay_s=10.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]:
        delays = [policy.delay_s(attempt, rng) for _ in range(200)]
        assert min(delays) >= ceiling / 2
        assert max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 10  # jittered, not one value


def test_a_delay_waits_in_the_band_below_it_so_it_never_waits_past_twice_itself() -> None:
    assert bucket_for(0.2) == 1
    assert bucket_for(1) == 1
    assert bucket_for(3.9) == 2
    assert bucket_for(100) == 64
    assert bucket_for(10**6) == DELAY_BUCKETS_S[-1]
    for delay_s in (1, 1.5, 3, 7.9, 600):
        assert bucket_for(delay_s) <= delay_s < 2 * bucket_for(delay_s) or delay_s >= 3600
