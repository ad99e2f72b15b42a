"""The per-minute limit shared by two api replicas through the real database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from shared.rate_limit import RateLimited, RateLimiter
from shared.store import Store

pytestmark = pytest.mark.integration


async def test_two_replicas_share_one_users_allowance_through_the_database(store: Store) -> None:
    replicas = [RateLimiter(store.rates, limit=50, sync_s=0.05) for _ in range(2)]
    for _ in range(30):
        await replicas[0].take("u")
    await replicas[0].sync()
    taken = 0
    for _ in range(30):
        try:
            await replicas[1].take("u")
            taken += 1
        except RateLimited:
            break
    assert taken == 20
    await replicas[1].sync()
    await asyncio.sleep(0.1)  # the first replica's view of the user is older than its sync_s
    with pytest.raises(RateLimited):
        await replicas[0].take("u")
    counts = await store.rates.since(["u"], datetime.now(UTC) - timedelta(minutes=2))
    assert sum(counts["u"].values()) == 50
    for limiter in replicas:
        await limiter.close()
