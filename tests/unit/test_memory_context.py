"""`MemoryContext`'s questions: a handler's unit test gives the answers, a timeout, or none."""

from __future__ import annotations

import pytest

from shared.tasks import (
    APPROVE,
    DENY,
    TIMED_OUT,
    AnswerNeeded,
    MemoryContext,
    Question,
    TaskCanceled,
    TaskContext,
    TaskFailed,
)


async def two_questions(ctx: TaskContext) -> list[str]:
    first = await ctx.ask(Question.approval("First?"))
    second = await ctx.ask(Question.approval("Second?", key="second", default=DENY))
    return [first, second]


async def test_answers_are_given_in_the_order_asked_or_by_key() -> None:
    in_order = MemoryContext(answers=[APPROVE, DENY])
    assert await two_questions(in_order) == [APPROVE, DENY]
    assert [q.key for q in in_order.questions] == ["question-1", "second"]
    by_key = MemoryContext(answers={"question-1": DENY, "second": APPROVE})
    assert await two_questions(by_key) == [DENY, APPROVE]


async def test_a_question_beyond_the_answers_given_stops_the_handler_as_on_a_worker() -> None:
    ctx = MemoryContext(answers=[APPROVE])
    with pytest.raises(AnswerNeeded) as stopped:
        await two_questions(ctx)
    assert stopped.value.question.key == "second"
    # A BaseException: the handler's own `except Exception` would not have swallowed it.
    assert not isinstance(stopped.value, Exception)


async def test_a_timeout_takes_the_default_or_fails_as_the_task_would() -> None:
    assert await two_questions(MemoryContext(answers=[APPROVE, TIMED_OUT])) == [APPROVE, DENY]
    with pytest.raises(TaskFailed) as failed:
        await two_questions(MemoryContext(answers=[TIMED_OUT]))
    assert failed.value.type == "no_answer"


async def test_an_answer_the_question_would_refuse_fails_the_test_not_the_handler() -> None:
    with pytest.raises(ValueError, match="does not answer"):
        await two_questions(MemoryContext(answers=["maybe"]))


async def test_asking_is_a_checkpoint() -> None:
    ctx = MemoryContext(answers=[APPROVE, APPROVE], cancel_after=1)
    with pytest.raises(TaskCanceled):
        await two_questions(ctx)
    assert len(ctx.questions) == 1
