"""Listing tasks: newest first, by dialog group, state and name, page by page."""

from __future__ import annotations

import httpx
import pytest

from shared.lifecycle import TaskState
from shared.store import Store
from tests.support import stored_task

pytestmark = pytest.mark.integration


async def seed(store: Store, states: list[TaskState], owner: str = "dev") -> list[str]:
    ids = []
    for state in states:
        task = stored_task(name="test.count", owner=owner, state=state)
        await store.tasks.insert(task)
        ids.append(task.id)
    return ids


async def listed(api: httpx.AsyncClient, query: str) -> list[str]:
    response = await api.get(f"/api/v1/tasks?{query}")
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()["results"]]


async def test_groups_hold_the_states_of_the_dialog_tabs_newest_first(
    api: httpx.AsyncClient, store: Store
) -> None:
    w, r, cing, done, fail, cncl = await seed(store, list(TaskState))
    assert await listed(api, "group=pending") == [cing, r, w]
    assert await listed(api, "group=failed") == [cncl, fail]
    assert await listed(api, "group=finished") == [done]
    assert await listed(api, "state=running&state=failed") == [fail, r]
    assert await listed(api, "group=pending&state=failed") == []


async def test_other_owners_tasks_and_other_names_are_not_listed(
    api: httpx.AsyncClient, store: Store
) -> None:
    [mine] = await seed(store, [TaskState.WAITING])
    await seed(store, [TaskState.WAITING], owner="someone-else")
    assert await listed(api, "") == [mine]
    assert await listed(api, "name=test.fail") == []


async def test_pages_follow_next_until_every_task_was_seen_once(
    api: httpx.AsyncClient, store: Store
) -> None:
    ids = await seed(store, [TaskState.COMPLETED] * 7)
    seen: list[str] = []
    url: str | None = "/api/v1/tasks?group=finished&limit=3"
    while url:
        page = (await api.get(url)).json()
        seen += [t["id"] for t in page["results"]]
        url = page["next"]
    assert seen == list(reversed(ids))


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "group=done", "state=x", "cursor=zz"])
async def test_bad_list_parameters_are_422(api: httpx.AsyncClient, query: str) -> None:
    response = await api.get(f"/api/v1/tasks?{query}")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
