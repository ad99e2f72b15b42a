"""The same command published twice (a relay racing a confirm, a redelivery) runs its task once."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from shared.settings import Settings
from shared.store import Store
from tests.support.faults import (
    Services,
    assert_nothing_lost_or_doubled,
    submit_many,
    until_all_final,
)
from tests.support.rest import (
    publish_again,
    queued_commands,
)

pytestmark = pytest.mark.fault


@pytest.mark.timeout(120)
async def test_a_command_published_twice_runs_its_task_once(
    services: Services, http: httpx.AsyncClient, fault_store: Store, settings: Settings
) -> None:
    # Given tasks whose commands are each in the queue twice before any worker runs
    await services.start_api()
    ids = await submit_many(http, 20, {"rounds": 2, "round_s": 0.05})
    for task_id in ids:
        await publish_again(settings, task_id, "test.count")
    assert await queued_commands(settings) == 2 * len(ids)

    # When two workers take both copies at once
    names = [services.start_worker(), services.start_worker()]
    await services.until_workers_beat(fault_store, names)
    await until_all_final(fault_store, ids, timeout_s=60)

    # Then each task ran once and completed once
    tally = await assert_nothing_lost_or_doubled(fault_store, ids)
    assert tally.completed == len(ids)
    runs = [doc["runs"] async for doc in fault_store.tasks.collection.find({"_id": {"$in": ids}})]
    assert runs == [1] * len(ids)

    # And a copy arriving after the task ended changes nothing
    before = {doc["_id"]: doc["version"] async for doc in fault_store.tasks.collection.find({})}
    for task_id in ids[:5]:
        await publish_again(settings, task_id, "test.count")
    for _ in range(100):
        if await queued_commands(settings) == 0:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)  # the last copies taken are being looked at
    after = {doc["_id"]: doc["version"] async for doc in fault_store.tasks.collection.find({})}
    assert after == before
    await assert_nothing_lost_or_doubled(fault_store, ids)
