"""The per-minute limit: exact within a process under concurrent requests, sliding, shared with
other replicas at a database cost that does not grow with the rate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

import pytest

from shared import rate_limit
from shared.rate_limit import SLOT_S, RateLimited, RateLimiter, slot_of
from shared.store.rates import RateCounters


class FakeCounters(RateCounters):
    """The counters collection in memory, shared by the limiters of several "replicas"."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, datetime], int] = {}
        self.commands = 0

    async def add(self, counts: Mapping[str, int], slot: datetime, *, keep_s: float) -> None:
        self.commands += 1
        for owner, count in counts.items():
            self.counts[owner, slot] = self.counts.get((owner, slot), 0) + count

    async def since(self, owners: Iterable[str], start: datetime) -> dict[str, dict[datetime, int]]:
        self.commands += 1
        found: dict[str, dict[datetime, int]] = {owner: {} for owner in owners}
        for (owner, slot), count in self.counts.items():
            if owner in found and slot >= start:
                found[owner][slot] = count
        return found


async def admitted(limiter: RateLimiter, owner: str, attempts: int) -> int:
    async def one() -> bool:
        try:
            await limiter.take(owner)
        except RateLimited:
            return False
        return True

    return sum(await asyncio.gather(*(one() for _ in range(attempts))))


async def test_concurrent_requests_never_overshoot_within_a_process() -> None:
    limiter = RateLimiter(FakeCounters(), limit=10)
    assert await admitted(limiter, "u", 100) == 10
    assert await admitted(limiter, "other", 3) == 3  # each user has an allowance of their own
    await limiter.close()


async def test_a_refused_submission_says_when_to_retry_and_a_given_back_one_is_free_again() -> None:
    limiter = RateLimiter(FakeCounters(), limit=2)
    await limiter.take("u", 2)
    with pytest.raises(RateLimited) as refused:
        await limiter.take("u")
    assert 1 <= refused.value.retry_after_s <= 60 + SLOT_S
    limiter.give_back("u")
    await limiter.take("u")
    with pytest.raises(RateLimited):
        await limiter.take("u", 3)  # more than the whole allowance
    await limiter.close()


async def test_the_window_slides_the_oldest_slot_counting_only_in_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime(2026, 12, 1, 12, 0, 5, tzinfo=UTC)
    limiter = RateLimiter(FakeCounters(), limit=10)
    limiter._counts["u"] = {slot_of(now - timedelta(seconds=60)): 10}
    limiter._read_at["u"] = float("inf")  # read just now, as far as the limiter knows
    # 65 s ago-ish: its slot [11:59:00, 11:59:10) lies half in the minute before 12:00:05.
    assert limiter._in_window("u", now) == pytest.approx(5)
    assert limiter._in_window("u", now + timedelta(seconds=5)) == pytest.approx(0)


async def test_two_replicas_see_each_other_after_a_sync_and_the_database_cost_is_per_sync() -> None:
    counters = FakeCounters()
    first = RateLimiter(counters, limit=100, sync_s=0.01)
    second = RateLimiter(counters, limit=100, sync_s=0.01)
    assert await admitted(first, "u", 60) == 60
    await first.sync()
    # The second replica reads the user's counts when it first sees the user.
    assert await admitted(second, "u", 60) == 40
    await second.sync()
    # Once its view is older than the sync interval, the first replica reads it again.
    await asyncio.sleep(first.sync_s * 2)
    with pytest.raises(RateLimited):
        await first.take("u")
    # 160 submissions cost a handful of database commands, not one (or more) each.
    assert counters.commands <= 160 // 8
    await first.close()
    await second.close()


async def test_without_a_limit_nothing_is_counted() -> None:
    counters = FakeCounters()
    limiter = RateLimiter(counters, limit=0)
    assert await admitted(limiter, "u", 1000) == 1000
    await limiter.close()
    assert counters.commands == 0


def test_slots_are_ten_seconds_from_the_epoch() -> None:
    assert rate_limit.SLOT_S == 10
    assert slot_of(datetime(2026, 1, 1, 0, 0, 19, 999000, tzinfo=UTC)) == datetime(
        2026, 1, 1, 0, 0, 10, tzinfo=UTC
    )


async def test_requests_that_find_a_users_counts_stale_share_one_read() -> None:
    """Given a user new to this process, when 32 of their requests arrive at once, then the
    database is read once for all of them, not once per request."""
    counters = FakeCounters()
    reads = 0
    since = counters.since

    async def slow_since(owners: Iterable[str], start: datetime) -> dict[str, dict[datetime, int]]:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.01)  # a round trip, during which the others arrive
        return await since(owners, start)

    counters.since = slow_since  # type: ignore[method-assign]
    limiter = RateLimiter(counters, limit=1000)
    assert await admitted(limiter, "u", 32) == 32
    await limiter.close()
    # One read for the 32 requests, and one by the sync that adds what they counted.
    assert reads == 2
