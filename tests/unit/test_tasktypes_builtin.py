"""The built-in handlers, called directly with an in-memory context (no broker, no database)."""

from __future__ import annotations

import pytest

from shared.errors import TaskCanceled, TaskFailed
from shared.registry import WaitForChildren
from shared.tasks import APPROVE, DENY, MemoryContext
from shared.tasktypes.builtin import (
    AskArgs,
    CountArgs,
    FailArgs,
    SpawnArgs,
    ask,
    count,
    fail,
    spawn,
)


async def test_count_reports_one_progress_step_per_round_and_returns_the_count() -> None:
    ctx = MemoryContext()
    result = await count(CountArgs(rounds=4, round_s=0), ctx)
    assert result == {"counted": 4}
    [report] = ctx.reports
    assert (report.done, report.total, report.finished) == (4, 4, True)
    assert ctx.checkpoints == 4


async def test_count_stops_at_the_checkpoint_after_a_cancel_and_runs_no_further_round() -> None:
    ctx = MemoryContext(cancel_after=2)
    with pytest.raises(TaskCanceled):
        await count(CountArgs(rounds=10, round_s=0), ctx)
    assert ctx.reports[0].done == 2
    assert not ctx.reports[0].finished


async def test_fail_raises_a_showable_failure_with_the_given_message() -> None:
    with pytest.raises(TaskFailed) as raised:
        await fail(FailArgs(message="disk full", after_s=0), MemoryContext())
    assert raised.value.message == "disk full"


async def test_spawn_starts_the_children_and_asks_to_end_with_them() -> None:
    ctx = MemoryContext()
    outcome = await spawn(SpawnArgs(children=3, rounds=2, round_s=0.5), ctx)
    assert outcome == WaitForChildren(result={"children": 3})
    assert ctx.spawned == [("test.count", {"rounds": 2, "round_s": 0.5})] * 3


def test_count_arguments_default_to_one_second_rounds_and_refuse_negative_rounds() -> None:
    assert CountArgs().round_s == 1.0
    with pytest.raises(ValueError, match="rounds"):
        CountArgs(rounds=-1)
    with pytest.raises(ValueError, match="Extra inputs"):
        CountArgs.model_validate({"rounds": 1, "times": 3})


async def test_ask_asks_each_question_in_turn_and_returns_the_answers() -> None:
    ctx = MemoryContext(answers=[APPROVE, DENY])
    assert await ask(AskArgs(questions=2), ctx) == {"answers": [APPROVE, DENY]}
    assert [q.title for q in ctx.questions] == ["Question 1 of 2", "Question 2 of 2"]
    assert (ctx.reports[0].done, ctx.reports[0].finished) == (2, True)
    details = {"reason": "month end", "copies": 2}
    assert await ask(AskArgs(form=True), MemoryContext(answers=[details])) == {"answers": [details]}
