"""What becomes of a task after its handler: every way a handler can end, decided without I/O."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from services.worker import decisions
from services.worker.decisions import (
    Abandon,
    AwaitAnswer,
    AwaitChildren,
    Complete,
    EndCanceled,
    Fail,
    HandBack,
    RetryLater,
)
from shared.clock import utcnow
from shared.questions import Question, asked
from shared.registry import Registry, TaskType, WaitForChildren
from shared.retries import RetryPolicy
from shared.task import TaskError
from shared.tasks import Retry, TaskCanceled, TaskFailed
from tests.support import stored_task


class Args(BaseModel):
    n: int


async def handler(args: Args, ctx: object) -> None:
    """Nothing."""


def task_type(retry: RetryPolicy | None = None) -> TaskType:
    return TaskType("unit.t", "T", "", Args, handler, retry=retry)


def test_a_returned_value_completes_with_it_as_json() -> None:
    assert decisions.after_return({"a": (1, 2)}) == Complete({"a": [1, 2]})


def test_a_value_that_is_not_json_fails_as_an_invalid_result() -> None:
    decision = decisions.after_return(object())
    assert isinstance(decision, Fail)
    assert decision.error.type == "invalid_result"


def test_wait_for_children_awaits_them_with_the_join_result() -> None:
    assert decisions.after_return(WaitForChildren("joined")) == AwaitChildren("joined")


def test_a_cancel_at_a_checkpoint_ends_canceled() -> None:
    decision = decisions.after_error(TaskCanceled(), task_type(), attempt=1)
    assert isinstance(decision, EndCanceled)
    assert decision.error.type == "canceled"


def test_a_showable_failure_keeps_its_type_and_message() -> None:
    decision = decisions.after_error(TaskFailed("disk full", type="quota"), task_type(), 1)
    assert decision == Fail(TaskError(type="quota", message="disk full"))


def test_an_unexpected_error_is_redacted_and_kept_for_the_log() -> None:
    boom = RuntimeError("password=hunter2")
    decision = decisions.after_error(boom, task_type(), 1)
    assert isinstance(decision, Fail)
    assert decision.error.type == "internal"
    assert "hunter2" not in decision.error.message
    assert decision.unexpected is boom


@pytest.mark.parametrize("attempt", [1, 2])
def test_a_retryable_error_retries_while_attempts_are_left(attempt: int) -> None:
    policy = RetryPolicy(max_attempts=3, base_s=2.0, retry_on=(OSError,))
    decision = decisions.after_error(OSError("flaky"), task_type(policy), attempt)
    assert isinstance(decision, RetryLater)
    ceiling = 2.0 * 2 ** (attempt - 1)
    assert ceiling / 2 <= decision.delay_s <= ceiling
    assert decision.error.message == "OSError raised"


def test_the_last_attempt_of_a_retryable_error_fails_as_exhausted() -> None:
    policy = RetryPolicy(max_attempts=3, retry_on=(OSError,))
    decision = decisions.after_error(OSError(), task_type(policy), attempt=3)
    assert isinstance(decision, Fail)
    assert decision.error.type == "retries_exhausted"
    assert decision.error.message.endswith("gave up after 3 attempts")


def test_retry_asks_for_its_own_delay_and_without_a_policy_fails_at_once() -> None:
    policy = RetryPolicy(max_attempts=2)
    assert decisions.after_error(Retry("later", delay_s=7), task_type(policy), 1) == RetryLater(
        TaskError(type="retry", message="later"), 7
    )
    exhausted = decisions.after_error(Retry("later"), task_type(None), 1)
    assert isinstance(exhausted, Fail)
    assert exhausted.error.type == "retries_exhausted"


def test_an_error_the_policy_does_not_name_is_not_retried() -> None:
    policy = RetryPolicy(max_attempts=5, retry_on=(OSError,))
    decision = decisions.after_error(ValueError(), task_type(policy), 1)
    assert isinstance(decision, Fail)
    assert decision.error.type == "internal"


def test_a_stopped_handler_is_handed_back_on_shutdown_else_canceled_after_the_grace() -> None:
    assert decisions.after_stop(handed_back=True) == HandBack()
    stopped = decisions.after_stop(handed_back=False)
    assert isinstance(stopped, EndCanceled)
    assert stopped.error.message == decisions.STOPPED_AFTER_GRACE


@pytest.mark.parametrize("handed_back", [True, False])
def test_a_handler_stopped_because_the_lease_was_lost_writes_nothing(handed_back: bool) -> None:
    assert decisions.after_stop(handed_back=handed_back, fenced=True) == Abandon()


def test_a_run_that_lost_its_lease_after_asking_still_writes_nothing() -> None:
    question = asked(Question.approval("Go on?"), "q1", utcnow())
    assert decisions.after_asking(Abandon(), question) == Abandon()


def test_a_task_this_worker_cannot_run_fails_with_the_reason() -> None:
    registry = Registry()
    registry.add(task_type())
    unknown = decisions.prepare(stored_task(name="unit.other"), registry)
    assert isinstance(unknown, Fail)
    assert unknown.error.type == "unknown_task_type"
    invalid = decisions.prepare(stored_task(name="unit.t", args={"n": "x"}), registry)
    assert isinstance(invalid, Fail)
    assert invalid.error.type == "invalid_args"
    ready = decisions.prepare(stored_task(name="unit.t", args={"n": 3}), registry)
    assert not isinstance(ready, Fail)
    assert ready[1] == Args(n=3)


def test_a_run_with_an_unanswered_question_waits_for_it_unless_it_was_stopped() -> None:
    question = asked(Question.approval("Go on?"), "question-1", utcnow())
    waits = AwaitAnswer(question)
    assert decisions.after_asking(Complete(None), None) == Complete(None)
    # A handler that caught the signal and went on cannot have had the answer.
    assert decisions.after_asking(Complete("guessed"), question) == waits
    assert decisions.after_asking(Fail(TaskError(type="x", message="y")), question) == waits
    stopped = EndCanceled(TaskError(type="canceled", message="canceled"))
    assert decisions.after_asking(stopped, question) == stopped
    assert decisions.after_asking(HandBack(), question) == HandBack()


def test_a_result_the_database_cannot_store_fails_as_an_invalid_result() -> None:
    deep: object = "bottom"
    for _ in range(100):
        deep = [deep]
    for result in (deep, {"text": "\ud800"}, {"big": 2**70}):
        decision = decisions.after_return(result)
        assert isinstance(decision, Fail), result
        assert decision.error.type == "invalid_result"
        assert "cannot be stored" in decision.error.message
