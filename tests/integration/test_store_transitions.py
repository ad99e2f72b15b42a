"""Every pair of states, tried on a real MongoDB-wire server: allowed changes happen once."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
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


async def _waiting_tasks(store: TaskStore, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        doc = new_task_doc(
            task_id=new_task_id(), name="test.count", args={}, owner="u", at=utcnow()
        )
        await store.insert(doc)
        ids.append(doc["_id"])
    return ids


async def test_claims_sent_together_tell_each_caller_whether_its_own_applied(
    store: TaskStore,
) -> None:
    ids = await _waiting_tasks(store, 3)
    # Changed while it waited: its version is no longer the first, so its claim misses the
    # shared statement and must still succeed by the general compare-and-set.
    await store.tasks.update_one({"_id": ids[2]}, {"$inc": {"version": 1}})
    # Sent together: two claims of the same task (exactly one may win), and one of each other.
    runs = await asyncio.gather(
        store.claim(ids[0], "w1"),
        store.claim(ids[0], "w2"),
        store.claim(ids[1], "w1"),
        store.claim(ids[2], "w1"),
    )
    assert sum(run is not None for run in runs[:2]) == 1
    assert runs[2] is not None
    assert runs[3] is not None
    docs = [await store.get(task_id) or {} for task_id in ids]
    assert [doc["state"] for doc in docs] == ["running"] * 3
    winner = runs[0] or runs[1]
    assert docs[0]["run"]["id"] == winner
    assert docs[0]["worker"]["name"] == ("w1" if runs[0] else "w2")
    # Both forms record the same history: the new version, in order, after the first.
    for doc in docs:
        history = await store.history(doc["_id"])
        assert [e["target"] for e in history] == ["waiting", "running"]
        assert history[-1]["version"] == doc["version"]
        assert history[-1]["source"] == "waiting"


async def test_ends_sent_together_apply_only_for_the_run_that_holds_each_task(
    store: TaskStore,
) -> None:
    ids = await _waiting_tasks(store, 3)
    runs = [await store.claim(task_id, "w1") for task_id in ids]
    assert None not in runs
    version = (await store.get(ids[0]) or {})["version"]
    plain = {"result": None, "error": None}

    def end(task_id: str, run_id: str | None, fields: dict[str, Any], at_version: int) -> Any:
        return store.end_run(
            task_id,
            run_id or "",
            [TaskState.RUNNING],
            TaskState.COMPLETED,
            fields=fields,
            worker="w1",
            version=at_version,
        )

    ended = await asyncio.gather(
        # The same outcome for two tasks (one statement), but the second names the run of
        # the first: it must not end either task.
        end(ids[0], runs[0], plain, version),
        end(ids[1], runs[0], plain, version),
        # A wrong version falls back on the general compare-and-set, which applies.
        end(ids[2], runs[2], {"result": {"$odd key": 1}, "error": None}, version + 5),
    )
    assert list(ended) == [True, False, True]
    states = [(await store.get(task_id) or {}).get("state") for task_id in ids]
    assert states == ["completed", "running", "completed"]
    assert (await store.get(ids[2]) or {})["result"] == {"$odd key": 1}
    history = await store.history(ids[0])
    assert [e["target"] for e in history] == ["waiting", "running", "completed"]
    assert history[-1]["version"] == version + 1


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


async def test_a_claim_clears_the_outbox_mark_in_either_form(store: TaskStore) -> None:
    # A claim proves the command was delivered: the relay must not publish it again.
    ids = []
    for _ in range(2):
        doc = new_task_doc(
            task_id=new_task_id(), name="test.count", args={}, owner="u", at=utcnow()
        )
        await store.insert(doc, dispatch_due_at=utcnow())
        ids.append(doc["_id"])
    # The second one changed while it waited: its claim takes the general compare-and-set.
    await store.tasks.update_one({"_id": ids[1]}, {"$inc": {"version": 1}})
    assert await store.claim(ids[0], "w1") is not None
    assert await store.claim(ids[1], "w1") is not None
    for task_id in ids:
        doc = await store.get(task_id) or {}
        assert doc["state"] == "running"
        assert "dispatch_due_at" not in doc
    assert await store.due_dispatches(utcnow()) == []


async def test_indexes_of_fields_most_tasks_lack_are_sparse_and_replace_older_ones(
    store: TaskStore,
) -> None:
    # An index from an earlier version (not sparse, another TTL) is replaced, not an error.
    await store.tasks.drop_index("parent_id_1")
    await store.tasks.drop_index("finished_at_1")
    await store.tasks.create_index("parent_id")
    await store.tasks.create_index("finished_at", expireAfterSeconds=60)
    # The api and workers start at once: each finds the old indexes and replaces them.
    await asyncio.gather(*(store.ensure_indexes() for _ in range(5)))
    indexes = await store.tasks.index_information()
    assert indexes["parent_id_1"].get("sparse") is True
    assert indexes["finished_at_1"].get("sparse") is True
    assert indexes["finished_at_1"]["expireAfterSeconds"] == store.retention_s
    # A new retention setting changes the TTL and keeps the index sparse.
    await TaskStore(store.client, store.db.name, retention_s=123).ensure_indexes()
    indexes = await store.tasks.index_information()
    assert indexes["finished_at_1"]["expireAfterSeconds"] == 123
    assert indexes["finished_at_1"].get("sparse") is True
    # A new top-level task has neither field, so those indexes cost it nothing...
    top = new_task_doc(task_id=new_task_id(), name="test.count", args={}, owner="u", at=utcnow())
    child = new_task_doc(
        task_id=new_task_id(), name="test.count", args={}, owner="u", at=utcnow(), parent_id="p"
    )
    assert "parent_id" not in top
    assert "finished_at" not in top
    await store.insert(top)
    await store.insert(child)
    # ...and the queries on them still find what they should.
    assert [doc["_id"] for doc in await store.children("p")] == [child["_id"]]
    assert await store.submitted_since("u", utcnow() - timedelta(minutes=1), 10) == 1
