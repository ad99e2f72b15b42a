"""The verbs of `shared/runs.py` on the real database and broker: each change happens once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from shared import metrics
from shared.clock import utcnow
from shared.lifecycle import Phase, TaskState
from shared.questions import AskedQuestion, Question, asked
from shared.runs import AlreadyFinished, Claim, Runs
from shared.settings import Settings
from shared.store import Change, Store
from shared.task import Attempt, ErrorKind, TaskError
from tests.support import eventually, stored_task
from tests.support.commands import commands_on

pytestmark = pytest.mark.integration


@pytest.fixture
async def runs(settings: Settings, store: Store) -> AsyncIterator[Runs]:
    """The verbs on the test's database and a real broker."""
    async with commands_on(settings, store) as commands:
        yield Runs(store.tasks, commands, outbox_grace_s=settings.outbox_grace_s)


def dead_letters(reason: str) -> float:
    """How many dead-lettered commands' tasks this process failed, for `reason`."""
    return metrics.sample(
        metrics.WORKER_REGISTRY, "tasklight_dead_letters_total", {"reason": reason}
    )


async def waiting(store: Store, count: int, **fields: object) -> list[str]:
    tasks = [stored_task(**fields) for _ in range(count)]
    for task in tasks:
        await store.tasks.insert(task, dispatch_due_at=utcnow())
    return [task.id for task in tasks]


async def test_claims_sent_together_tell_each_caller_whether_its_own_applied(
    store: Store, runs: Runs
) -> None:
    ids = await waiting(store, 3)
    # Changed while it waited: its version is no longer the first, so its claim misses the
    # shared statement and must still succeed by the general compare-and-set.
    await store.tasks.collection.update_one({"_id": ids[2]}, {"$inc": {"version": 1}})
    # Sent together: two claims of the same task (exactly one may win), and one of each other.
    claims = await asyncio.gather(
        runs.claim(ids[0], "w1"),
        runs.claim(ids[0], "w2"),
        runs.claim(ids[1], "w1"),
        runs.claim(ids[2], "w1"),
    )
    assert sum(claim is not None for claim in claims[:2]) == 1
    assert claims[2] is not None
    assert claims[3] is not None
    winner = claims[0] or claims[1]
    assert winner is not None
    tasks = [await store.tasks.get(task_id) for task_id in ids]
    assert [(t.state, t.phase) for t in tasks if t] == [(TaskState.RUNNING, Phase.HELD)] * 3
    assert tasks[0] is not None
    assert tasks[0].run_id == winner.run_id
    assert tasks[0].worker is not None
    assert tasks[0].worker.name == winner.worker
    # Both forms record the same history, and clear the outbox mark: the command was delivered.
    for task in tasks:
        assert task is not None
        assert [e.target for e in task.history] == [TaskState.WAITING, TaskState.RUNNING]
        assert task.history[-1].version == task.version
        assert task.dispatch_due_at is None
    assert await store.tasks.due_dispatches(utcnow()) == []


async def test_a_claim_counts_its_run_as_started_once_and_a_lost_race_counts_nothing(
    store: Store, runs: Runs
) -> None:
    labels = {"task_type": "unit.claimed"}

    def counted() -> tuple[float, float]:
        registry = metrics.WORKER_REGISTRY
        return (
            metrics.sample(registry, "tasklight_tasks_started_total", labels),
            metrics.sample(registry, "tasklight_task_queue_wait_seconds_count", labels),
        )

    before = counted()
    [task_id] = await waiting(store, 1, name=labels["task_type"])
    claims = await asyncio.gather(runs.claim(task_id, "w1"), runs.claim(task_id, "w2"))
    assert sum(claim is not None for claim in claims) == 1
    # The verb counts the run it started, and its wait; the claim that lost counts nothing.
    assert counted() == (before[0] + 1, before[1] + 1)


