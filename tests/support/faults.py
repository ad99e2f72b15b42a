"""The fault tests' services as processes on quick timeouts, and the invariant they keep.

Every fault test ends with `assert_nothing_lost_or_doubled`: each task that got a 202 is in a
final state with exactly one final event, was claimed from `waiting` exactly once, ran once plus
once per requeue, and nothing is left pending or waiting in the outbox.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.stack import start_service, stop_processes, wait_for_port
from shared.lifecycle import TaskState
from shared.settings import Settings
from shared.store import Store
from shared.submission import ABANDONED_KEY_S
from tests.support import FINAL
from tests.support.processes import service_env, until_workers_beat

#: Seconds a terminated service gets to stop before it is killed.
STOP_TIMEOUT_S = 15


#: Quick liveness settings: a silent worker's lease lasts 2 s, its loss is noticed within half
#: a second.
QUICK_ENV = {
    "TASKLIGHT_LEASE_S": "2",
    "TASKLIGHT_JANITOR_INTERVAL_S": "0.5",
    "TASKLIGHT_LEASE_RENEW_S": "0.5",
    "TASKLIGHT_OUTBOX_GRACE_S": "1",
    "TASKLIGHT_SHUTDOWN_GRACE_S": "1",
    "TASKLIGHT_PUBLISH_TIMEOUT_S": "5",
    # The fault tests submit a thousand tasks as one user.
    "TASKLIGHT_SUBMIT_RATE_PER_MINUTE": "0",
}


@dataclass
class Services:
    """api and worker processes of one test, started and killed on demand."""

    settings: Settings
    log_dir: Path
    env: dict[str, str] = field(init=False)
    api: subprocess.Popen[bytes] | None = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started_workers: int = 0
    #: The webhook sender, once started.
    sender: subprocess.Popen[bytes] | None = None
    started_senders: int = 0

    def __post_init__(self) -> None:
        self.env = {**service_env(self.settings), **QUICK_ENV}

    @property
    def base_url(self) -> str:
        """Where the api listens."""
        return f"http://127.0.0.1:{self.settings.api_port}"

    async def start_api(self) -> None:
        """Start the api and wait until it listens."""
        self.api = start_service("api", self.env, self.log_dir)
        await asyncio.to_thread(wait_for_port, "127.0.0.1", self.settings.api_port, 30, self.api)

    def start_worker(self, concurrency: int = 4) -> str:
        """Start one more worker process; its name."""
        self.started_workers += 1
        name = f"{self.settings.worker_name}-{self.started_workers}"
        log_dir = self.log_dir / name
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **self.env,
            "TASKLIGHT_WORKER_NAME": name,
            "TASKLIGHT_WORKER_CONCURRENCY": str(concurrency),
        }
        self.workers[name] = start_service("worker", env, log_dir)
        return name

    async def until_workers_beat(self, store: Store, names: Iterable[str]) -> None:
        """Wait until each named worker has recorded a heartbeat (it consumes by then)."""
        await until_workers_beat(store, {name: self.workers[name] for name in names}, self.log_dir)

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker, as a crash or the OOM killer would."""
        process = self.workers.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def start_sender(self, env: dict[str, str] | None = None) -> None:
        """Start a webhook sender (with `env` on top of the services' environment)."""
        self.started_senders += 1
        log_dir = self.log_dir / f"webhooks-{self.started_senders}"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.sender = start_service("webhooks", {**self.env, **(env or {})}, log_dir)

    def kill_sender(self) -> None:
        """SIGKILL the webhook sender, as a crash would."""
        assert self.sender is not None
        self.sender.send_signal(signal.SIGKILL)
        self.sender.wait()
        self.sender = None

    def stop_all(self) -> None:
        """Terminate every process (SIGTERM, then SIGKILL after a while)."""
        processes = [*self.workers.values(), *([self.api] if self.api else [])]
        if self.sender is not None:
            processes.append(self.sender)
            self.sender = None
        stop_processes(processes, STOP_TIMEOUT_S)
        self.workers.clear()
        self.api = None


async def submit_many(
    http: httpx.AsyncClient,
    count: int,
    args: dict[str, Any],
    *,
    parallel: int = 16,
    name: str = "test.count",
) -> list[str]:
    """Submit `count` tasks of type `name` over HTTP, `parallel` at a time; their ids.

    Each submission carries its own Idempotency-Key and is retried as a careful client would:
    after an answer lost on the way (a connection the api closed as it was reused) with the same
    key, so a retry of a submission that was stored gets the same task, never a second one; after
    a 409 (the first request with that key has not finished, or died where the key could not be
    freed: the key is taken over after a minute) with the same key too; after a 503 (the broker
    or database could not take it, and nothing was kept) with a new one. Any other answer but
    202 fails the test.
    """
    ids: list[str] = []
    body = {"name": name, "args": args}

    async def one() -> str:
        key = uuid.uuid4().hex
        answer: httpx.Response | None = None
        deadline = time.monotonic() + 2 * ABANDONED_KEY_S
        while time.monotonic() < deadline:
            try:
                answer = await http.post(
                    "/api/v1/tasks", json=body, headers={"Idempotency-Key": key}
                )
            except httpx.TransportError:
                await asyncio.sleep(0.5)
                continue
            if answer.status_code == 503:
                key = uuid.uuid4().hex
            elif answer.status_code != 409:
                break
            await asyncio.sleep(0.5)
        assert answer is not None, "every try of a submission lost its answer"
        assert answer.status_code == 202, answer.text
        task_id: str = answer.json()["id"]
        return task_id

    for start in range(0, count, parallel):
        ids += await asyncio.gather(*(one() for _ in range(min(parallel, count - start))))
    return ids


