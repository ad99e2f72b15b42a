"""Listing tasks: newest first, by dialog group, state and name, page by page."""

from __future__ import annotations

import httpx
import pytest

from shared.ids import new_task_id
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


@pytest.mark.parametrize("limit", [1, 2])
async def test_an_odd_document_is_skipped_and_every_task_behind_it_stays_reachable(
    api: httpx.AsyncClient, store: Store, caplog: pytest.LogCaptureFixture, limit: int
) -> None:
    # Ids sort by creation time, but not within a millisecond: sort them to place the odd
    # documents first, last, alone and in a row among the good tasks.
    ids = sorted(new_task_id() for _ in range(9))
    odd = {ids[0], ids[3], ids[5], ids[6], ids[8]}
    for task_id in ids:
        if task_id in odd:  # a state no task can be in: the model refuses it
            await store.tasks.collection.insert_one({"_id": task_id, "owner": "dev", "state": "?"})
        else:
            await store.tasks.insert(stored_task(id=task_id, state=TaskState.COMPLETED))
    seen: list[str] = []
    url: str | None = f"/api/v1/tasks?limit={limit}"
    while url:
        response = await api.get(url)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["results"]) <= limit
        seen += [t["id"] for t in page["results"]]
        url = page["next"]
    assert seen == [task_id for task_id in reversed(ids) if task_id not in odd]
    logged = " ".join(r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage())
    assert all(task_id in logged for task_id in odd)


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "group=done", "state=x", "cursor=zz"])
async def test_bad_list_parameters_are_422(api: httpx.AsyncClient, query: str) -> None:
    response = await api.get(f"/api/v1/tasks?{query}")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
