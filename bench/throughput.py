"""tasklight end to end: no-op tasks submitted over HTTP until a WebSocket subscriber saw them end.

What a user of the system gets, on one machine: the api, a worker and a notifier as processes,
the embedded SecantusDB (--sync-on-commit) and the local RabbitMQ. Each of N `test.noop` tasks
is submitted over HTTP (one per request, or 100 per `POST /tasks:batch`), stored, queued, claimed,
run, completed and pushed; a subscriber with `scope: all` counts a task when it sees it
`completed`. Throughput is N over the time from the first submission to the last task seen.

Then latency, at an open-loop rate of 50 % and 90 % of the throughput measured: push latency
is from a change's `updated_at` (set by the writer as it commits) to the subscriber receiving it;
submit-to-running is from the POST being sent to the task's `started_at`.

The load generator is kept light, so that it takes little of the machine from what it measures:
aiohttp (its HTTP parser is C; httpx cost this process 3 ms of CPU per task, more than the api
and the worker together) and a subscriber that counts completions as they arrive.
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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect

from bench import peer_celery
from bench.env import machine, percentile
from bench.meter import Meter
from bench.wire import WireCounter, counting
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
#: The benchmark user's submissions per minute: the limiter on, never refusing.
RATE_PER_MINUTE = 1_000_000
#: The database the stack's services use.
DATABASE = "bench"


@dataclass
class Stack:
    """The services of one benchmark run, and the headers of its user."""

    api_url: str
    ws_url: str
    processes: dict[str, subprocess.Popen[bytes]]
    auth: dict[str, str]
    database: EmbeddedMongo
    #: The proxy the services reach the database through, when counting its commands.
    wire: WireCounter | None = None

    def meter(self) -> Meter:
        """A meter of the services, the database server and this process (the load
        generator: the HTTP clients and the subscriber), by process id."""
        assert self.database.process is not None
        trees = {name: [process.pid] for name, process in self.processes.items()}
        trees["database"] = [self.database.process.pid]
        return Meter(trees, {"load generator": os.getpid()})


@contextlib.asynccontextmanager
async def stack(count: bool = False, **extra_env: str) -> AsyncIterator[Stack]:
    """A fresh database and namespace, and the three services; with `count`, the services
    reach the database through a proxy that counts its commands (bench/wire.py)."""
    with (
        tempfile.TemporaryDirectory(prefix="tasklight-bench-") as tmp,
        contextlib.ExitStack() as proxy,
    ):
        mongo = EmbeddedMongo(Path(tmp) / "db", port=free_port(), log_path=Path(tmp) / "db.log")
        await asyncio.to_thread(mongo.start)
        wire = proxy.enter_context(counting(mongo.port)) if count else None
        token = await _bench_user(mongo.url)
        api_port, notifier_port = free_port(), free_port()
        namespace = f"bench.{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "MONGODB_URL": wire.url() if wire else mongo.url,
            "TASKLIGHT_DATABASE": DATABASE,
            "TASKLIGHT_NAMESPACE": namespace,
            "TASKLIGHT_API_PORT": str(api_port),
            "TASKLIGHT_NOTIFIER_PORT": str(notifier_port),
            # On, as in any deployment. Its default (600 a minute, per user) would refuse the
            # one benchmark user, who submits over 1,000 tasks in seconds: the limit is raised
            # so that it never refuses, while every submission still goes through it.
            "TASKLIGHT_SUBMIT_RATE_PER_MINUTE": str(RATE_PER_MINUTE),
            "TASKLIGHT_BUILTIN_TASKS": "true",
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
                mongo,
                wire,
            )
        finally:
            await asyncio.to_thread(stop_processes, processes.values())
            await asyncio.to_thread(mongo.stop)
            await _delete_queues(namespace)


async def _bench_user(mongodb_url: str) -> str:
    """Migrate the database, then make a real user and API token (no development mode: the api
    checks it as in production)."""
    store = open_store(Settings(mongodb_url=mongodb_url, database=DATABASE))
    try:
        await store.migrate()
        auth = AuthStore(store.accounts)
        await auth.create_user("bench", Role.USER)
        return await auth.issue_token("bench")
    finally:
        await store.close()


async def _delete_queues(namespace: str) -> None:
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    await delete_topology(url, Topology(namespace))


@dataclass
class Subscriber:
    """A `scope: all` subscription that records push latencies, start times and completions."""

    ws: ClientConnection
    push_latencies_ms: list[float] = field(default_factory=list)
    started_at: dict[str, datetime] = field(default_factory=dict)
    #: Tasks seen completed, and those seen since `until_completed` last looked.
    completed_ids: set[str] = field(default_factory=set)
    fresh: list[str] = field(default_factory=list)
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
            if task.get("started_at"):
                self.started_at[task["id"]] = datetime.fromisoformat(task["started_at"])
            if task["state"] == "completed" and task["id"] not in self.completed_ids:
                self.completed_ids.add(task["id"])
                self.fresh.append(task["id"])
                self.changed.set()

    async def until_completed(self, ids: set[str], timeout_s: float) -> None:
        remaining = ids - self.completed_ids
        self.fresh.clear()
        deadline = time.monotonic() + timeout_s
        while remaining:
            self.changed.clear()
            remaining.difference_update(self.fresh)
            self.fresh.clear()
            if not remaining:
                return
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                raise TimeoutError(f"{len(ids) - len(remaining)} of {len(ids)} completed in time")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left_s, 1.0))


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


def _http(env: Stack) -> aiohttp.ClientSession:
    """A client of the api, keeping up to IN_FLIGHT connections open."""
    return aiohttp.ClientSession(
        base_url=env.api_url,
        headers=env.auth,
        timeout=aiohttp.ClientTimeout(total=60),
        connector=aiohttp.TCPConnector(limit=IN_FLIGHT),
    )


async def _post(http: aiohttp.ClientSession, path: str, body: Any) -> Any:
    async with http.post(path, json=body) as response:
        response.raise_for_status()
        return await response.json()


async def _submit_singles(http: aiohttp.ClientSession, count: int) -> set[str]:
    ids: set[str] = set()
    queue = iter(range(count))

    async def sender() -> None:
        for _ in queue:
            ids.add((await _post(http, "/api/v1/tasks", {"name": "test.noop"}))["id"])

    await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))
    return ids


async def _submit_batches(http: aiohttp.ClientSession, count: int) -> set[str]:
    ids: set[str] = set()
    sizes = [min(BATCH, count - start) for start in range(0, count, BATCH)]
    queue = iter(sizes)

    async def sender() -> None:
        for size in queue:
            body = {"tasks": [{"name": "test.noop"}] * size}
            answer = await _post(http, "/api/v1/tasks:batch", body)
            ids.update(task["id"] for task in answer["results"])

    await asyncio.gather(*(sender() for _ in range(BATCHES_IN_FLIGHT)))
    return ids


async def _throughput(env: Stack, batched: bool) -> dict[str, Any]:
    """Tasks per second, first submission to the last task seen completed; the CPU time each
    part spent per task meanwhile and the idle cores (bench/meter.py); with a counting proxy,
    the database commands per task by kind."""
    async with (
        _http(env) as http,
        subscribed(env) as subscriber,
    ):
        meter = env.meter()
        if env.wire:
            env.wire.reset()
        meter.start()
        started = time.monotonic()
        submit = _submit_batches if batched else _submit_singles
        ids = await submit(http, TASKS)
        await subscriber.until_completed(ids, timeout_s=600)
        rate = TASKS / (time.monotonic() - started)
        figures = {"tasks_per_s": round(rate, 1), **meter.stop().figures(TASKS)}
        if env.wire:
            figures["database_per_task"] = env.wire.reset().per_task(TASKS)
        return figures


async def _latency(env: Stack, rate: float) -> dict[str, Any]:
    """Push and submit-to-running latency at an open-loop `rate` of single submissions."""
    posted_at: dict[str, float] = {}
    async with (
        _http(env) as http,
        subscribed(env) as subscriber,
    ):
        subscriber.push_latencies_ms.clear()

        async def one() -> None:
            sent = time.time()
            posted_at[(await _post(http, "/api/v1/tasks", {"name": "test.noop"}))["id"]] = sent

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


async def tasklight_run(batched: bool, count: bool = False) -> dict[str, Any]:
    """One throughput run on a fresh stack."""
    async with stack(count) as env:
        await _throughput_warmup(env)
        return await _throughput(env, batched)


async def celery_run(count: bool = False) -> dict[str, Any]:
    """One run of the peer (bench/peer_celery.py) with as many tasks."""
    return await asyncio.to_thread(
        peer_celery.one_run, peer_celery.broker_url(), os.cpu_count() or 1, TASKS, count
    )


async def single_run(count: bool = False) -> dict[str, Any]:
    """A tasklight run, one task per request."""
    return await tasklight_run(False, count)


async def batched_run(count: bool = False) -> dict[str, Any]:
    """A tasklight run, 100 tasks per `POST /tasks:batch`."""
    return await tasklight_run(True, count)


#: What is compared, in the order of each round.
CONTENDERS: dict[str, Callable[[bool], Awaitable[dict[str, Any]]]] = {
    "single": single_run,
    "batched": batched_run,
    "celery": celery_run,
}


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure of `runs` (and of each part's CPU), with the runs."""
    parts = {part for run in runs for part in run["cpu_ms_per_task"]}
    return {
        "tasks_per_s": round(statistics.median(r["tasks_per_s"] for r in runs), 1),
        "cpu_ms_per_task": {
            part: round(statistics.median(r["cpu_ms_per_task"].get(part, 0.0) for r in runs), 2)
            for part in sorted(parts)
        },
        "idle_cores": round(statistics.median(r["idle_cores"] for r in runs), 2),
        "others_cores": round(statistics.median(r["others_cores"] for r in runs), 2),
        "runs": runs,
    }


