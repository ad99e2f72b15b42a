"""Recovery from a lost worker: seconds from a worker's SIGKILL until its last task is requeued.

A fresh SecantusDB, the api and two workers as processes, on the default lease settings
(`TASKLIGHT_LEASE_S` 5, `TASKLIGHT_LEASE_RENEW_S` 1, `TASKLIGHT_JANITOR_INTERVAL_S` 1). Each run
submits counting tasks, SIGKILLs the worker once it holds at least two, and times until no task
is held by it any more (the other worker's janitor saw its lease expire and requeued them). The
dead worker is replaced before the next run. Before leases, with a 30 s heartbeat timeout, this
took 33-35 s.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.throughput import _bench_user, _delete_queues
from services.stack import EmbeddedMongo, free_port, start_service, stop_processes, wait_for_port
from shared.settings import Settings
from shared.store import Store, open_store

RESULTS = "latest"
RUNS = 3
#: Tasks submitted per run, each counting for about ten seconds.
TASKS = 6
COUNT = {"rounds": 40, "round_s": 0.25}
#: The goal: a killed worker's last task back in the queue within this many seconds.
GOAL_S = 6.0


async def until(condition: Any, timeout_s: float, what: str) -> None:
    """Poll the async `condition` until true; fail saying `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not within {timeout_s:g} s")
        await asyncio.sleep(0.05)


async def one_kill(
    store: Store, http: httpx.AsyncClient, victim: str, process: subprocess.Popen[bytes]
) -> float:
    """Submit tasks, SIGKILL `victim` once it holds two; seconds until it holds none."""
    for _ in range(TASKS):
        answer = await http.post("/api/v1/tasks", json={"name": "test.count", "args": COUNT})
        answer.raise_for_status()
    held = {"run.worker": victim, "phase": "held"}

    async def holds_two() -> bool:
        return await store.tasks.collection.count_documents(held) >= 2

    await until(holds_two, 60, f"{victim} running two tasks")
    process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    await asyncio.to_thread(process.wait)

    async def holds_none() -> bool:
        return await store.tasks.collection.count_documents(held) == 0

    await until(holds_none, 120, f"{victim}'s tasks requeued")
    return time.monotonic() - killed_at


async def run() -> dict[str, Any]:
    """Kill a worker `RUNS` times; the seconds until its last task was requeued, each time."""
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="tasklight-bench-") as tmp:
        mongo = EmbeddedMongo(Path(tmp) / "db", port=free_port(), log_path=Path(tmp) / "db.log")
        await asyncio.to_thread(mongo.start)
        token = await _bench_user(mongo.url)
        api_port = free_port()
        namespace = f"bench.{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "MONGODB_URL": mongo.url,
            "TASKLIGHT_DATABASE": "bench",
            "TASKLIGHT_NAMESPACE": namespace,
            "TASKLIGHT_API_PORT": str(api_port),
            "TASKLIGHT_API_METRICS_PORT": "0",
            "TASKLIGHT_WORKER_PORT": "0",
            "TASKLIGHT_WORKER_CONCURRENCY": "4",
            "TASKLIGHT_SUBMIT_RATE_PER_MINUTE": "0",
            "TASKLIGHT_BUILTIN_TASKS": "true",
            "TASKLIGHT_LOG_LEVEL": "WARNING",
        }
        processes: dict[str, subprocess.Popen[bytes]] = {}
        store = open_store(Settings(mongodb_url=mongo.url, database="bench"))
        started = 0

        async def start_worker() -> str:
            nonlocal started
            started += 1
            name = f"bench-worker-{started}"
            log_dir = Path(tmp) / name
            log_dir.mkdir()
            worker_env = {**env, "TASKLIGHT_WORKER_NAME": name}
            processes[name] = start_service("worker", worker_env, log_dir)

            async def beats() -> bool:
                return await store.workers.collection.count_documents({"_id": name}) == 1

            await until(beats, 60, f"{name}'s first heartbeat")
            return name

        try:
            processes["api"] = start_service("api", env, Path(tmp))
            await asyncio.to_thread(wait_for_port, "127.0.0.1", api_port, 60, processes["api"])
            workers = [await start_worker(), await start_worker()]
            requeued_s = []
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as http:
                http.headers.update(headers)
                for _ in range(RUNS):
                    victim = workers.pop(0)
                    requeued_s.append(await one_kill(store, http, victim, processes.pop(victim)))
                    workers.append(await start_worker())
        finally:
            await store.close()
            await asyncio.to_thread(stop_processes, processes.values())
            await asyncio.to_thread(mongo.stop)
            await _delete_queues(namespace)
    median_s = statistics.median(requeued_s)
    print(f"worker SIGKILL -> last task requeued: median {median_s:.2f} s of {requeued_s}")
    return {
        "requeued_after_s": [round(s, 2) for s in requeued_s],
        "median_s": round(median_s, 2),
        "goal_s": GOAL_S,
        "lease_s": settings.lease_s,
        "lease_renew_s": settings.lease_renew_s,
        "janitor_interval_s": settings.janitor_interval_s,
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    print(asyncio.run(run()))
