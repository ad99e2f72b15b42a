"""The failed sign-in counters on the real database, counted at once by many requests."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from shared.store import Store

pytestmark = pytest.mark.integration


async def test_attempts_counted_at_once_on_a_new_key_each_get_a_count_and_none_is_lost(
    store: Store,
) -> None:
    # Ten requests count the first failures of one new name at once, twenty times over: the
    # database may answer an upsert that raced another without its document.
    for round_number in range(20):
        key = f"name:racer-{round_number}"
        counts = await asyncio.gather(
            *(store.accounts.count_attempt(key, timedelta(minutes=15)) for _ in range(10))
        )
        # Each attempt is counted once, and each is told a count its own attempt reached.
        assert max(count.count for count in counts) == 10
        assert all(1 <= count.count <= 10 for count in counts)
        again = await store.accounts.count_attempt(key, timedelta(minutes=15))
        assert again.count == 11
