"""Reservations' cost: no-op tasks taking a resource exclusively, against the same without.

The same end-to-end run as `bench.throughput` (HTTP submit, one task per request → run → pushed
over WebSocket), in three kinds of run, alternated, each on a fresh stack:

- `without`: no reservations;
- `distinct`: each task takes a resource of its own (`vm:bench-<i>`): nothing conflicts, so this
  is what the reservation machinery itself costs (each task enters its queue at submission and
  leaves it at its end);
- `shared_100`: each task takes one of 100 resources (`vm:bench-<i mod 100>`), ten tasks on each:
  the tasks of one resource run one after the other, so most are stored `blocked` and queued by
  their holder's end (a hand-over costs reads and writes of its own, and no two of a resource's
  tasks may overlap, however idle the workers).

The figures are the medians of each kind, and, from one more run of each behind a counting
proxy (bench/wire.py), the database commands and statements per task. Goal: with reservations,
within 15 % of without.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from pymongo import AsyncMongoClient

from bench.env import machine, percentile
from bench.handover import handover_gaps_ms
from bench.throughput import (
    DATABASE,
    IN_FLIGHT,
    Stack,
    _http,
    _post,
    _throughput_warmup,
    stack,
    subscribed,
)
from shared.store.documents import Doc

RESULTS = "latest"
TASKS = int(os.environ.get("BENCH_TASKS", "1000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
#: The resources the tasks of the shared run take, ten tasks to each at the default count.
RESOURCES = 100

#: The resource of task `i` in each kind of run (None: no reservation).
KINDS: dict[str, Callable[[int], str | None]] = {
    "without": lambda _: None,
    "distinct": lambda i: f"vm:bench-{i}",
    "shared_100": lambda i: f"vm:bench-{i % RESOURCES}",
}


async def _submit(
    http: aiohttp.ClientSession, count: int, resource_of: Callable[[int], str | None]
) -> set[str]:
    ids: set[str] = set()
    queue = iter(range(count))

    async def sender() -> None:
        for i in queue:
            body: dict[str, Any] = {"name": "test.noop"}
            resource = resource_of(i)
            if resource is not None:
                body["exclusive_resources"] = [resource]
            ids.add((await _post(http, "/api/v1/tasks", body))["id"])

    await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))
    return ids


async def _throughput(env: Stack, kind: str) -> float:
    rate, _ = await _run(env, kind)
    return rate


async def _run(env: Stack, kind: str) -> tuple[float, set[str]]:
    """Tasks per second of one run, and the tasks' ids."""
    async with _http(env) as http, subscribed(env) as subscriber:
        started = time.monotonic()
        ids = await _submit(http, TASKS, KINDS[kind])
        await subscriber.until_completed(ids, timeout_s=600)
        return TASKS / (time.monotonic() - started), ids


async def _stored(env: Stack, ids: set[str]) -> list[Doc]:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(env.database.url, tz_aware=True)
    try:
        fields = {"reservations": 1, "started_at": 1, "finished_at": 1}
        cursor = client[DATABASE]["tasks"].find({"_id": {"$in": list(ids)}}, fields)
        return [task async for task in cursor]
    finally:
        await client.close()


async def _commands(kind: str) -> dict[str, dict[str, float]]:
    async with stack(count=True) as env:
        await _throughput_warmup(env)
        assert env.wire is not None
        env.wire.reset()
        await _throughput(env, kind)
        return env.wire.reset().per_task(TASKS)


async def run() -> dict[str, Any]:
    """Tasks per second of each kind of run, alternating; database commands per task."""
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    gaps: list[float] = []
    for _ in range(RUNS):
        for kind in KINDS:
            async with stack() as env:
                await _throughput_warmup(env)
                rate, ids = await _run(env, kind)
                rates[kind].append(rate)
                if kind == "shared_100":
                    gaps += handover_gaps_ms(await _stored(env, ids))
            print(f"  {kind}: {rates[kind][-1]:.1f} tasks/s", flush=True)
    median = {kind: statistics.median(found) for kind, found in rates.items()}
    without = median["without"]
    return {
        "machine": machine(),
        "tasks": TASKS,
        "runs": RUNS,
        "resources": RESOURCES,
        "tasks_per_s_without": round(without, 1),
        # The row of the report: ten tasks to each of 100 resources.
        "tasks_per_s_with": round(median["shared_100"], 1),
        "tasks_per_s_distinct": round(median["distinct"], 1),
        "runs_tasks_per_s": {kind: [round(r, 1) for r in found] for kind, found in rates.items()},
        "with_over_without": round(median["shared_100"] / without, 3),
        "distinct_over_without": round(median["distinct"] / without, 3),
        "within_goal": median["shared_100"] >= 0.85 * without,
        "distinct_within_goal": median["distinct"] >= 0.85 * without,
        # shared_100, every run: from a holder's end to its successor's start.
        "handover_gap_ms": {
            "p50": round(percentile(gaps, 0.5), 1) if gaps else None,
            "p90": round(percentile(gaps, 0.9), 1) if gaps else None,
            "count": len(gaps),
        },
        "database_per_task": {kind: await _commands(kind) for kind in KINDS},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
