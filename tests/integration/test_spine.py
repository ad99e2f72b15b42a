"""A task submitted over HTTP is queued on RabbitMQ, run by a worker and recorded in MongoDB."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.worker.app import Worker
from tests.support import eventually

pytestmark = pytest.mark.integration


async def get_task(api: httpx.AsyncClient, href: str) -> dict[str, Any]:
    response = await api.get(href)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_final(api: httpx.AsyncClient, href: str) -> dict[str, Any]:
    return await eventually(
        lambda: get_task(api, href), lambda t: t["state"] in ("completed", "failed", "canceled")
    )


async def test_a_count_task_submitted_over_http_completes_with_its_progress_steps(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    response = await api.post(
        "/api/v1/tasks", json={"name": "test.count", "args": {"rounds": 3, "round_s": 0.05}}
    )
    assert response.status_code == 202
    submitted = response.json()
    assert submitted["state"] == "waiting"
    assert submitted["version"] == 1
    assert response.headers["location"] == f"/api/v1/tasks/{submitted['id']}"

    task = await wait_final(api, response.headers["location"])

    assert task["state"] == "completed"
    assert task["result"] == {"counted": 3}
    assert task["started_at"] is not None
    assert task["finished_at"] is not None
    assert task["worker"]["name"] == worker.settings.worker_name
    [report] = task["progress_reports"]
    assert (report["done"], report["total"], report["state"]) == (3, 3, "completed")
    events = (await api.get(f"{response.headers['location']}/events")).json()
    assert [(e["source"], e["target"]) for e in events] == [
        (None, "waiting"),
        ("waiting", "running"),
        ("running", "completed"),
    ]
    versions = [e["version"] for e in events]
    assert versions == sorted(versions)
    assert versions[-1] == task["version"]
