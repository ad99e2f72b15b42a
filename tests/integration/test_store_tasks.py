"""The task store on a real MongoDB-wire server: changes happen once, in both compiled forms."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError

from shared.clock import utcnow
from shared.ids import new_task_id
from shared.lifecycle import (
    FINAL_STATES,
    FIRST_VERSION,
    STATE_PHASES,
    Phase,
    TaskState,
    can_move,
)
from shared.questions import Question, asked
from shared.records import new_task
from shared.store import Change, Store
from shared.store.tasks import document
from tests.support import stored_task

pytestmark = pytest.mark.integration


async def twins_at(store: Store, state: TaskState, phase: Phase) -> tuple[str, str]:
    """Two identical tasks (but for their ids) stored in `state` and `phase`, first version."""
    task = stored_task(state=state, phase=phase)
    if phase is Phase.AWAITING_ANSWER:
        question = asked(Question.approval("Go on?"), "question-1", utcnow())
        task = task.model_copy(update={"question": question})
    twin = task.model_copy(update={"id": new_task_id()})
    await store.tasks.collection.insert_many([document(task), document(twin)])
    return task.id, twin.id


async def task_at(store: Store, state: TaskState, phase: Phase) -> str:
    """A task stored in `state` and `phase`, at its first version."""
    return (await twins_at(store, state, phase))[0]


def move(source: tuple[TaskState, Phase], target: tuple[TaskState, Phase]) -> Change:
    """The change of one move, described as a verb would."""
    (state, phase), (new_state, new_phase) = source, target
    return Change(
        sources=frozenset({state}),
        phases=frozenset({phase}),
        target=None if new_state == state else new_state,
        phase=None if new_phase == phase else new_phase,
        fields={"result": {"$odd key": [1]}},
        push={"attempts": {"outcome": "retry"}},
        inc={"runs": 1},
        unset=frozenset({"dispatch_due_at", "question"}),
        worker="w1",
        reason="because",
    )


POINTS = [(state, phase) for state in TaskState for phase in STATE_PHASES[state]]
MOVES = [(s, t) for s, t in itertools.product(POINTS, POINTS) if s != t and can_move(s, t)]
_ASKING = (TaskState.RUNNING, Phase.AWAITING_ANSWER)
#: The moves of a question, named so that the test below cannot lose them from its list.
QUESTION_MOVES = [
    ((TaskState.RUNNING, Phase.HELD), _ASKING),  # await_answer
    (_ASKING, (TaskState.RUNNING, Phase.RELEASED)),  # answer, or a timeout's default
    (_ASKING, (TaskState.FAILED, Phase.ENDED)),  # a timeout with no default
    (_ASKING, (TaskState.CANCELING, Phase.AWAITING_ANSWER)),  # cancel, then at once:
    ((TaskState.CANCELING, Phase.AWAITING_ANSWER), (TaskState.CANCELED, Phase.ENDED)),
]


async def test_both_compiled_forms_of_every_allowed_move_leave_the_same_document(
    store: Store,
) -> None:
    # One description of a change, two forms: the compare-and-set pipeline (which reads the
    # state being replaced from the task) and the known-version plain update (which shares a
    # statement with other tasks'). Both, on identical tasks, must store the same thing.
    assert set(QUESTION_MOVES) <= set(MOVES)
    at = utcnow()
    for source, target in MOVES:
        change = move(source, target)
        by_pipeline, by_version = await twins_at(store, *source)
        query, update = change.compare_and_set(by_pipeline, at)
        assert (await store.tasks.collection.update_one(query, update)).modified_count == 1
        plain = change.at_version(source[0], FIRST_VERSION, at)
        filter_ = {"_id": by_version, **change.version_filter(FIRST_VERSION)}
        assert (await store.tasks.collection.update_one(filter_, plain)).modified_count == 1
        docs = [
            await store.tasks.collection.find_one({"_id": i}) for i in (by_pipeline, by_version)
        ]
        for doc in docs:
            assert doc is not None
            doc.pop("_id")
        assert docs[0] == docs[1], (source, target)
        assert docs[0] is not None
        assert (docs[0]["state"], docs[0]["phase"]) == (target[0].value, target[1].value)
        assert docs[0]["version"] == FIRST_VERSION + 1
        assert "question" not in docs[0]


async def test_a_change_from_where_the_task_no_longer_is_matches_nothing(store: Store) -> None:
    task_id = await task_at(store, TaskState.WAITING, Phase.QUEUED)
    start = move((TaskState.WAITING, Phase.QUEUED), (TaskState.RUNNING, Phase.HELD))
    assert await store.tasks.apply_blind(task_id, start)
    # The loser of the race: the same change again.
    assert not await store.tasks.apply_blind(task_id, start)
    task = await store.tasks.get(task_id)
    assert task is not None
    assert [(e.source, e.target) for e in task.history] == [
        (None, TaskState.WAITING),
        (TaskState.WAITING, TaskState.RUNNING),
    ]


async def test_a_run_guard_that_no_longer_holds_makes_the_change_lose(store: Store) -> None:
    task = stored_task(state=TaskState.RUNNING, phase=Phase.HELD, run={"id": "r1"})
    await store.tasks.collection.insert_one(document(task))

    def end(run_id: str) -> Change:
        return Change(
            sources=frozenset({TaskState.RUNNING}), target=TaskState.COMPLETED, run_id=run_id
        )

    assert await store.tasks.apply(task.id, end("r2")) is None
    won = await store.tasks.apply(task.id, end("r1"))
    assert won is not None
    assert won.state is TaskState.COMPLETED


async def test_shared_inserts_fail_only_the_insert_that_fails(store: Store) -> None:
    def fresh() -> Any:
        return new_task(task_id=new_task_id(), name="test.count", args={}, owner="u", at=utcnow())

    taken = fresh()
    await store.tasks.insert(taken)
    first, second = fresh(), fresh()
    # Sent together: one of them reuses an id that is taken.
    results = await asyncio.gather(
        store.tasks.insert(first),
        store.tasks.insert(taken),
        store.tasks.insert(second),
        return_exceptions=True,
    )
    assert results[0] is None
    assert isinstance(results[1], DuplicateKeyError)
    assert results[2] is None
    assert await store.tasks.collection.count_documents({}) == 3


async def test_a_document_the_database_refuses_fails_only_its_own_insert(store: Store) -> None:
    # One user's document that cannot be stored (nested deeper than the driver can encode)
    # must not fail the other inserts that share its statement.
    deep: Any = "bottom"
    for _ in range(1000):
        deep = {"d": deep}
    poison = new_task(task_id=new_task_id(), name="test.count", args={}, owner="bad", at=utcnow())
    poison = poison.model_copy(update={"metadata": {"deep": deep}})
    good = [
        new_task(task_id=new_task_id(), name="test.count", args={}, owner="good", at=utcnow())
        for _ in range(20)
    ]
    results = await asyncio.gather(
        *(store.tasks.insert(task) for task in [*good[:10], poison, *good[10:]]),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1
    assert results[10] is failures[0]
    assert await store.tasks.collection.count_documents({"owner": "good"}) == 20


async def test_a_document_that_does_not_fit_the_model_is_left_out_of_a_page(store: Store) -> None:
    good = stored_task(owner="u")
    await store.tasks.insert(good)
    await store.tasks.collection.insert_one({"_id": new_task_id(), "owner": "u", "state": "odd"})
    page = await store.tasks.page(owner="u", states=None, name=None, limit=10, before=None)
    assert [task.id for task in page] == [good.id]


async def test_an_odd_document_does_not_count_against_a_limit(store: Store) -> None:
    # The notifier's snapshot shows the latest finished tasks, so many of them: an odd one
    # among them must not make it show fewer than there are.
    ids = sorted(new_task_id() for _ in range(5))
    for task_id in ids[:3]:
        await store.tasks.insert(stored_task(id=task_id, owner="u", state=TaskState.COMPLETED))
    for task_id in ids[3:]:  # the newest two: finished, and nothing else a task has
        await store.tasks.collection.insert_one({"_id": task_id, "owner": "u", "state": "failed"})
    latest = [task.id async for task in store.tasks.latest("u", FINAL_STATES, limit=2)]
    assert latest == [ids[2], ids[1]]
    page = await store.tasks.page(owner="u", states=None, name=None, limit=2, before=None)
    assert [task.id for task in page] == [ids[2], ids[1]]


async def test_tasks_store_neither_parent_nor_finish_time_until_they_have_one(
    store: Store,
) -> None:
    top = stored_task(owner="u")
    child = stored_task(owner="u", parent_id=top.id)
    stored = document(top)
    assert "parent_id" not in stored
    assert "finished_at" not in stored
    await store.tasks.insert(top)
    await store.tasks.insert(child)
    # Its children are found through the parent's links, with no index on `parent_id`.
    parent = await store.tasks.get(top.id)
    assert parent is not None
    assert parent.child_ids == [child.id]
    assert [task.id for task in await store.tasks.children(parent)] == [child.id]
    # A link to a child whose submitter died before storing it finds nothing.
    linked_only = parent.model_copy(update={"child_ids": [child.id, "never-stored"]})
    assert [task.id for task in await store.tasks.children(linked_only)] == [child.id]


async def test_a_confirmed_mark_is_cleared_late_and_only_where_a_claim_did_not_take_it(
    store: Store,
) -> None:
    claimed, unclaimed = stored_task(), stored_task()
    for task in (claimed, unclaimed):
        await store.tasks.insert(task, dispatch_due_at=utcnow() + timedelta(seconds=60))
    take = Change(
        sources=frozenset({TaskState.WAITING}),
        phases=frozenset({Phase.QUEUED}),
        target=TaskState.RUNNING,
        phase=Phase.HELD,
        unset=frozenset({"dispatch_due_at"}),
    )
    assert await store.tasks.apply_blind(claimed.id, take)  # a claim takes the mark with it
    marks = store.tasks.marks
    marks.hold_s = 60.0
    marks.clear(claimed.id)
    marks.clear(unclaimed.id)
    # Not yet: a confirm's clearing waits, so that a claim usually makes it unneeded...
    assert await marks.flush(older_than_s=60.0) == 0
    assert await store.tasks.collection.count_documents({"dispatch_due_at": {"$exists": True}}) == 1
    # ...and then it writes only the task whose mark is still there.
    assert await marks.flush() == 1
    assert await store.tasks.due_dispatches(utcnow() + timedelta(hours=1)) == []