async def until_all_final(
    store: Store, ids: list[str], *, timeout_s: float, during: Any = None
) -> float:
    """Wait until every task in `ids` is final; the seconds it took. Fails listing stragglers."""
    started = time.monotonic()
    final = [state for state in FINAL]
    while True:
        done = await store.tasks.collection.count_documents(
            {"_id": {"$in": ids}, "state": {"$in": final}}
        )
        if done == len(ids):
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            stuck = [
                (doc["_id"], doc["state"], doc.get("run"), doc.get("attempts"))
                async for doc in store.tasks.collection.find(
                    {"_id": {"$in": ids}, "state": {"$nin": final}}
                ).limit(5)
            ]
            workers = [doc async for doc in store.workers.collection.find({}, {"tasks": 0})]
            raise AssertionError(
                f"{len(ids) - done} of {len(ids)} tasks not final after {timeout_s} s: {stuck};"
                f" workers: {workers}"
            )
        await asyncio.sleep(0.25)


@dataclass
class Tally:
    """What the invariant check found."""

    tasks: int = 0
    completed: int = 0
    #: Tasks not in a final state (lost or stuck): must be zero.
    losses: int = 0
    #: Of those, tasks not stored at all (lost), and stored but not final (stuck).
    missing: int = 0
    stuck: int = 0
    #: Tasks with more than one final event (completed twice): must be zero.
    duplicates: int = 0
    requeues: int = 0
    problems: list[str] = field(default_factory=list)


async def check_invariant(store: Store, ids: list[str]) -> Tally:
    """Count, per accepted task, how it ended and how often it was claimed and ended."""
    tally = Tally(tasks=len(ids))
    tasks: dict[str, dict[str, Any]] = {
        doc["_id"]: doc async for doc in store.tasks.collection.find({"_id": {"$in": ids}})
    }
    finals: dict[str, int] = dict.fromkeys(ids, 0)
    claims: dict[str, int] = dict.fromkeys(ids, 0)
    # Each task's own history: written in the same atomic write as each change it records.
    for task_id, task in tasks.items():
        for event in task.get("history") or []:
            if event["target"] in FINAL:
                finals[task_id] += 1
            if event["source"] == TaskState.WAITING and event["target"] == TaskState.RUNNING:
                claims[task_id] += 1
    for task_id in ids:
        doc = tasks.get(task_id)
        if doc is None or doc["state"] not in FINAL:
            tally.losses += 1
            tally.missing += doc is None
            tally.stuck += doc is not None
            tally.problems.append(f"{task_id}: {doc and doc['state']} (not final)")
            continue
        tally.completed += doc["state"] == TaskState.COMPLETED
        requeues = len(doc.get("attempts") or [])
        tally.requeues += requeues
        if finals[task_id] != 1:
            tally.duplicates += finals[task_id] > 1
            tally.problems.append(f"{task_id}: {finals[task_id]} final events")
        # The lifecycle has no way back to `waiting`: a requeued task stays `running` with its
        # run released, and the next run claims it from there (counted in `runs`).
        if doc.get("runs", 0) and claims[task_id] != 1:
            tally.problems.append(f"{task_id}: claimed from waiting {claims[task_id]} times")
        if doc.get("runs", 0) and doc["runs"] != 1 + requeues:
            tally.problems.append(f"{task_id}: {doc['runs']} runs but {requeues} requeues")
    return tally


async def assert_nothing_lost_or_doubled(store: Store, ids: list[str]) -> Tally:
    """The invariant of every fault test; returns the tally for the test's report."""
    tally = await check_invariant(store, ids)
    assert tally.problems == [], tally.problems[:20]
    assert (tally.losses, tally.duplicates) == (0, 0)
    pending = await store.tasks.collection.count_documents({"state": {"$nin": list(FINAL)}})
    assert pending == 0, f"{pending} tasks left pending"
    return tally


#: Every fault test's figures, shown together at the end of the session (`report_figures`).
FIGURES: list[tuple[str, dict[str, Any]]] = []


def report_figures(test: str, **figures: Any) -> None:
    """Print a fault test's figures (recovery time, lost, stuck, duplicated, ...), and keep them
    for the session's summary, which pytest shows even where it captured the print."""
    line = " ".join(f"{key}={_shown(value)}" for key, value in figures.items())
    print(f"\n{test}: {line}")
    FIGURES.append((test, figures))


def _shown(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def unavailable_in_ci(message: str) -> None:
    """Skip for want of something on this machine; under CI (`CI` set), fail instead."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


#: What the services of a cluster test get besides QUICK_ENV: three replicas per quorum queue,
#: and heartbeats quick enough that a paused node is given up within about 9 s.
CLUSTER_ENV = {"TASKLIGHT_QUORUM_GROUP_SIZE": "3", "TASKLIGHT_AMQP_HEARTBEAT_S": "2"}


def require_rabbitmqctl() -> str:
    """`rabbitmqctl`'s path; skip without it (fail under CI)."""
    import shutil

    path = shutil.which("rabbitmqctl")
    if path is None:
        message = "rabbitmqctl is not on PATH: cannot restart the broker"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
