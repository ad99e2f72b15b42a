"""tasklight end to end: no-op tasks submitted over HTTP until a WebSocket subscriber saw them end.

What a user of the system gets, on one machine: the api, a worker and a notifier as processes,
the embedded SecantusDB (--sync-on-commit) and the local RabbitMQ. Each of N `test.noop` tasks
is submitted over HTTP (one per request, or 100 per `POST /tasks:batch`), stored, queued, claimed,
run, completed and pushed; a subscriber with `scope: all` counts a task when it sees it
`completed`. Throughput is N over the time from the first submission to the last task seen.

Then latency, at an open-loop rate of 50 % and 90 % of the throughput measured: push latency
is from a change's `updated_at` (set by the writer as it commits) to the subscriber receiving it;
submit-to-running is from the POST being sent to the task's `started_at`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.env import machine, percentile
from services.stack import EmbeddedMongo, free_port, start_service, stop_processes, wait_for_port
from shared.auth import AuthStore, Role
from shared.broker import delete_topology
from shared.settings import Settings
from shared.store import open_store
from shared.topology import Topology

RESULTS = "latest"
#: Tasks per throughput run, and runs (the figure is their median).
TASKS = int(os.environ.get("BENCH_TASKS", "1000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
#: Requests in flight at once, for single submissions and for batches of 100.
IN_FLIGHT = 32
BATCH = 100
BATCHES_IN_FLIGHT = 4
#: Seconds of open-loop submission at each latency rate.
LATENCY_S = 10.0


@dataclass
class Stack:
    """The services of one benchmark run, and the headers of its user."""

    api_url: str
    ws_url: str
    processes: dict[str, subprocess.Popen[bytes]]
    auth: dict[str, str]


@contextlib.asynccontextmanager
async def stack(**extra_env: str) -> AsyncIterator[Stack]:
    """A fresh database and namespace, and the three services."""
    with tempfile.TemporaryDirectory(prefix="tasklight-bench-") as tmp:
        mongo = EmbeddedMongo(Path(tmp) / "db", port=free_port(), log_path=Path(tmp) / "db.log")
        await asyncio.to_thread(mongo.start)
        token = await _bench_user(mongo.url)
        api_port, notifier_port = free_port(), free_port()
        namespace = f"bench.{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "MONGODB_URL": mongo.url,
            "TASKLIGHT_DATABASE": "bench",
            "TASKLIGHT_NAMESPACE": namespace,
            "TASKLIGHT_API_PORT": str(api_port),
            "TASKLIGHT_NOTIFIER_PORT": str(notifier_port),
            "TASKLIGHT_SUBMIT_RATE_PER_MINUTE": "0",
            "TASKLIGHT_LOG_LEVEL": "WARNING",
            **extra_env,
        }
        processes = {
            name: start_service(name, env, Path(tmp)) for name in ("api", "worker", "notifier")
        }
        try:
            for name, port in (("api", api_port), ("notifier", notifier_port)):
                await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 60, processes[name])
            yield Stack(
                f"http://127.0.0.1:{api_port}",
                f"ws://127.0.0.1:{notifier_port}/ws",
                processes,
                {"Authorization": f"Bearer {token}"},
            )
        finally:
            await asyncio.to_thread(stop_processes, processes.values())
            await asyncio.to_thread(mongo.stop)
            await _delete_queues(namespace)


async def _bench_user(mongodb_url: str) -> str:
    """A real user and API token (no development mode: the api checks it as in production)."""
    store = open_store(Settings(mongodb_url=mongodb_url, database="bench"))
    try:
        auth = AuthStore(store.db)
        await auth.create_user("bench", Role.USER)
        return await auth.issue_token("bench")
    finally:
        await store.close()


async def _delete_queues(namespace: str) -> None:
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    await delete_topology(url, Topology(namespace))


@dataclass
class Subscriber:
    """A `scope: all` subscription that records when each task was first seen in each state."""

    ws: ClientConnection
    seen: dict[str, dict[str, float]] = field(default_factory=dict)
    push_latencies_ms: list[float] = field(default_factory=list)
    started_at: dict[str, datetime] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        async for frame in self.ws:
            now = time.time()
            message = json.loads(frame)
            if message.get("type") != "task":
                continue
            task = message["task"]
            updated = datetime.fromisoformat(task["updated_at"]).timestamp()
            self.push_latencies_ms.append((now - updated) * 1000)
            self.seen.setdefault(task["id"], {}).setdefault(task["state"], now)
            if task.get("started_at"):
                self.started_at[task["id"]] = datetime.fromisoformat(task["started_at"])
            self.changed.set()

    def completed(self, ids: set[str]) -> int:
        return sum(1 for task_id in ids if "completed" in self.seen.get(task_id, {}))

    async def until_completed(self, ids: set[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.completed(ids) < len(ids):
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.completed(ids)} of {len(ids)} completed in time")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))


@contextlib.asynccontextmanager
async def subscribed(env: Stack) -> AsyncIterator[Subscriber]:
    async with connect(
        env.ws_url, additional_headers=env.auth, max_size=None, max_queue=None
    ) as ws:
        await ws.send(json.dumps({"type": "subscribe", "id": "all", "scope": "all"}))
        while json.loads(await ws.recv()).get("type") != "subscribed":
            pass
        subscriber = Subscriber(ws)
        reader = asyncio.create_task(subscriber.read())
        try:
            yield subscriber
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _submit_singles(http: httpx.AsyncClient, count: int) -> set[str]:
    ids: set[str] = set()
    queue = iter(range(count))

    async def sender() -> None:
        for _ in queue:
            response = await http.post("/api/v1/tasks", json={"name": "test.noop"})
            response.raise_for_status()
            ids.add(response.json()["id"])

    await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))
    return ids


async def _submit_batches(http: httpx.AsyncClient, count: int) -> set[str]:
    ids: set[str] = set()
    sizes = [min(BATCH, count - start) for start in range(0, count, BATCH)]
    queue = iter(sizes)

    async def sender() -> None:
        for size in queue:
            body = {"tasks": [{"name": "test.noop"}] * size}
            response = await http.post("/api/v1/tasks:batch", json=body)
            response.raise_for_status()
            ids.update(task["id"] for task in response.json()["results"])

    await asyncio.gather(*(sender() for _ in range(BATCHES_IN_FLIGHT)))
    return ids


async def _throughput(env: Stack, batched: bool) -> float:
    """Tasks per second, first submission to the last task seen completed."""
    async with (
        httpx.AsyncClient(base_url=env.api_url, headers=env.auth, timeout=60) as http,
        subscribed(env) as subscriber,
    ):
        started = time.monotonic()
        submit = _submit_batches if batched else _submit_singles
        ids = await submit(http, TASKS)
        await subscriber.until_completed(ids, timeout_s=600)
        return TASKS / (time.monotonic() - started)


async def _latency(env: Stack, rate: float) -> dict[str, Any]:
    """Push and submit-to-running latency at an open-loop `rate` of single submissions."""
    posted_at: dict[str, float] = {}
    async with (
        httpx.AsyncClient(base_url=env.api_url, headers=env.auth, timeout=60) as http,
        subscribed(env) as subscriber,
    ):
        subscriber.push_latencies_ms.clear()

        async def one() -> None:
            sent = time.time()
            response = await http.post("/api/v1/tasks", json={"name": "test.noop"})
            response.raise_for_status()
            posted_at[response.json()["id"]] = sent

        pending: set[asyncio.Task[None]] = set()
        count = int(rate * LATENCY_S)
        begin = time.monotonic()
        for i in range(count):
            delay = begin + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        await subscriber.until_completed(set(posted_at), timeout_s=300)
        achieved = count / (time.monotonic() - begin)
        to_running = [
            (subscriber.started_at[t].timestamp() - posted_at[t]) * 1000
            for t in posted_at
            if t in subscriber.started_at
        ]
        pushes = subscriber.push_latencies_ms
    return {
        "rate_asked_per_s": round(rate, 1),
        "rate_done_per_s": round(achieved, 1),
        "push_p50_ms": round(percentile(pushes, 0.5), 1),
        "push_p99_ms": round(percentile(pushes, 0.99), 1),
        "submit_to_running_p50_ms": round(percentile(to_running, 0.5), 1),
        "submit_to_running_p99_ms": round(percentile(to_running, 0.99), 1),
    }


async def run() -> dict[str, Any]:
    """Throughput (single and batched submissions), then latency at 50 % and 90 % of it.

    Every run gets a fresh stack, database server included: SecantusDB grows slower per write
    the more commands a server process has served (restarting it resets that), and the Celery
    peer starts a fresh one per run too, so each figure starts from the same place.
    """
    figures: dict[str, Any] = {"machine": machine(), "tasks": TASKS, "runs": RUNS}
    for batched in (False, True):
        label = "batched" if batched else "single"
        rates = []
        for _ in range(RUNS):
            async with stack() as env:
                await _throughput_warmup(env)
                rates.append(await _throughput(env, batched))
        figures[f"tasks_per_s_{label}"] = round(statistics.median(rates), 1)
        figures[f"tasks_per_s_{label}_runs"] = [round(r, 1) for r in rates]
        print(f"  {label}: {figures[f'tasks_per_s_{label}_runs']} tasks/s", flush=True)
    peak = figures["tasks_per_s_single"]
    figures["latency"] = {}
    for share in (0.5, 0.9):
        async with stack() as env:
            await _throughput_warmup(env)
            figures["latency"][f"{int(share * 100)}%"] = await _latency(env, peak * share)
        print(f"  latency at {int(share * 100)}%: {figures['latency']}", flush=True)
    figures["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return figures


async def _throughput_warmup(env: Stack) -> None:
    async with (
        httpx.AsyncClient(base_url=env.api_url, headers=env.auth, timeout=60) as http,
        subscribed(env) as subscriber,
    ):
        ids = await _submit_singles(http, 50)
        try:
            await subscriber.until_completed(ids, timeout_s=60)
        except TimeoutError:
            missing = [t for t in ids if "completed" not in subscriber.seen.get(t, {})]
            for task_id in missing[:3]:
                print((await http.get(f"/api/v1/tasks/{task_id}")).json(), flush=True)
            raise
