"""Two of each service, as processes, on one broker and one database: they share the work.

Nothing in tasklight coordinates replicas itself. Any api stores and queues (MongoDB, one
quorum queue), RabbitMQ hands each command to one worker, and every notifier follows the same
change stream. This test starts two apis, two workers and two notifiers and checks each of those.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.stack import free_port, replica_name, start_replicas, stop_processes
from shared.settings import Settings
from shared.store import Store
from tests.support import FINAL, eventually
from tests.support.processes import TASK_SERVICES, service_env, until_listening, until_workers_beat
from tests.support.servers import DEV_AUTH
from tests.support.wsclient import Message, Socket, tasks_of, ws_connect

pytestmark = pytest.mark.integration

REPLICAS = 2


@dataclass
class Replica:
    """One api, worker and notifier of the running set."""

    api: httpx.AsyncClient
    #: The test's settings with this replica's notifier port (what `ws_connect` reads).
    settings: Settings
    worker: str


@pytest.fixture
async def replicas(
    settings: Settings, store: Store, tmp_path: Path
) -> AsyncIterator[list[Replica]]:
    """Two of each service, on the test's database and queues; workers run one task at a time,
    so that a slow task cannot be taken by one worker while the other idles."""
    ports = [(settings.api_port, settings.notifier_port)]
    ports += [(free_port(), free_port()) for _ in range(REPLICAS - 1)]
    env = {**service_env(settings), "TASKLIGHT_WORKER_CONCURRENCY": "1"}
    processes = start_replicas(env, ports, tmp_path, services=TASK_SERVICES)
    try:
        for number, (api_port, notifier_port) in enumerate(ports, 1):
            await until_listening(processes[replica_name("api", number, REPLICAS)], api_port)
            notifier = processes[replica_name("notifier", number, REPLICAS)]
            await until_listening(notifier, notifier_port)
        workers = {
            f"{settings.worker_name}-{number}": processes[replica_name("worker", number, REPLICAS)]
            for number in range(1, REPLICAS + 1)
        }
        # A worker heartbeats once it consumes: from then on RabbitMQ shares commands with it.
        await until_workers_beat(store, workers, tmp_path)
        async with AsyncExitStack() as clients:
            yield [
                Replica(
                    api=await clients.enter_async_context(
                        httpx.AsyncClient(
                            base_url=f"http://127.0.0.1:{api_port}", headers=DEV_AUTH, timeout=30
                        )
                    ),
                    settings=settings.model_copy(update={"notifier_port": notifier_port}),
                    worker=worker,
                )
                for (api_port, notifier_port), worker in zip(ports, workers, strict=True)
            ]
    finally:
        await asyncio.to_thread(stop_processes, processes.values())


async def submit(api: httpx.AsyncClient, name: str, **args: Any) -> dict[str, Any]:
    """Submit a task; the stored task."""
    answer = await api.post("/api/v1/tasks", json={"name": name, "args": args})
    assert answer.status_code == 202, answer.text
    task: dict[str, Any] = answer.json()
    return task


def steps_of(messages: list[Message], task_id: str) -> list[tuple[str, int | None]]:
    """(state, progress steps done) of each version of the task that a subscriber received."""
    return [
        (t["state"], t["progress_reports"][0]["done"] if t["progress_reports"] else None)
        for t in tasks_of(messages, task_id)
    ]


async def test_two_of_each_service_share_the_work_and_every_replica_sees_every_task(
    replicas: list[Replica],
) -> None:
    first, second = replicas

    # A task submitted through one api is there through the other (one database).
    submitted = await submit(first.api, "test.count", rounds=1, round_s=0)
    seen_by_second = await second.api.get(f"/api/v1/tasks/{submitted['id']}")
    assert seen_by_second.status_code == 200
    assert seen_by_second.json()["name"] == "test.count"

    # Tasks submitted through both apis run on both workers: one queue, two consumers, each
    # taking one command at a time (its prefetch), so while one works for 0.3 s, the next
    # command goes to the other.
    ids = [submitted["id"]]
    for index in range(20):
        api = replicas[index % REPLICAS].api
        ids.append((await submit(api, "test.count", rounds=1, round_s=0.3))["id"])

    async def finished() -> list[dict[str, Any]]:
        listed = await second.api.get("/api/v1/tasks", params={"limit": 100})
        tasks: list[dict[str, Any]] = listed.json()["results"]
        return [t for t in tasks if t["id"] in ids and t["state"] in FINAL]

    done = await eventually(finished, lambda tasks: len(tasks) == len(ids), timeout_s=30)
    assert {t["state"] for t in done} == {"completed"}
    ran_on = {t["worker"]["name"] for t in done}
    assert ran_on == {first.worker, second.worker}
    # ...and neither took more than its concurrency (1): its runs never overlap.
    for worker in ran_on:
        # As times, not strings: a time on a whole second is written without its fraction
        # ("...:44Z"), which sorts after "...:44.687Z".
        runs = sorted(
            (datetime.fromisoformat(t["started_at"]), datetime.fromisoformat(t["finished_at"]))
            for t in done
            if t["worker"]["name"] == worker
        )
        for (_, ended), (started, _) in itertools.pairwise(runs):
            assert started >= ended, f"{worker} ran two tasks at once: {runs}"


async def test_subscribers_of_both_notifiers_receive_every_change_of_a_task(
    replicas: list[Replica],
) -> None:
    first, second = replicas
    async with ws_connect(first.settings) as one, ws_connect(second.settings) as two:
        sockets: list[Socket] = [one, two]
        for ws in sockets:
            assert tasks_of(await ws.subscribe(scope="all")) == []

        # Submitted through the second api, run by either worker, pushed by both notifiers.
        task = await submit(second.api, "test.count", rounds=3, round_s=0.3)

        def final(m: Message) -> bool:
            return (
                m["type"] == "task"
                and m["task"]["id"] == task["id"]
                and (m["task"]["state"] in FINAL)
            )

        received = await asyncio.gather(*(ws.until(final) for ws in sockets))

    stored = (await first.api.get(f"/api/v1/tasks/{task['id']}")).json()
    assert stored["state"] == "completed"
    for messages in received:
        steps = steps_of(messages, task["id"])
        versions = [t["version"] for t in tasks_of(messages, task["id"])]
        # Changes 0.3 s apart each reach each subscriber; ones a few milliseconds apart may
        # arrive as the newer one only (the protocol sends the newest version it has).
        assert steps[0] == ("waiting", None)
        assert ("running", 1) in steps
        assert ("running", 2) in steps
        assert steps[-1] == ("completed", 3)
        assert versions == sorted(set(versions))
        assert tasks_of(messages, task["id"])[-1] == stored
