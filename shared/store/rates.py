"""Submission counters: how many tasks each user submitted in each short slot of time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from shared.store.documents import Doc


class RateCounters:
    """The `submission_counts` collection: one document per user and slot, removed by TTL."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def add(self, counts: Mapping[str, int], slot: datetime, *, keep_s: float) -> None:
        """Add each user's count to their document of `slot`, in one command for all users."""
        expires_at = slot + timedelta(seconds=keep_s)
        requests = [
            UpdateOne(
                {"_id": f"{owner}|{slot.timestamp():.0f}"},
                {
                    "$inc": {"count": count},
                    "$setOnInsert": {"owner": owner, "slot": slot, "expires_at": expires_at},
                },
                upsert=True,
            )
            for owner, count in counts.items()
            if count
        ]
        if requests:
            await self.collection.bulk_write(requests, ordered=False)

    async def since(self, owners: Iterable[str], start: datetime) -> dict[str, dict[datetime, int]]:
        """Each user's counts by slot, for the slots from `start` on."""
        found: dict[str, dict[datetime, int]] = {owner: {} for owner in owners}
        query = {"owner": {"$in": sorted(found)}, "slot": {"$gte": start}}
        async for doc in self.collection.find(query, {"owner": 1, "slot": 1, "count": 1}):
            found[doc["owner"]][doc["slot"]] = doc["count"]
        return found


class _NoCounters(RateCounters):
    """Counters for a limiter that never counts (a limit of 0)."""

    def __init__(self) -> None:
        pass


#: What a limiter without a limit holds.
NO_COUNTERS: RateCounters = _NoCounters()
