"""Reservations and schedules across crashes: a killed worker's task releases its resource, and a
scheduled task runs at its time though every service was restarted in between."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import httpx
import pytest

from shared.clock import utcnow
from shared.lifecycle import TaskState
from shared.records import StoredTask
from shared.store import Store
from shared.tasktypes.demo import POWER_OFF
from tests.support import eventually
from tests.support.faults import Services
from tests.support.queues import left_every_queue
from tests.support.servers import DEV_AUTH

pytestmark = pytest.mark.fault


async def submitted(http: httpx.AsyncClient, body: dict[str, object]) -> str:
    response = await http.post("/api/v1/tasks", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def state_of(store: Store, task_id: str) -> StoredTask | None:
    return await store.tasks.get(task_id)


async def until_final(store: Store, task_id: str, timeout_s: float) -> StoredTask:
    """The task once it ended."""
    task = await eventually(
        lambda: state_of(store, task_id), lambda t: t is not None and t.final, timeout_s=timeout_s
    )
    assert task is not None
    return task


@pytest.mark.timeout(120)
async def test_a_killed_workers_task_releases_its_resource_to_the_next_in_line(
    services: Services, http: httpx.AsyncClient, fault_store: Store
) -> None:
    # Given a worker running a power-off of web-01 (a type that fails when its worker is lost)
    await services.start_api()
    victim = services.start_worker(concurrency=2)
    await services.until_workers_beat(fault_store, [victim])
    first = await submitted(http, {"name": POWER_OFF, "args": {"vm": "vm-web-01", "delay_s": 60}})
    await eventually(
        lambda: state_of(fault_store, first),
        lambda t: t is not None and t.state is TaskState.RUNNING,
        timeout_s=30,
    )
    # and a second power-off of web-01 waiting for it
    second = await submitted(http, {"name": POWER_OFF, "args": {"vm": "vm-web-01", "delay_s": 0}})
    waiting = await state_of(fault_store, second)
    assert waiting is not None
    assert waiting.waiting_for is not None
    assert waiting.waiting_for.holder == first
    survivor = services.start_worker(concurrency=2)
    await services.until_workers_beat(fault_store, [survivor])

    # When the worker holding web-01 is killed
    services.kill_worker(victim)

    # Then the janitor fails its task, which releases web-01, and the second one runs
    done = await until_final(fault_store, second, 60)
    assert done.state is TaskState.COMPLETED
    assert done.worker is not None
    assert done.worker.name == survivor
    lost = await state_of(fault_store, first)
    assert lost is not None
    assert lost.state is TaskState.FAILED
    assert lost.error is not None
    assert lost.error.type == "worker_lost"
    assert lost.finished_at is not None
    assert done.started_at is not None
    assert lost.finished_at <= done.started_at
    await left_every_queue(fault_store, ["vm:web-01"])


@pytest.mark.timeout(120)
async def test_a_scheduled_task_runs_at_its_time_after_every_service_was_restarted(
    services: Services, fault_store: Store
) -> None:
    # Given a task scheduled 30 s ahead (starting the services again takes seconds here)
    await services.start_api()
    first_worker = services.start_worker()
    await services.until_workers_beat(fault_store, [first_worker])
    run_at = utcnow() + timedelta(seconds=30)
    async with httpx.AsyncClient(base_url=services.base_url, timeout=30, headers=DEV_AUTH) as http:
        task_id = await submitted(
            http,
            {
                "name": "test.count",
                "args": {"rounds": 1, "round_s": 0.01},
                "run_at": run_at.isoformat(),
            },
        )
    scheduled = await state_of(fault_store, task_id)
    assert scheduled is not None
    assert scheduled.phase.value == "scheduled"

    # When every service is stopped, and started again (new processes) before its time
    await asyncio.to_thread(services.stop_all)
    services.workers.clear()
    await services.start_api()
    second_worker = services.start_worker()
    await services.until_workers_beat(fault_store, [second_worker])
    assert utcnow() < run_at - timedelta(seconds=1), "the restart took too long for this test"
    still = await state_of(fault_store, task_id)
    assert still is not None
    assert still.phase.value == "scheduled"

    # Then it starts at its time, within a second
    done = await until_final(fault_store, task_id, 30)
    assert done.state is TaskState.COMPLETED
    started: datetime | None = done.started_at
    assert started is not None
    assert abs((started - run_at).total_seconds()) <= 1.0, (started, run_at)
    assert done.worker is not None
    assert done.worker.name == second_worker
