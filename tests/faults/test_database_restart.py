"""The database restarted under running services: they recover and every task ends once."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from services.stack import EmbeddedMongo
from shared.store import TaskStore
from tests.conftest import DEV_AUTH
from tests.faults.conftest import (
    Services,
    assert_nothing_lost_or_doubled,
    submit_many,
    until_all_final,
)

pytestmark = pytest.mark.fault


@pytest.mark.timeout(180)
async def test_services_recover_from_a_database_restart_and_every_task_ends_once(
    services: Services, own_mongo: EmbeddedMongo | None, fault_store: TaskStore
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
        while await own_store.tasks.count_documents({"state": "running"}) < 2:
            assert time.monotonic() < deadline, "no tasks started"
            await asyncio.sleep(0.05)

        # When the database stops for a few seconds and starts again on the same port
        await asyncio.to_thread(own_mongo.stop)
        down = await http.get("/api/v1/tasks")
        assert down.status_code == 503, down.text
        await asyncio.sleep(3)
        await asyncio.to_thread(own_mongo.start)

        # Then the api answers again and takes new tasks
        deadline = time.monotonic() + 30
        while (await http.get("/api/v1/tasks")).status_code != 200:
            assert time.monotonic() < deadline, "the api did not recover"
            await asyncio.sleep(0.2)
        ids += await submit_many(http, 10, {"rounds": 2, "round_s": 0.1})

    # And the workers, still the same processes, end every task exactly once
    await until_all_final(own_store, ids, timeout_s=120)
    assert all(services.workers[name].poll() is None for name in names)
    tally = await assert_nothing_lost_or_doubled(own_store, ids)
    assert tally.completed == len(ids)
