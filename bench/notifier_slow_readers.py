"""What clients that do not read cost the notifier: memory while they are flooded, how long they
stay open, and what is left once they are gone.

SLOW_READERS `scope: all` connections subscribe and then stop reading (a 4 KiB receive buffer,
reading paused), while TASKS tasks of BLOB_BYTES each are stored, each one pushed to every
subscriber: TASKS x BLOB_BYTES bytes per connection that cannot go out. The notifier's resident
memory is sampled throughout (`rss_peak_mib`); `closed_after_s` is how long after the flood
ended the notifier had closed them all (its `tasklight_ws_connections` gauge down to the one
healthy subscriber, which reads everything and must get the last task).

The bound (docs/protocol.md, "Slow clients"): each such connection holds at most
`ws_queue_limit_bytes` of pending frames and its socket's write buffer, so the notifier's memory
may grow by at most `rss_growth_bound_mib` = SLOW_READERS x (`ws_queue_limit_bytes` + 64 KiB)
+ SLACK_MIB (the interpreter's own allocations).
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx

from bench.env import BENCH_USER, NotifierEnv, machine, notifier_env
from bench.wsload import Subscriber, upgrade_request
from shared.clock import utcnow
from shared.ids import new_task_id
from shared.records import new_task
from shared.settings import Settings
from shared.store.tasks import document

RESULTS = "latest"
SLOW_READERS = 4
TASKS = 900
BLOB_BYTES = 32_000
#: What the interpreter may allocate besides the connections' buffers, in MiB.
SLACK_MIB = 16.0
#: Seconds to wait for the notifier to close the slow connections.
CLOSE_WAIT_S = 150.0
SUBSCRIBE = {"type": "subscribe", "id": "s", "scope": "all"}


async def run() -> dict[str, Any]:
    """Flood SLOW_READERS non-reading connections; the notifier's memory and how it ended."""
    async with notifier_env() as env:
        metrics_port = env.settings.notifier_metrics_port
        healthy = await _connect(env, receive_buffer=None)
        await asyncio.sleep(2.0)
        before = env.notifier_rss_bytes()
        slow = [await _connect(env, receive_buffer=4096) for _ in range(SLOW_READERS)]
        for subscriber in slow:
            assert subscriber.transport is not None
            subscriber.transport.pause_reading()
        peak = before
        sampling = True

        async def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, env.notifier_rss_bytes())
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        ids = [new_task_id() for _ in range(TASKS)]
        healthy.arm(ids[-1].encode())
        blob = {"blob": "x" * BLOB_BYTES}
        started = time.perf_counter()
        for task_id in ids:
            task = new_task(
                task_id=task_id, name="bench", args={}, owner=BENCH_USER, at=utcnow(), metadata=blob
            )
            await env.store.tasks.collection.insert_one(document(task))
        flooded = time.perf_counter()
        healthy_ok = True
        try:
            async with asyncio.timeout(30):
                await healthy.arrived
        except (TimeoutError, ConnectionError):
            healthy_ok = False
        closed_after_s = await _until_only(metrics_port, 1, CLOSE_WAIT_S)
        closed_at = time.perf_counter()
        await asyncio.sleep(2.0)
        sampling = False
        await sampler
        after = env.notifier_rss_bytes()
        for subscriber in [*slow, healthy]:
            subscriber.close()
    return {
        "machine": machine(),
        "slow_readers": SLOW_READERS,
        "tasks": TASKS,
        "task_bytes": BLOB_BYTES,
        "flood_s": round(flooded - started, 1),
        "rss_before_mib": round(before / 2**20, 1),
        "rss_peak_mib": round(peak / 2**20, 1),
        "rss_after_close_mib": round(after / 2**20, 1),
        "rss_growth_mib": round((peak - before) / 2**20, 1),
        "rss_growth_bound_mib": round(growth_bound_mib(), 1),
        "closed_after_s": None if closed_after_s is None else round(closed_at - flooded, 1),
        "healthy_received_all": healthy_ok,
    }


def growth_bound_mib() -> float:
    """How much the notifier's memory may grow under this attack (the documented bound)."""
    per_connection = Settings().ws_queue_limit_bytes + 64 * 1024
    return SLOW_READERS * per_connection / 2**20 + SLACK_MIB


async def _connect(env: NotifierEnv, *, receive_buffer: int | None) -> Subscriber:
    """A subscribed connection; with `receive_buffer`, a socket that holds only that much."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", env.settings.notifier_port))
    request = upgrade_request(env.settings.notifier_port, env.headers)
    _, subscriber = await loop.create_connection(lambda: Subscriber(request, SUBSCRIBE), sock=sock)
    async with asyncio.timeout(30):
        await subscriber.ready
    return subscriber


async def _until_only(port: int, connections: int, timeout_s: float) -> float | None:
    """Seconds until the notifier reports at most `connections` open (its metrics, on `port`);
    None if it never did."""
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        while time.perf_counter() - started < timeout_s:
            text = (await http.get("/metrics")).text
            for line in text.splitlines():
                gauge = line.startswith("tasklight_ws_connections ")
                if gauge and float(line.split()[1]) <= connections:
                    return time.perf_counter() - started
            await asyncio.sleep(0.2)
    return None
