"""Workers killed with SIGKILL mid-task: every task still ends once, none is lost or doubled."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import httpx
import pytest

from shared.clock import utcnow
from shared.store import Store
from tests.support import FINAL
from tests.support.faults import (
    Services,
    assert_nothing_lost_or_doubled,
    report_figures,
    submit_many,
    until_all_final,
)

pytestmark = pytest.mark.fault

#: The lease settings at their defaults (the other fault tests run on quicker ones).
DEFAULT_LEASE_ENV = {
    "TASKLIGHT_LEASE_S": "5",
    "TASKLIGHT_LEASE_RENEW_S": "1",
    "TASKLIGHT_JANITOR_INTERVAL_S": "1",
}
#: Seconds from a worker's SIGKILL by which its last task must be back in the queue.
REQUEUED_WITHIN_S = 6.0


async def until_requeued(store: Store, worker: str, *, since: float, timeout_s: float) -> float:
    """Seconds from `since` (monotonic) until no task is held by a run of `worker` any more
    (each requeued, or ended); fails after `timeout_s`."""
    started = since
    query = {"phase": "held", "run.worker": worker}
    while await store.tasks.collection.count_documents(query):
        assert time.monotonic() - started < timeout_s, f"{worker}'s tasks still held"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.timeout(180)
async def test_a_worker_killed_mid_task_loses_nothing_and_doubles_nothing(
    services: Services, http: httpx.AsyncClient, fault_store: Store
) -> None:
    # Given two workers on the default lease settings, running several counting tasks each
    services.env.update(DEFAULT_LEASE_ENV)
    await services.start_api()
    names = [services.start_worker(concurrency=4), services.start_worker(concurrency=4)]
    await services.until_workers_beat(fault_store, names)
    ids = await submit_many(http, 12, {"rounds": 10, "round_s": 0.2})
    victim = names[0]
    deadline = time.monotonic() + 30
    while await fault_store.tasks.collection.count_documents({"run.worker": victim}) < 2:
        assert time.monotonic() < deadline, "the victim never ran two tasks at once"
        await asyncio.sleep(0.05)

    # When one of them is killed in the middle of its tasks
    services.kill_worker(victim)
    killed_at = time.monotonic()
    held = await fault_store.tasks.collection.count_documents(
        {"run.worker": victim, "phase": "held"}
    )

    # Then its tasks are back in the queue within the lease and a sweep, and the other finishes
    # every task, those of the dead worker after a requeue
    requeued_s = await until_requeued(fault_store, victim, since=killed_at, timeout_s=60)
    await until_all_final(fault_store, ids, timeout_s=90)
    tally = await assert_nothing_lost_or_doubled(fault_store, ids)
    assert tally.completed == len(ids)
    lost = await fault_store.tasks.collection.count_documents(
        {"attempts": {"$elemMatch": {"outcome": "worker_lost", "worker": victim}}}
    )
    assert lost >= 2, "the killed worker's tasks should have been requeued"
    report_figures(
        "worker killed (5 s lease)",
        held_at_kill=held,
        last_requeued_after_s=requeued_s,
        tasks=tally.tasks,
        completed=tally.completed,
        duplicates=tally.duplicates,
    )
    assert requeued_s <= REQUEUED_WITHIN_S, f"last task requeued {requeued_s:.1f} s after SIGKILL"


async def report_stragglers(store: Store, ids: list[str], alive: set[str]) -> None:
    """Say, in the session's figures, where the tasks that did not end are: how many in each
    state and phase, held by a worker alive or killed, and how each worker's lease stands."""
    where: Counter[str] = Counter()
    query = {"_id": {"$in": ids}, "state": {"$nin": list(FINAL)}}
    async for doc in store.tasks.collection.find(query):
        holder = (doc.get("run") or {}).get("worker")
        status = "none" if holder is None else "alive" if holder in alive else "killed"
        where[f"{doc['state']}/{doc.get('phase')}/holder-{status}"] += 1
    now = utcnow()
    leases = {
        str(doc["_id"]): round((doc["lease_until"] - now).total_seconds(), 1)
        async for doc in store.workers.collection.find({}, {"lease_until": 1})
        if doc.get("lease_until") is not None
    }
    report_figures("thousand tasks: not final", **where, lease_left_s=leases, alive=sorted(alive))


#: Tasks of the random-kill test, and how many workers it kills at most.
MANY_TASKS = 1000
MAX_KILLS = 6
#: Seconds between kills.
KILL_EVERY_S = 6.0


# On the embedded database every write is an fsync (about 70 a second here, about ten a task):
# a thousand tasks take about three minutes on two cores, more on a loaded one.
@pytest.mark.timeout(480)
async def test_a_thousand_tasks_all_finish_while_workers_are_killed_at_random(
    services: Services, http: httpx.AsyncClient, fault_store: Store
) -> None:
    # Given three workers and a thousand short tasks
    started = time.monotonic()
    # On the default lease, and a kill every lease or so: on the quick one (a 1.5 s fence) the
    # thousand tasks' writes hold renewals past the fence and every worker stops its own tasks;
    # killed faster than a lease, no janitor lives long enough to judge anyone's lease.
    services.env.update(DEFAULT_LEASE_ENV)
    await services.start_api()
    names = [services.start_worker() for _ in range(3)]
    await services.until_workers_beat(fault_store, names)
    chance = random.Random()
    kills = 0

    async def kill_at_random() -> None:
        nonlocal kills
        while kills < MAX_KILLS:
            await asyncio.sleep(KILL_EVERY_S)
            services.kill_worker(chance.choice(sorted(services.workers)))
            kills += 1
            services.start_worker()

    # When every 6 s one worker is killed and a replacement started, while tasks arrive
    killer = asyncio.create_task(kill_at_random())
    try:
        ids = await submit_many(http, MANY_TASKS, {"rounds": 1, "round_s": 0.02})
        submitted_s = time.monotonic() - started
        try:
            await until_all_final(fault_store, ids, timeout_s=300)
        except AssertionError:
            await report_stragglers(fault_store, ids, set(services.workers))
            raise
    finally:
        killer.cancel()

    # Then every task finished, once
    tally = await assert_nothing_lost_or_doubled(fault_store, ids)
    wall_s = time.monotonic() - started
    report_figures(
        "thousand tasks, workers killed at random",
        tasks=tally.tasks,
        completed=tally.completed,
        workers_killed=kills,
        requeues=tally.requeues,
        losses=tally.losses,
        duplicates=tally.duplicates,
        submitted_in_s=submitted_s,
        wall_s=wall_s,
    )
    assert kills >= 3, "too few faults were injected to mean anything"
    not_completed = [
        doc
        async for doc in fault_store.tasks.collection.find(
            {"_id": {"$in": ids}, "state": {"$ne": "completed"}}
        )
    ]
    # A count lost with its worker on each of its allowed runs fails saying so; nothing else.
    assert all(d["error"]["type"] == "worker_lost" for d in not_completed), not_completed[:3]
