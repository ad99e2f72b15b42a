"""The database killed under running services: they recover, every task ends once, and no live
worker is taken for a lost one."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from services.stack import EmbeddedMongo
from shared.store import Store
from tests.support.faults import (
    Services,
    assert_nothing_lost_or_doubled,
    submit_many,
    until_all_final,
)
from tests.support.servers import DEV_AUTH

pytestmark = pytest.mark.fault


@pytest.mark.timeout(180)
async def test_a_database_killed_during_claims_fails_nothing_wrongly_and_runs_nothing_twice(
    services: Services, own_mongo: EmbeddedMongo | None, fault_store: Store
) -> None:
    if own_mongo is None:
        pytest.skip("the database is not one the tests started, so they cannot restart it")
    own_store = fault_store
    # Given the api and two workers running tasks
    await services.start_api()
    names = [services.start_worker(), services.start_worker()]
    await services.until_workers_beat(own_store, names)
    async with httpx.AsyncClient(base_url=services.base_url, timeout=30, headers=DEV_AUTH) as http:
        ids = await submit_many(http, 30, {"rounds": 4, "round_s": 0.25})
        deadline = time.monotonic() + 30
        while await own_store.tasks.collection.count_documents({"state": "running"}) < 2:
            assert time.monotonic() < deadline, "no tasks started"
            await asyncio.sleep(0.05)

        # When the database is killed while claims are in flight (more commands keep arriving),
        # and starts again on the same port after longer than the workers' liveness TTL
        more = asyncio.create_task(submit_many(http, 20, {"rounds": 1, "round_s": 0.05}))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(own_mongo.kill)
        down = await http.get("/api/v1/tasks")
        assert down.status_code == 503, down.text
        outage_s = 3.0  # QUICK_ENV's worker TTL is 2 s: every heartbeat is older by then
        await asyncio.sleep(outage_s)
        await asyncio.to_thread(own_mongo.start)
        ids += await more

        # Then the api answers again and takes new tasks
        deadline = time.monotonic() + 30
        while (await http.get("/api/v1/tasks")).status_code != 200:
            assert time.monotonic() < deadline, "the api did not recover"
            await asyncio.sleep(0.2)
        ids += await submit_many(http, 10, {"rounds": 2, "round_s": 0.1})

    # And the workers, still the same processes, end every task exactly once, none of them
    # failed or requeued as if its live worker were lost: the only runs given back are those a
    # worker stopped itself, its lease unrenewable for longer than the fence (self-fencing),
    # and handed back once it was renewed
    recovery_s = await until_all_final(own_store, ids, timeout_s=120)
    assert all(services.workers[name].poll() is None for name in names)
    tally = await assert_nothing_lost_or_doubled(own_store, ids)
    lost = await own_store.tasks.collection.count_documents({"attempts.outcome": "worker_lost"})
    other = await own_store.tasks.collection.count_documents(
        {"attempts": {"$elemMatch": {"outcome": {"$ne": "lease_lost"}}}}
    )
    print(
        f"\ndatabase killed for {outage_s:.0f} s under load: {len(ids)} tasks, "
        f"{tally.completed} completed, {tally.requeues} handed back after fencing, "
        f"{lost} taken for lost, "
        f"{tally.duplicates} run twice; all final {recovery_s:.1f} s after the restart"
    )
    assert tally.completed == len(ids)
    assert lost == 0
    assert other == 0, "a run was given back for another reason than a lost lease"