async def test_ends_sent_together_apply_only_for_the_run_that_holds_each_task(
    store: Store, runs: Runs
) -> None:
    ids = await waiting(store, 3)
    claims = [await runs.claim(task_id, "w1") for task_id in ids]
    assert None not in claims
    first, second, third = (claim for claim in claims if claim is not None)
    # The second is held by another run than its caller thinks: it must not end.
    second.run_id = first.run_id
    # A wrong version falls back on the general compare-and-set, which applies.
    assert third.version is not None
    third.version += 5
    ended = await asyncio.gather(
        runs.complete(first, None, []),
        runs.complete(second, None, []),
        runs.complete(third, {"$odd key": 1}, []),
    )
    assert list(ended) == [True, False, True]
    tasks = [await store.tasks.get(task_id) for task_id in ids]
    assert [t.state for t in tasks if t] == [
        TaskState.COMPLETED,
        TaskState.RUNNING,
        TaskState.COMPLETED,
    ]
    assert tasks[2] is not None
    assert tasks[2].result == {"$odd key": 1}
    assert tasks[0] is not None
    assert [e.target for e in tasks[0].history][-1] is TaskState.COMPLETED


async def test_a_released_task_runs_again_on_the_next_claim_and_counts_its_runs(
    store: Store, runs: Runs
) -> None:
    [task_id] = await waiting(store, 1)
    claim = await runs.claim(task_id, "w1")
    assert claim is not None
    attempt = Attempt(outcome="retry", worker="w1", error=TaskError.of(ErrorKind.RETRY, "again"))
    assert await runs.release(claim, attempt)
    released = await store.tasks.get(task_id)
    assert released is not None
    assert (released.state, released.phase, released.run_id) == (
        TaskState.RUNNING,
        Phase.RELEASED,
        None,
    )
    assert released.dispatch_due_at is not None  # until its command is confirmed again
    again = await runs.claim(task_id, "w2")
    assert again is not None
    assert again.task.runs == 2
    assert again.task.attempt_number() == 2
    # The first run, still thinking it holds the task, can no longer end it.
    assert not await runs.complete(claim, None, [])
    assert await runs.complete(again, None, [])


async def test_cancel_ends_a_waiting_task_now_and_a_finished_one_is_refused(
    store: Store, runs: Runs
) -> None:
    [task_id] = await waiting(store, 1)
    canceled = await runs.cancel(task_id)
    assert canceled is not None
    assert (canceled.state, canceled.phase) == (TaskState.CANCELED, Phase.ENDED)
    with pytest.raises(AlreadyFinished):
        await runs.cancel(task_id)
    assert await runs.cancel("no-such-task") is None


async def test_cancel_of_a_released_task_ends_it_since_no_run_will(
    store: Store, runs: Runs
) -> None:
    [task_id] = await waiting(store, 1)
    claim = await runs.claim(task_id, "w1")
    assert claim is not None
    assert await runs.release(claim, Attempt(outcome="hand_back", worker="w1"))
    canceled = await runs.cancel(task_id)
    assert canceled is not None
    assert canceled.state is TaskState.CANCELED
    assert canceled.error is not None
    assert canceled.error.message == "canceled while queued again"


async def test_a_lost_worker_s_task_is_requeued_or_failed_as_its_type_says(
    store: Store, runs: Runs
) -> None:
    ids = await waiting(store, 2)
    for task_id in ids:
        assert await runs.claim(task_id, "gone") is not None
    held = [await store.tasks.get(task_id) for task_id in ids]
    assert held[0] is not None
    assert held[1] is not None
    assert await runs.lose(held[0], requeue=True) is TaskState.RUNNING
    assert await runs.lose(held[1], requeue=False) is TaskState.FAILED
    # The janitor of another worker coming second changes nothing.
    assert await runs.lose(held[1], requeue=False) is None
    requeued, failed = [await store.tasks.get(task_id) for task_id in ids]
    assert requeued is not None
    assert failed is not None
    assert requeued.phase is Phase.RELEASED
    assert [a.outcome for a in requeued.attempts] == ["worker_lost"]
    assert failed.error is not None
    assert failed.error.type == ErrorKind.WORKER_LOST
    assert failed.worker is not None
    assert failed.worker.missing


