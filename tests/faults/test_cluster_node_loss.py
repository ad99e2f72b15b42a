"""A RabbitMQ cluster losing the node that leads the tasks queue, under a steady load.

Three nodes (tests/support/cluster.py), tasklight's quorum queues replicated on all three, the
api and two workers given every node's address. They all start on the first node, which also
leads the tasks queue (it was declared there): losing it costs every connection and the queue's
leader at once. Submissions arrive at a steady rate throughout; afterwards the task documents
must show every accepted task ended, once, and the completion rate must have come back within
`RECOVERY_BUDGET_S` (the figure docs/deploy.md states).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest

from shared.clock import utcnow
from shared.store import Store
from shared.topology import Topology
from tests.support.cluster import Node, RabbitCluster
from tests.support.faults import (
    Services,
    Tally,
    assert_nothing_lost_or_doubled,
    check_invariant,
    report_figures,
    until_all_final,
)
from tests.support.load import Recovery, SteadyLoad, finish_times, recovery
from tests.support.servers import DEV_AUTH

pytestmark = pytest.mark.fault

#: Submissions per second: well inside what this machine sustains, so a dip is the fault's doing.
RATE_PER_S = 5.0
#: Seconds into the load at which the node is harmed: time for a baseline first.
FAULT_AT_S = 6.0
#: Seconds of load, by harm: until well after the rate should have recovered.
LOAD_S = {"killed": 20.0, "paused": 32.0}
#: Each task counts two rounds of 0.2 s: in flight on a worker when the node goes.
TASK = {"name": "test.count", "args": {"rounds": 2, "round_s": 0.2}}
#: Seconds within which the completion rate must be back to 80 % of what it was, after a node
#: is killed (connections fail at once: the budget is the reconnection and the queue's new
#: leader) and after it is paused (nothing fails: the heartbeat, 2 s here, has to miss three
#: times, about 9 s, before the services move on, and the other nodes give it up only after
#: their net_ticktime, 10 s here; until then declaring anything waits for it).
RECOVERY_BUDGET_S = {"killed": 10.0, "paused": 30.0}
#: Seconds a paused node stays paused.
PAUSE_S = 15.0


@pytest.fixture
async def cluster_http(cluster_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the test's api process on the cluster."""
    async with httpx.AsyncClient(
        base_url=cluster_services.base_url, timeout=30, headers=DEV_AUTH
    ) as client:
        yield client


async def start_stack(services: Services, store: Store) -> None:
    await services.start_api()
    names = [services.start_worker(concurrency=4), services.start_worker(concurrency=4)]
    await services.until_workers_beat(store, names)


