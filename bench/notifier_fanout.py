"""How many idle subscribers one notifier process holds, its memory per connection, and how long
one change takes to reach all of them.

Opens CONNECTIONS WebSocket connections (from this process, in batches) to one notifier process,
each subscribed to the same task; reads the notifier's resident memory before and after (RSS
delta / connections); then changes the task once and times its arrival at every subscriber.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.env import BENCH_USER, NotifierEnv, machine, notifier_env, percentile, raise_fd_limit
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


async def run() -> dict[str, Any]:
    """10,000 subscribers: memory and one change's fan-out; then the fan-out to 1,000."""
    figures = await measure(CONNECTIONS)
    small = await measure(1_000)
    figures["fanout_one_change_1000_subscribers"] = small["fanout_one_change"]
    return figures


async def measure(count: int) -> dict[str, Any]:
    """Connect `count` subscribers, measure, change once, time the fan-out."""
    fd_limit = raise_fd_limit()
    if fd_limit < count + 500:
        raise RuntimeError(f"the open-file limit ({fd_limit}) is below {count + 500}")
    async with notifier_env() as env:
        task_id = new_task_id()
        doc = document(
            new_task(task_id=task_id, name="bench", args={}, owner=BENCH_USER, at=utcnow())
        )
        await env.store.tasks.collection.insert_one(doc)
        # Warm up: the first connections load code and fill caches that are not per connection.
        warm = [await subscribe(env, task_id) for _ in range(20)]
        await asyncio.sleep(SETTLE_S)
        before = env.notifier_rss_bytes()
        started = time.perf_counter()
        connections: list[ClientConnection] = []
        for start in range(0, count, BATCH):
            size = min(BATCH, count - start)
            connections += await asyncio.gather(*(subscribe(env, task_id) for _ in range(size)))
        connect_s = time.perf_counter() - started
        await asyncio.sleep(SETTLE_S)
        after = env.notifier_rss_bytes()
        fanout = await time_fanout(env, task_id, connections)
        for ws in connections + warm:
            ws.transport.abort()
    return {
        "machine": machine(),
        "connections": len(connections),
        "connect_s": round(connect_s, 1),
        "rss_before_mib": round(before / 2**20, 1),
        "rss_after_mib": round(after / 2**20, 1),
        "kib_per_connection": round((after - before) / len(connections) / 1024, 1),
        "fanout_one_change": fanout,
    }


async def subscribe(env: NotifierEnv, task_id: str) -> ClientConnection:
    """A connection subscribed to `task_id`, its initial state read."""
    ws = await connect(
        env.ws_url, compression=None, open_timeout=60, max_queue=4, additional_headers=env.headers
    )
    await ws.send(json.dumps({"type": "subscribe", "id": "s", "tasks": [task_id]}))
    while json.loads(await ws.recv())["type"] != "subscribed":
        pass
    return ws


async def time_fanout(
    env: NotifierEnv, task_id: str, connections: list[ClientConnection]
) -> dict[str, Any]:
    """Change the task once; milliseconds until each subscriber has it."""
    arrived: list[float] = []

    async def receive(ws: ClientConnection) -> None:
        await ws.recv()
        arrived.append(time.perf_counter())

    readers = [asyncio.create_task(receive(ws)) for ws in connections]
    await asyncio.sleep(0.5)
    sent = time.perf_counter()
    await env.store.tasks.collection.update_one(
        {"_id": task_id}, {"$set": {"updated_at": utcnow()}, "$inc": {"version": 1}}
    )
    committed = time.perf_counter()
    _, pending = await asyncio.wait(readers, timeout=60)
    for reader in pending:
        reader.cancel()
    delays = [(t - committed) * 1000 for t in arrived]
    return {
        "received": len(arrived),
        "commit_ms": round((committed - sent) * 1000, 1),
        "p50_ms": round(percentile(delays, 0.5), 1),
        "p99_ms": round(percentile(delays, 0.99), 1),
        "all_ms": round(max(delays), 1),
    }
