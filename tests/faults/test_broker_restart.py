"""RabbitMQ restarted with 500 commands queued: the quorum queue keeps them, all tasks complete."""

from __future__ import annotations

import asyncio
import subprocess
import time

import httpx
import pytest

from shared.settings import Settings
from shared.store import Store
from tests.support.faults import (
    Services,
    assert_nothing_lost_or_doubled,
    require_rabbitmqctl,
    submit_many,
    until_all_final,
)
from tests.support.rest import queued_commands

pytestmark = pytest.mark.fault

QUEUED_TASKS = 500


async def rabbitmqctl(executable: str, *args: str, timeout_s: float = 60) -> None:
    """Run `rabbitmqctl ARGS`; fail the test if it does not succeed."""
    done = await asyncio.to_thread(
        subprocess.run,
        [executable, *args],
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.stderr.decode()}"


async def until_broker_answers(settings: Settings, timeout_s: float = 60) -> int:
    """Wait until the tasks queue can be looked at again; the commands it holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await queued_commands(settings)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


@pytest.mark.timeout(240)
async def test_commands_queued_across_a_broker_restart_all_complete(
    services: Services, http: httpx.AsyncClient, fault_store: Store, settings: Settings
) -> None:
    executable = require_rabbitmqctl()
    # Given 500 tasks queued while no worker runs
    await services.start_api()
    started = time.monotonic()
    ids = await submit_many(http, QUEUED_TASKS, {"rounds": 1, "round_s": 0.01})
    assert await queued_commands(settings) == QUEUED_TASKS

    # When the broker stops and starts again
    restart_at = time.monotonic()
    try:
        await rabbitmqctl(executable, "stop_app")
    finally:
        await rabbitmqctl(executable, "start_app")
    await rabbitmqctl(executable, "await_startup")
    assert await until_broker_answers(settings) == QUEUED_TASKS
    restarted_s = time.monotonic() - restart_at

    # Then workers started afterwards complete every one of them
    names = [services.start_worker(concurrency=8), services.start_worker(concurrency=8)]
    await services.until_workers_beat(fault_store, names)
    # And the api, which lost its broker connection, takes tasks again
    ids += await submit_many(http, 1, {"rounds": 1, "round_s": 0})
    await until_all_final(fault_store, ids, timeout_s=150)
    tally = await assert_nothing_lost_or_doubled(fault_store, ids)
    assert tally.completed == len(ids)
    print(
        f"\nbroker restart: tasks={tally.tasks} completed={tally.completed}"
        f" restart={restarted_s:.1f}s wall={time.monotonic() - started:.1f}s"
    )
