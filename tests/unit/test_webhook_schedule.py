"""Retries back off exponentially with jitter, up to a ceiling, for a bounded window."""

from __future__ import annotations

from datetime import timedelta

from shared.clock import utcnow
from shared.webhooks.schedule import RetrySchedule

SCHEDULE = RetrySchedule(base_s=10, max_interval_s=3600, window_s=24 * 3600)


def test_each_retry_waits_twice_as_long_up_to_the_ceiling_less_a_random_half() -> None:
    highest = [SCHEDULE.delay_s(n, rand=lambda: 1.0) for n in range(1, 12)]
    assert highest[:5] == [10, 20, 40, 80, 160]
    assert highest[-1] == 3600
    lowest = [SCHEDULE.delay_s(n, rand=lambda: 0.0) for n in range(1, 4)]
    assert lowest == [5, 10, 20]


def test_a_delivery_is_given_up_once_its_next_try_would_fall_after_its_window() -> None:
    start = utcnow()
    inside = SCHEDULE.next_attempt(3, window_from=start, now=start, rand=lambda: 1.0)
    assert inside == start + timedelta(seconds=40)
    late = start + timedelta(hours=23, minutes=59, seconds=50)
    assert SCHEDULE.next_attempt(3, window_from=start, now=late, rand=lambda: 1.0) is None


def test_the_default_schedule_makes_about_forty_attempts_in_a_day() -> None:
    start = now = utcnow()
    attempts = 1
    while (due := SCHEDULE.next_attempt(attempts, window_from=start, now=now)) is not None:
        attempts += 1
        now = due
    assert 30 <= attempts <= 60
