"""Batch submission: up to 100 tasks in one request, stored in one write, all or nothing."""

from __future__ import annotations

import httpx
import pytest
from tasklight import TasklightClient

from services.worker.app import Worker
from shared.auth import DEV_TOKEN
from shared.lifecycle import FINAL_STATES
from shared.settings import Settings
from shared.store import Store
from tests.support import eventually

pytestmark = pytest.mark.integration

FINAL = {state.value for state in FINAL_STATES}


async def test_a_batch_is_stored_queued_and_run_in_order(
    api: httpx.AsyncClient, store: Store, worker: Worker
) -> None:
    batch = {
        "tasks": [
            {"name": "test.noop"},
            {"name": "test.count", "args": {"rounds": 1, "round_s": 0}, "metadata": {"n": 2}},
            {"name": "test.noop", "ui": {"header": "Third"}},
        ]
    }
    response = await api.post("/api/v1/tasks:batch", json=batch)
    assert response.status_code == 202, response.text
    results = response.json()["results"]
    assert [t["name"] for t in results] == ["test.noop", "test.count", "test.noop"]
    assert {t["state"] for t in results} == {"waiting"}
    assert results[1]["metadata"] == {"n": 2}
    assert results[2]["ui"]["header"] == "Third"

    async def states() -> list[str]:
        stored = [await store.tasks.get(t["id"]) for t in results]
        return [task.state if task else "missing" for task in stored]

    assert await eventually(states, lambda s: set(s) <= FINAL) == ["completed"] * 3
    # Marks are cleared in batches, a little after the broker confirmed the commands.
    marked = {"dispatch_due_at": {"$exists": True}}
    assert (
        await eventually(lambda: store.tasks.collection.count_documents(marked), lambda n: n == 0)
        == 0
    )


async def test_one_invalid_task_refuses_the_batch_naming_it_by_index(
    api: httpx.AsyncClient, store: Store
) -> None:
    batch = {"tasks": [{"name": "test.noop"}, {"name": "test.count", "args": {"rounds": -1}}]}
    response = await api.post("/api/v1/tasks:batch", json=batch)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "urn:tasklight:problem:invalid-task"
    assert problem["errors"][0]["loc"] == ["body", "tasks", 1, "args", "rounds"]
    assert await store.tasks.collection.count_documents({}) == 0


@pytest.mark.parametrize("count", [0, 101])
async def test_a_batch_holds_1_to_100_tasks(
    api: httpx.AsyncClient, store: Store, count: int
) -> None:
    response = await api.post(
        "/api/v1/tasks:batch", json={"tasks": [{"name": "test.noop"}] * count}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "tasks"]
    assert await store.tasks.collection.count_documents({}) == 0


async def test_the_python_client_submits_many_in_batches_of_100(
    settings: Settings, api: httpx.AsyncClient, store: Store
) -> None:
    async with TasklightClient(
        str(api.base_url), f"ws://127.0.0.1:{settings.notifier_port}/ws", token=DEV_TOKEN
    ) as client:
        stored = await client.submit_many([{"name": "test.noop"}] * 150)
    assert len(stored) == 150
    assert len({task["id"] for task in stored}) == 150
    assert await store.tasks.collection.count_documents({}) == 150