async def test_a_parent_ends_once_its_last_child_has(store: Store, runs: Runs) -> None:
    [parent_id] = await waiting(store, 1)
    parent = await runs.claim(parent_id, "w1")
    assert parent is not None
    children = await waiting(store, 2, parent_id=parent_id)
    assert await runs.await_children(parent, "joined")
    for child_id in children:
        assert (await store.tasks.get(parent_id) or parent.task).state is TaskState.RUNNING
        claim = await runs.claim(child_id, "w1")
        assert claim is not None
        assert await runs.complete(claim, None, [])
    done = await store.tasks.get(parent_id)
    assert done is not None
    assert (done.state, done.result) == (TaskState.COMPLETED, "joined")


async def test_an_undeliverable_command_fails_its_task_once(store: Store, runs: Runs) -> None:
    [task_id] = await waiting(store, 1)
    before = dead_letters("delivery_limit")
    assert await runs.fail_undeliverable(task_id, "delivery_limit")
    assert not await runs.fail_undeliverable(task_id, "delivery_limit")
    assert dead_letters("delivery_limit") == before + 1
    task = await store.tasks.get(task_id)
    assert task is not None
    assert task.state is TaskState.FAILED
    assert task.error is not None
    assert task.error.type == ErrorKind.DEAD_LETTERED


async def test_parking_fails_the_task_once_with_no_history_entry_and_follows_its_end(
    store: Store, runs: Runs
) -> None:
    [parent_id] = await waiting(store, 1)
    parent = await runs.claim(parent_id, "w1")
    assert parent is not None
    [child_id] = await waiting(store, 1, parent_id=parent_id)
    assert await runs.await_children(parent, "joined")
    before = await store.tasks.get(child_id)
    assert before is not None
    counted = dead_letters("delivery_limit")
    assert await runs.park(child_id, "delivery_limit")
    assert not await runs.park(child_id, "delivery_limit")
    assert dead_letters("delivery_limit") == counted + 1
    child = await store.tasks.get(child_id)
    assert child is not None
    assert (child.state, child.phase) == (TaskState.FAILED, Phase.ENDED)
    assert child.finished_at is not None
    assert child.error is not None
    assert child.error.type == ErrorKind.DEAD_LETTERED
    assert "parked" in child.error.message
    assert (child.version, child.history) == (before.version + 1, before.history)
    # Its end was followed through: its parent, waiting for it alone, ended too.
    done = await store.tasks.get(parent_id)
    assert done is not None
    assert done.state is TaskState.FAILED
    assert done.error is not None
    assert done.error.type == ErrorKind.CHILD_FAILED


# --- questions --------------------------------------------------------------------------------


def approval(run_after: datetime, **fields: Any) -> AskedQuestion:
    """An approve / deny question as a run stores it, asked at `run_after`."""
    return asked(Question.approval("Go on?", **fields), "question-1", run_after)


async def asking(store: Store, runs: Runs, **fields: Any) -> tuple[str, Claim]:
    """A task whose run asked `approval(**fields)`: it waits for the answer."""
    [task_id] = await waiting(store, 1)
    claim = await runs.claim(task_id, "w1")
    assert claim is not None
    assert await runs.await_answer(claim, approval(utcnow(), **fields), ASKED)
    return task_id, claim


ASKED = Attempt(outcome="asked", worker="w1")


async def test_a_question_frees_the_run_and_one_answer_queues_the_task_again(
    store: Store, runs: Runs
) -> None:
    task_id, claim = await asking(store, runs)
    waits = await store.tasks.get(task_id)
    assert waits is not None
    assert (waits.state, waits.phase, waits.run_id) == (
        TaskState.RUNNING,
        Phase.AWAITING_ANSWER,
        None,
    )
    assert waits.question is not None
    assert waits.question.key == "question-1"
    assert waits.dispatch_due_at is None  # no command queued while it waits
    # The run that asked no longer holds it: it can end nothing.
    assert not await runs.complete(claim, None, [])
    # Two answers at once: exactly one is taken.
    first, second = await asyncio.gather(
        runs.answer(task_id, "question-1", "approve", by="alice"),
        runs.answer(task_id, "question-1", "deny", by="bob"),
    )
    assert (first is None) != (second is None)
    answered = await store.tasks.get(task_id)
    assert answered is not None
    assert (answered.phase, answered.question) == (Phase.RELEASED, None)
    [answer] = answered.answers
    taken = ("approve", "alice") if first is not None else ("deny", "bob")
    assert (answer.key, answer.value, answer.by, answer.timed_out) == ("question-1", *taken, False)
    # Its command was queued again: a run on any worker claims it, with the answer in hand.
    again = await runs.claim(task_id, "w2")
    assert again is not None
    assert [a.value for a in again.task.answers] == [answer.value]
    assert await runs.answer(task_id, "question-1", "approve", by="alice") is None


