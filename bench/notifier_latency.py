"""Latency from a task change being committed to a subscriber receiving it, at fixed rates.

A writer changes tasks at an open-loop rate (a progress update, as a worker makes one: a
conditional update that bumps `version`); one `scope: all` subscriber receives them. Latency is
measured from the moment the database acknowledged the write (committed, with
--sync-on-commit) to the moment the subscriber has the message, on one clock. The writer and
the subscriber share this process; the notifier runs in its own. `committed_per_s` is the rate
the database sustained (each commit is an fsync): when it is below the rate asked for, the
writes queued in the database, and the latency figures are for the sustained rate.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from pymongo import ReturnDocument
from websockets.asyncio.client import connect

from bench.env import BENCH_USER, NotifierEnv, machine, notifier_env, percentile
from shared.clock import utcnow
from shared.ids import new_task_id
from shared.records import new_task
from shared.store.tasks import document

RESULTS = "latest"
#: Changes per second to measure at.
RATES = (50, 200)
#: Seconds of changes at each rate.
DURATION_S = 10.0
#: Tasks the changes go round (so no task changes twice within a few ms: no coalescing).
TASKS = 200


async def run() -> dict[str, Any]:
    """Measure at each rate; returns the figures."""
    figures: dict[str, Any] = {"machine": machine(), "duration_s": DURATION_S}
    async with notifier_env() as env:
        ids = [new_task_id() for _ in range(TASKS)]
        for task_id in ids:
            doc = document(
                new_task(task_id=task_id, name="bench", args={}, owner=BENCH_USER, at=utcnow())
            )
            await env.store.tasks.collection.insert_one(doc)
        for rate in RATES:
            figures[f"{rate}_per_s"] = await measure(env, ids, rate)
    return figures


async def measure(env: NotifierEnv, ids: list[str], rate: int) -> dict[str, Any]:
    """Changes at `rate` per second for DURATION_S; latency percentiles in milliseconds."""
    received: dict[tuple[str, int], float] = {}
    committed: dict[tuple[str, int], float] = {}
    write_ms: list[float] = []
    async with connect(
        env.ws_url, compression=None, max_size=None, additional_headers=env.headers
    ) as ws:
        await ws.send(json.dumps({"type": "subscribe", "id": "s", "scope": "all"}))
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass

        async def read() -> None:
            async for frame in ws:
                now = time.perf_counter()
                message = json.loads(frame)
                if message["type"] == "task":
                    received[(message["task"]["id"], message["task"]["version"])] = now

        async def change(task_id: str, step: int) -> None:
            sent = time.perf_counter()
            doc = await env.store.tasks.collection.find_one_and_update(
                {"_id": task_id},
                {
                    "$set": {
                        "progress_reports": [
                            {"message": "bench", "code": "bench", "state": "running", "done": step}
                        ],
                        "updated_at": utcnow(),
                    },
                    "$inc": {"version": 1},
                },
                projection={"version": 1},
                return_document=ReturnDocument.AFTER,
            )
            acked = time.perf_counter()
            assert doc is not None
            committed[(task_id, doc["version"])] = acked
            write_ms.append((acked - sent) * 1000)

        reader = asyncio.create_task(read())
        writes = []
        start = time.perf_counter()
        total = int(rate * DURATION_S)
        for n in range(total):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            writes.append(asyncio.create_task(change(ids[n % len(ids)], n)))
        await asyncio.gather(*writes)
        deadline = time.perf_counter() + 5
        while len(received.keys() & committed.keys()) < len(committed):
            if time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.01)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    latencies = [(received[k] - t) * 1000 for k, t in committed.items() if k in received]
    span_s = max(committed.values()) - start
    return {
        "changes": total,
        # What the database actually committed: with --sync-on-commit every commit is an
        # fsync, which may hold the rate below the one asked for.
        "committed_per_s": round(total / span_s, 1),
        "received": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
        "write_p50_ms": round(percentile(write_ms, 0.50), 2),
        "write_p99_ms": round(percentile(write_ms, 0.99), 2),
    }
