"""The worker runs each task once, records how it ended, and honours cancels."""

from __future__ import annotations

import httpx
import pytest

from services.worker.app import Worker
from shared.metrics import WORKER_REGISTRY
from shared.settings import Settings
from shared.store import Store
from tests.support import admin_headers, eventually
from tests.support.rest import publish_again, read, submit, until_state

pytestmark = pytest.mark.integration


def declined() -> float:
    """Commands the workers of this process consumed and dropped without running their task:
    the evidence that a duplicate or late copy was delivered and refused, not merely unseen."""
    return sum(
        WORKER_REGISTRY.get_sample_value("tasklight_commands_declined_total", {"reason": reason})
        or 0.0
        for reason in ("ended", "held", "gone", "canceled")
    )


async def until_declined(more_than: float) -> None:
    """Wait until the workers have declined another command since `more_than` was read."""

    async def count() -> float:
        return declined()

    await eventually(count, lambda n: n > more_than)


async def test_a_failing_task_ends_failed_with_its_message(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    task_id = await submit(api, "test.fail", message="the disk is full", after_s=0.05)
    task = await until_state(api, task_id)
    assert task["state"] == "failed"
    assert task["error"] == {"type": "task_failed", "message": "the disk is full"}
    assert task["result"] is None


async def test_a_command_delivered_twice_runs_the_task_once(
    api: httpx.AsyncClient, settings: Settings, store: Store
) -> None:
    # Two workers, and the same command published a second time while the first copy runs.
    workers = [Worker(settings.model_copy(update={"worker_name": f"w{i}"})) for i in (1, 2)]
    for w in workers:
        await w.start()
    try:
        task_id = await submit(api, "test.count", rounds=3, round_s=0.1)
        await until_state(api, task_id, ("running",))
        before = declined()
        await publish_again(settings, task_id, "test.count")
        task = await until_state(api, task_id)
        # The duplicate was delivered and refused (held by the first run, or already ended).
        await until_declined(before)
    finally:
        for w in workers:
            await w.stop()
    assert task["state"] == "completed"
    events = await store.tasks.history(task_id)
    assert [e.target for e in events] == ["waiting", "running", "completed"]
    assert (await read(api, task_id))["version"] == task["version"]


async def test_a_command_for_a_finished_task_does_not_run_it_again(
    api: httpx.AsyncClient, worker: Worker, settings: Settings, store: Store
) -> None:
    task_id = await submit(api, "test.count", rounds=1, round_s=0)
    done = await until_state(api, task_id)
    before = declined()
    await publish_again(settings, task_id, "test.count")
    await until_declined(before)
    again = await read(api, task_id)
    assert (again["state"], again["version"]) == ("completed", done["version"])
    assert len(await store.tasks.history(task_id)) == 3


async def test_a_spawning_task_links_its_children_and_completes_after_them(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    parent_id = await submit(api, "test.spawn", children=3, rounds=2, round_s=0.05)
    parent = await until_state(api, parent_id)
    assert parent["state"] == "completed"
    assert len(parent["child_tasks"]) == 3
    for href in parent["child_tasks"]:
        child = (await api.get(href)).json()
        assert child["state"] == "completed"
        assert child["parent_task"] == f"/api/v1/tasks/{parent_id}"
        assert child["finished_at"] <= parent["finished_at"]


async def test_a_waiting_task_is_canceled_at_once_and_a_worker_later_skips_it(
    api: httpx.AsyncClient, settings: Settings, store: Store
) -> None:
    task_id = await submit(api, "test.count", rounds=1, round_s=0)
    response = await api.post(f"/api/v1/tasks/{task_id}/cancel")
    assert response.status_code == 202
    assert response.json()["state"] == "canceled"
    before = declined()
    late = Worker(settings)
    await late.start()
    try:
        # The late worker consumes the command and drops it: the task had ended.
        await until_declined(before)
    finally:
        await late.stop()
    assert (await read(api, task_id))["state"] == "canceled"
    assert [e.target for e in await store.tasks.history(task_id)] == ["waiting", "canceled"]


async def test_a_running_task_stops_at_its_next_checkpoint_and_ends_canceled(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    task_id = await submit(api, "test.count", rounds=50, round_s=0.1)
    await eventually(
        lambda: read(api, task_id),
        lambda t: bool(t["progress_reports"]) and t["progress_reports"][0]["done"] >= 2,
    )
    response = await api.post(f"/api/v1/tasks/{task_id}/cancel")
    assert response.status_code == 202
    assert response.json()["state"] in ("canceling", "canceled")
    task = await until_state(api, task_id)
    done_at_end = task["progress_reports"][0]["done"]
    assert task["state"] == "canceled"
    assert task["progress_reports"][0]["state"] == "canceled"
    assert done_at_end < 50
    # The run's handler has returned (the runner forgets it before it writes the end), so
    # nothing can report after the cancel.
    assert task_id not in worker.runner.running
    assert (await read(api, task_id))["progress_reports"][0]["done"] == done_at_end


async def test_cancel_of_a_finished_task_is_409_and_delete_removes_it(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    task_id = await submit(api, "test.count", rounds=1, round_s=0)
    await until_state(api, task_id)
    conflict = await api.post(f"/api/v1/tasks/{task_id}/cancel")
    assert conflict.status_code == 409
    assert conflict.json()["task"]["state"] == "completed"
    assert (await api.delete(f"/api/v1/tasks/{task_id}")).status_code == 204
    assert (await api.get(f"/api/v1/tasks/{task_id}")).status_code == 404


async def test_delete_of_a_pending_task_cancels_it(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    task_id = await submit(api, "test.count", rounds=1, round_s=0)
    response = await api.delete(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 202
    assert response.json()["state"] == "canceled"


async def test_the_worker_heartbeats_and_is_listed_with_its_running_tasks(
    api: httpx.AsyncClient, worker: Worker, store: Store
) -> None:
    task_id = await submit(api, "test.count", rounds=20, round_s=0.1)
    admin = await admin_headers(store)  # how many tasks a worker takes is for operators
    listed = await eventually(
        lambda: api.get("/api/v1/workers", headers=admin),
        lambda r: any(task_id in w["tasks"] for w in r.json()),
    )
    [me] = [w for w in listed.json() if w["name"] == worker.settings.worker_name]
    assert me["missing"] is False
    assert me["concurrency"] == worker.settings.worker_concurrency
    await api.post(f"/api/v1/tasks/{task_id}/cancel")
    await until_state(api, task_id)