async def until_rejoined(
    cluster: RabbitCluster, node: Node, queue: str, timeout_s: float
) -> float | None:
    """Wait until `node` runs in the cluster again and is an online member of `queue`; the
    seconds it took, None if not within `timeout_s`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        asking = cluster.any_running(but=node)
        running = await asyncio.to_thread(cluster.running_nodes, asking)
        entry = await asyncio.to_thread(cluster.queue, queue, asking)
        if node.name in running and node.name in entry["online"]:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    return None


async def load_with_fault(
    cluster: RabbitCluster,
    services: Services,
    http: httpx.AsyncClient,
    store: Store,
    harm: str,
) -> tuple[SteadyLoad, datetime, Node]:
    """Run the steady load, and `FAULT_AT_S` into it kill or pause the tasks queue's leader
    (resuming it after `PAUSE_S`); the load, when the node was harmed, and the node."""
    await start_stack(services, store)
    queue = Topology(services.settings.namespace).tasks_queue
    entry = await asyncio.to_thread(cluster.queue, queue)
    assert len(entry["online"]) == 3, f"the tasks queue should have three replicas: {entry}"
    leader = await asyncio.to_thread(cluster.leader, queue)
    load = SteadyLoad(http, RATE_PER_S, LOAD_S[harm], TASK)
    running = asyncio.create_task(load.run())
    await asyncio.sleep(FAULT_AT_S)
    harmed_at = utcnow()
    if harm == "killed":
        await asyncio.to_thread(cluster.kill, leader)
    else:
        cluster.pause(leader)
        try:
            await asyncio.sleep(PAUSE_S)
        finally:
            cluster.resume(leader)
    await running
    return load, harmed_at, leader


@dataclass
class Settled:
    """How the accepted tasks ended after a fault."""

    tally: Tally
    rate: Recovery
    #: Why waiting for every task to end failed, if it did (raised after the figures).
    unfinished: AssertionError | None
    #: Seconds from the end of the load until every accepted task was final.
    drained_s: float

    def figures(self, load: SteadyLoad) -> dict[str, Any]:
        """What the test reports."""
        return {
            "accepted": len(load.accepted),
            "completed": self.tally.completed,
            "lost": self.tally.missing,
            "stuck": self.tally.stuck,
            "duplicated": self.tally.duplicates,
            "requeues": self.tally.requeues,
            "answered_503": load.unavailable,
            "refused": load.refused,
            "baseline_per_s": self.rate.baseline_per_s,
            "lowest_per_s": self.rate.lowest_per_s,
            "recovery_s": self.rate.recovery_s,
            "drained_s": self.drained_s,
        }

    async def assert_every_task_ended_once(self, store: Store, load: SteadyLoad) -> None:
        """The invariant of the fault tests, over the accepted tasks."""
        if self.unfinished is not None:
            raise self.unfinished
        tally = await assert_nothing_lost_or_doubled(store, load.accepted)
        assert tally.completed == len(load.accepted)
        assert load.refused == 0, f"{load.refused} submissions refused for a minute"


async def settle(store: Store, load: SteadyLoad, harmed_at: datetime) -> Settled:
    """Wait for the accepted tasks to end; count how they did and when the rate recovered."""
    unfinished: AssertionError | None = None
    drained_s = -1.0
    try:
        drained_s = await until_all_final(store, load.accepted, timeout_s=120)
    except AssertionError as exc:
        unfinished = exc
    tally = await check_invariant(store, load.accepted)
    docs = [doc async for doc in store.tasks.collection.find({"_id": {"$in": load.accepted}})]
    rate = recovery(finish_times(docs), harmed_at, horizon_s=load.duration_s - FAULT_AT_S)
    return Settled(tally, rate, unfinished, drained_s)


@pytest.mark.timeout(300)
async def test_the_tasks_queue_leader_killed_under_load_loses_and_doubles_nothing(
    rabbit_cluster: RabbitCluster,
    cluster_services: Services,
    cluster_http: httpx.AsyncClient,
    fault_store: Store,
) -> None:
    # Given the api and two workers on the cluster, and a steady stream of submissions
    started = time.monotonic()
    queue = Topology(cluster_services.settings.namespace).tasks_queue

    # When the node leading the tasks queue is killed with SIGKILL in the middle of it
    load, killed_at, leader = await load_with_fault(
        rabbit_cluster, cluster_services, cluster_http, fault_store, "killed"
    )
    new_leader = await asyncio.to_thread(rabbit_cluster.leader, queue)
    settled = await settle(fault_store, load, killed_at)
    # (the node, started again, must rejoin the cluster and the queue)
    await asyncio.to_thread(rabbit_cluster.restart, leader)
    rejoined_s = await until_rejoined(rabbit_cluster, leader, queue, timeout_s=60)
    report_figures(
        "cluster: leader killed",
        **settled.figures(load),
        new_leader=new_leader.name,
        rejoined_in_s=rejoined_s,
        wall_s=time.monotonic() - started,
    )

    # Then every accepted task ends, once, and another node leads the queue
    await settled.assert_every_task_ended_once(fault_store, load)
    assert new_leader is not leader
    assert rejoined_s is not None, f"{leader.name} did not rejoin within 60 s of its restart"
    # And the completion rate comes back within the budget
    assert settled.rate.recovery_s is not None, "the completion rate never recovered"
    assert settled.rate.recovery_s <= RECOVERY_BUDGET_S["killed"]


@pytest.mark.timeout(300)
async def test_the_tasks_queue_leader_paused_under_load_loses_and_doubles_nothing(
    rabbit_cluster: RabbitCluster,
    cluster_services: Services,
    cluster_http: httpx.AsyncClient,
    fault_store: Store,
) -> None:
    # Given the api and two workers on the cluster, and a steady stream of submissions
    started = time.monotonic()
    queue = Topology(cluster_services.settings.namespace).tasks_queue

    # When the node leading the tasks queue is paused (SIGSTOP) for 15 s, then resumed: its
    # sockets stay open, it answers nothing
    load, paused_at, leader = await load_with_fault(
        rabbit_cluster, cluster_services, cluster_http, fault_store, "paused"
    )
    settled = await settle(fault_store, load, paused_at)
    # (the node, resumed, must be part of the cluster and the queue again)
    rejoined_s = await until_rejoined(rabbit_cluster, leader, queue, timeout_s=90)
    report_figures(
        "cluster: leader paused",
        **settled.figures(load),
        paused_s=PAUSE_S,
        rejoined_in_s=rejoined_s,
        wall_s=time.monotonic() - started,
    )

    # Then every accepted task ends, once, and the node is back
    await settled.assert_every_task_ended_once(fault_store, load)
    assert rejoined_s is not None, f"{leader.name} not back within 90 s of being resumed"
    # And the completion rate comes back within the budget
    assert settled.rate.recovery_s is not None, "the completion rate never recovered"
    assert settled.rate.recovery_s <= RECOVERY_BUDGET_S["paused"]