async def test_an_answer_to_another_question_than_the_one_asked_is_not_taken(
    store: Store, runs: Runs
) -> None:
    task_id, _ = await asking(store, runs)
    assert await runs.answer(task_id, "question-2", "approve", by="alice") is None
    still = await store.tasks.get(task_id)
    assert still is not None
    assert (still.phase, still.answers) == (Phase.AWAITING_ANSWER, [])


async def test_a_question_past_its_timeout_takes_its_default_or_fails_the_task(
    store: Store, runs: Runs
) -> None:
    defaulted_id, _ = await asking(store, runs, timeout_s=0.001, default="deny")
    failed_id, _ = await asking(store, runs, timeout_s=0.001)
    future_id, _ = await asking(store, runs, timeout_s=3600)
    due = await eventually(lambda: store.tasks.unanswered(utcnow()), lambda tasks: len(tasks) == 2)
    assert {task.id for task in due} == {defaulted_id, failed_id}
    outcomes = {task.id: await runs.expire_question(task) for task in due}
    assert outcomes == {defaulted_id: TaskState.RUNNING, failed_id: TaskState.FAILED}
    # A second janitor coming after changes nothing.
    assert [await runs.expire_question(task) for task in due] == [None, None]
    defaulted, failed = [await store.tasks.get(i) for i in (defaulted_id, failed_id)]
    assert defaulted is not None
    assert failed is not None
    assert defaulted.phase is Phase.RELEASED
    assert [(a.value, a.by, a.timed_out) for a in defaulted.answers] == [("deny", None, True)]
    assert failed.error is not None
    assert (failed.error.type, failed.question) == (ErrorKind.NO_ANSWER, None)
    assert "no answer to 'Go on?'" in failed.error.message
    assert await store.tasks.unanswered(utcnow()) == []
    future = await store.tasks.get(future_id)
    assert future is not None
    assert future.phase is Phase.AWAITING_ANSWER


async def test_cancel_ends_a_task_that_waits_for_an_answer_at_once(
    store: Store, runs: Runs
) -> None:
    task_id, _ = await asking(store, runs)
    canceled = await runs.cancel(task_id)
    assert canceled is not None
    assert (canceled.state, canceled.phase, canceled.question) == (
        TaskState.CANCELED,
        Phase.ENDED,
        None,
    )
    assert canceled.error is not None
    assert canceled.error.message == "canceled while waiting for an answer"
    assert await runs.answer(task_id, "question-1", "approve", by="alice") is None


async def test_a_cancel_stopped_between_its_two_steps_is_finished_by_the_janitor(
    store: Store, runs: Runs
) -> None:
    # A crash after `running → canceling` left a task that nobody holds nor will answer.
    task_id, _ = await asking(store, runs)
    await store.tasks.apply(
        task_id, Change(sources=frozenset({TaskState.RUNNING}), target=TaskState.CANCELING)
    )
    [stranded] = await store.tasks.unanswered(utcnow())
    assert await runs.expire_question(stranded) is TaskState.CANCELED


async def test_a_run_that_asks_after_a_cancel_ends_canceled_instead(
    store: Store, runs: Runs
) -> None:
    [task_id] = await waiting(store, 1)
    claim = await runs.claim(task_id, "w1")
    assert claim is not None
    await runs.cancel(task_id)  # the broadcast has not reached the run yet
    assert await runs.await_answer(claim, approval(utcnow()), ASKED)
    task = await store.tasks.get(task_id)
    assert task is not None
    assert (task.state, task.question) == (TaskState.CANCELED, None)
