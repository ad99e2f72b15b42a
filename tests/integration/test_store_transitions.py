"""Every pair of states, tried on a real MongoDB-wire server: allowed changes happen once."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError

from shared.ids import new_task_id
from shared.lifecycle import IllegalTransition, TaskState, can_change, utcnow
from shared.store import TaskStore
from shared.task import new_task_doc

pytestmark = pytest.mark.integration


async def stored_task(store: TaskStore, state: TaskState) -> str:
    doc = new_task_doc(task_id=new_task_id(), name="test.count", args={}, owner="u", at=utcnow())
    doc["state"] = state.value
    await store.insert(doc)
    return str(doc["_id"])


async def test_every_pair_of_states_changes_the_document_only_when_allowed(
    store: TaskStore,
) -> None:
    for source, target in itertools.product(TaskState, TaskState):
        task_id = await stored_task(store, source)
        if can_change(source, target):
            doc = await store.transition(task_id, [source], target)
            assert doc is not None, (source, target)
            stored = await store.get(task_id)
            assert stored is not None
            assert stored["state"] == target.value
            assert stored["version"] == 2
            assert doc["version"] == 2
            events = await store.history(task_id)
            assert [(e["source"], e["target"]) for e in events][-1] == (source, target)
        else:
            with pytest.raises(IllegalTransition):
                await store.transition(task_id, [source], target)
            stored = await store.get(task_id)
            assert stored is not None
            assert (stored["state"], stored["version"]) == (source.value, 1)


async def test_a_change_from_a_state_the_task_has_left_matches_nothing_and_records_nothing(
    store: TaskStore,
) -> None:
    task_id = await stored_task(store, TaskState.WAITING)
    assert await store.transition(task_id, [TaskState.WAITING], TaskState.RUNNING) is not None
    # The loser of the race: the same change again.
    assert await store.transition(task_id, [TaskState.WAITING], TaskState.RUNNING) is None
    assert len(await store.history(task_id)) == 2


async def test_a_guard_that_no_longer_holds_makes_the_change_lose(store: TaskStore) -> None:
    task_id = await stored_task(store, TaskState.WAITING)
    await store.transition(
        task_id, [TaskState.WAITING], TaskState.RUNNING, fields={"run": {"id": "r1"}}
    )
    lost = await store.transition(
        task_id, [TaskState.RUNNING], TaskState.COMPLETED, guard={"run.id": "r2"}
    )
    assert lost is None
    won = await store.transition(
        task_id, [TaskState.RUNNING], TaskState.COMPLETED, guard={"run.id": "r1"}
    )
    assert won is not None
    assert won["state"] == "completed"


async def test_shared_writes_tell_each_caller_whether_its_own_write_applied(
    store: TaskStore,
) -> None:
    ids = []
    for _ in range(3):
        doc = new_task_doc(
            task_id=new_task_id(), name="test.count", args={}, owner="u", at=utcnow()
        )
        await store.insert(doc)
        ids.append(doc["_id"])
    run = {"run": {"id": "r"}}
    # Sent together: two claims of the same task (one may win), one of another task, and a
    # change that cannot apply (a waiting task cannot complete).
    results = await asyncio.gather(
        store.changed(ids[0], [TaskState.WAITING], TaskState.RUNNING, fields=run),
        store.changed(ids[0], [TaskState.WAITING], TaskState.RUNNING, fields=run),
        store.changed(ids[1], [TaskState.WAITING], TaskState.RUNNING, fields=run),
        store.changed(ids[2], [TaskState.RUNNING], TaskState.COMPLETED),
    )
    assert sorted(results[:2]) == [False, True]
    assert list(results[2:]) == [True, False]
    states = [(await store.get(task_id) or {}).get("state") for task_id in ids]
    assert states == ["running", "running", "waiting"]
    history = await store.history(ids[0])
    assert [e["target"] for e in history] == ["waiting", "running"]


async def test_shared_inserts_fail_only_the_insert_that_fails(store: TaskStore) -> None:
    def fresh() -> dict[str, Any]:
        return new_task_doc(
            task_id=new_task_id(), name="test.count", args={}, owner="u", at=utcnow()
        )

    taken = fresh()
    await store.insert(taken)
    first, second = fresh(), fresh()
    # Sent together: one of them reuses an id that is taken.
    results = await asyncio.gather(
        store.insert(first),
        store.insert(dict(taken)),
        store.insert(second),
        return_exceptions=True,
    )
    assert results[0] is None
    assert isinstance(results[1], DuplicateKeyError)
    assert results[2] is None
    assert await store.tasks.count_documents({}) == 3