async def run() -> dict[str, Any]:
    """RUNS rounds, each a run of tasklight with single submissions, one with batches and one
    of Celery, alternated so that all three meet the same machine; then one more round through
    the counting proxy, for the database commands per task (not timed fairly: the proxy adds a
    hop); then latency at 50 % and 90 % of the single-submission median.

    Every run gets a fresh stack, database server included: SecantusDB grows slower per write
    the more commands a server process has served (restarting it resets that), and the Celery
    peer starts a fresh one per run too, so each figure starts from the same place.
    """
    figures: dict[str, Any] = {
        "machine": machine(),
        "tasks": TASKS,
        "runs": RUNS,
        "rate_limit_per_minute": RATE_PER_MINUTE,
        "peer": peer_celery.describe(),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONTENDERS}
    for round_number in range(RUNS):
        for name, contender in CONTENDERS.items():
            runs[name].append(await contender(False))
        shown = {name: done[-1]["tasks_per_s"] for name, done in runs.items()}
        print(f"  round {round_number + 1}: {shown} tasks/s", flush=True)
    for name, done in runs.items():
        figures[name] = medians(done)
    for name, contender in CONTENDERS.items():
        counted = await contender(True)
        figures[name]["database_per_task"] = counted["database_per_task"]
        figures[name]["counted_run_tasks_per_s"] = counted["tasks_per_s"]
    celery = figures["celery"]["tasks_per_s"]
    figures["ratio_to_celery"] = {
        name: round(figures[name]["tasks_per_s"] / celery, 2) for name in ("single", "batched")
    }
    # The figures the report has always read.
    for label in ("single", "batched"):
        figures[f"tasks_per_s_{label}"] = figures[label]["tasks_per_s"]
        figures[f"cpu_ms_per_task_{label}"] = figures[label]["cpu_ms_per_task"]
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
        _http(env) as http,
        subscribed(env) as subscriber,
    ):
        ids = await _submit_singles(http, 50)
        try:
            await subscriber.until_completed(ids, timeout_s=60)
        except TimeoutError:
            for task_id in list(ids - subscriber.completed_ids)[:3]:
                async with http.get(f"/api/v1/tasks/{task_id}") as response:
                    print(await response.json(), flush=True)
            raise
