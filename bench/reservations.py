"""Reservations' cost: no-op tasks, each taking one of 100 resources exclusively, against none.

The same end-to-end run as `bench.throughput` (HTTP submit, one task per request → run → pushed
over WebSocket), with and without `exclusive_resources: ["vm:bench-<i mod 100>"]`. Each
reserved task enters its resource's queue at submission and leaves it at its end (two more
single-document writes); those submitted while their resource is held are stored `blocked` and
queued by the holder's end. Runs alternate between the two, each on a fresh stack; the figures
are their medians. Goal: with reservations, within 15 % of without.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp

from bench.env import machine
from bench.throughput import IN_FLIGHT, Stack, _http, _post, _throughput_warmup, stack, subscribed

RESULTS = "latest"
TASKS = int(os.environ.get("BENCH_TASKS", "1000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
#: Distinct resources the reserved tasks take.
RESOURCES = 100


async def _submit(http: aiohttp.ClientSession, count: int, reserved: bool) -> set[str]:
    ids: set[str] = set()
    queue = iter(range(count))

    async def sender() -> None:
        for i in queue:
            body: dict[str, Any] = {"name": "test.noop"}
            if reserved:
                body["exclusive_resources"] = [f"vm:bench-{i % RESOURCES}"]
            ids.add((await _post(http, "/api/v1/tasks", body))["id"])

    await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))
    return ids


async def _throughput(env: Stack, reserved: bool) -> float:
    async with _http(env) as http, subscribed(env) as subscriber:
        started = time.monotonic()
        ids = await _submit(http, TASKS, reserved)
        await subscriber.until_completed(ids, timeout_s=600)
        return TASKS / (time.monotonic() - started)


async def run() -> dict[str, Any]:
    """Tasks per second with and without reservations, alternating runs."""
    rates: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(RUNS):
        for label in ("without", "with"):
            async with stack() as env:
                await _throughput_warmup(env)
                rates[label].append(await _throughput(env, label == "with"))
            print(f"  {label} reservations: {rates[label][-1]:.1f} tasks/s", flush=True)
    without, with_ = (statistics.median(rates[k]) for k in ("without", "with"))
    return {
        "machine": machine(),
        "tasks": TASKS,
        "runs": RUNS,
        "resources": RESOURCES,
        "tasks_per_s_without": round(without, 1),
        "tasks_per_s_with": round(with_, 1),
        "tasks_per_s_without_runs": [round(r, 1) for r in rates["without"]],
        "tasks_per_s_with_runs": [round(r, 1) for r in rates["with"]],
        "with_over_without": round(with_ / without, 3),
        "within_goal": with_ >= 0.85 * without,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
