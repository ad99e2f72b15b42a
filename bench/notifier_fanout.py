"""How many idle subscribers one notifier process holds, its memory per connection, and how long
one change takes to reach all of them.

Opens CONNECTIONS `scope: all` subscribers (from this process, in batches) to one notifier
process; reads the notifier's resident memory before and after (RSS delta / connections); then
changes a task once and times its arrival at every subscriber. Then the same with 1,000
subscribers naming one task. The subscribers are `bench.wsload`'s: a couple of microseconds per
frame, so that the figure is the notifier's fan-out, not this process reading 10,000 frames.
Latency is from the database acknowledging the write to the frame's bytes arriving here; on a
busy machine it measures the machine too, so each change also reports the notifier's own CPU time
(`notifier_cpu_ms`, from the change to the last arrival).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.env import BENCH_USER, NotifierEnv, machine, notifier_env, percentile, raise_fd_limit
from bench.wsload import Subscriber, subscribe
from shared.clock import utcnow
from shared.ids import new_task_id
from shared.records import new_task
from shared.store.tasks import document

RESULTS = "latest"
#: Idle subscribers to hold (the goal: 10,000).
CONNECTIONS = 10_000
#: Connections opened at once.
BATCH = 250
#: Seconds to let memory settle before reading it.
SETTLE_S = 3.0
#: Changes timed per measurement (the figures are of all their arrivals together).
CHANGES = 3


async def run() -> dict[str, Any]:
    """10,000 `scope: all` subscribers: memory and one change's fan-out; then 1,000 of a task."""
    figures = await measure(CONNECTIONS, scope_all=True)
    small = await measure(1_000, scope_all=False)
    figures["fanout_one_change_1000_subscribers"] = small["fanout_one_change"]
    return figures


async def measure(count: int, *, scope_all: bool) -> dict[str, Any]:
    """Connect `count` subscribers, measure memory, change the task, time each fan-out."""
    fd_limit = raise_fd_limit()
    if fd_limit < count + 500:
        raise RuntimeError(f"the open-file limit ({fd_limit}) is below {count + 500}")
    # No keepalive pings during the run: each would be a frame to every subscriber.
    async with notifier_env(ws_ping_interval_s=600) as env:
        task_id = new_task_id()
        doc = document(
            new_task(task_id=task_id, name="bench", args={}, owner=BENCH_USER, at=utcnow())
        )
        await env.store.tasks.collection.insert_one(doc)
        spec: dict[str, Any] = {"type": "subscribe", "id": "s"}
        spec |= {"scope": "all"} if scope_all else {"tasks": [task_id]}
        # Warm up: the first connections load code and fill caches that are not per connection.
        warm = [await subscribe(env.settings.notifier_port, env.headers, spec) for _ in range(20)]
        await asyncio.sleep(SETTLE_S)
        before = env.notifier_rss_bytes()
        started = time.perf_counter()
        subscribers: list[Subscriber] = []
        for start in range(0, count, BATCH):
            size = min(BATCH, count - start)
            subscribers += await asyncio.gather(
                *(subscribe(env.settings.notifier_port, env.headers, spec) for _ in range(size))
            )
        connect_s = time.perf_counter() - started
        await asyncio.sleep(SETTLE_S)
        after = env.notifier_rss_bytes()
        runs = [
            await time_fanout(env, task_id, subscribers, version)
            for version in range(2, 2 + CHANGES)
        ]
        for subscriber in subscribers + warm:
            subscriber.close()
    return {
        "machine": machine(),
        "connections": len(subscribers),
        "scope": "all" if scope_all else "one task",
        "connect_s": round(connect_s, 1),
        "rss_before_mib": round(before / 2**20, 1),
        "rss_after_mib": round(after / 2**20, 1),
        "kib_per_connection": round((after - before) / len(subscribers) / 1024, 1),
        "fanout_one_change": _combined(runs),
    }


async def time_fanout(
    env: NotifierEnv, task_id: str, subscribers: list[Subscriber], version: int
) -> dict[str, Any]:
    """Change the task once (to `version`); milliseconds until each subscriber has it."""
    for subscriber in subscribers:
        subscriber.arm(f'"version":{version}'.encode())
    await asyncio.sleep(0.5)
    cpu_before = env.notifier_cpu_s()
    sent = time.perf_counter()
    await env.store.tasks.collection.update_one(
        {"_id": task_id}, {"$set": {"updated_at": utcnow()}, "$inc": {"version": 1}}
    )
    committed = time.perf_counter()
    arrivals = [subscriber.arrived for subscriber in subscribers]
    await asyncio.wait(arrivals, timeout=60)
    cpu_ms = (env.notifier_cpu_s() - cpu_before) * 1000
    delays = [(a.result() - committed) * 1000 for a in arrivals if a.done() and not a.exception()]
    return {
        "received": len(delays),
        "commit_ms": (committed - sent) * 1000,
        "delays": delays,
        "cpu_ms": cpu_ms,
    }


def _combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of each change's fan-out: the median change's, and every change's `all_ms`."""
    alls = [max(run["delays"]) for run in runs]
    ranked = sorted(range(len(runs)), key=lambda i: alls[i])
    median = runs[ranked[len(ranked) // 2]]
    delays = median["delays"]
    return {
        "changes": len(runs),
        "received": median["received"],
        "commit_ms": round(median["commit_ms"], 1),
        "p50_ms": round(percentile(delays, 0.5), 1),
        "p99_ms": round(percentile(delays, 0.99), 1),
        "all_ms": round(max(delays), 1),
        "all_ms_each": [round(a, 1) for a in alls],
        "notifier_cpu_ms": round(median["cpu_ms"], 1),
        "notifier_cpu_ms_each": [round(run["cpu_ms"], 1) for run in runs],
    }
