"""What becomes of a task after its handler returned or raised: pure rules, no I/O.

The runner runs the handler, hands how it ended to `decide`, and calls the one verb of
`shared/runs.py` that the decision names (`Runner._conclude`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from shared import jsonlimits
from shared.errors import Retry, TaskCanceled, TaskFailed
from shared.questions import AskedQuestion
from shared.records import StoredTask
from shared.registry import Registry, TaskType, UnknownTaskType, WaitForChildren
from shared.task import ErrorKind, TaskError


@dataclass(frozen=True)
class Complete:
    """It completed with `result` (JSON)."""

    result: Any


@dataclass(frozen=True)
class Fail:
    """It failed with `error`; `unexpected` is the exception to log, if it was one."""

    error: TaskError
    unexpected: BaseException | None = None


@dataclass(frozen=True)
class EndCanceled:
    """It stopped after a cancel."""

    error: TaskError


@dataclass(frozen=True)
class RetryLater:
    """The attempt failed; another runs after `delay_s`."""

    error: TaskError
    delay_s: float


@dataclass(frozen=True)
class HandBack:
    """The worker is stopping: another worker runs it again."""


@dataclass(frozen=True)
class AwaitChildren:
    """It ends when its children have, completing with `result`."""

    result: Any


@dataclass(frozen=True)
class AwaitAnswer:
    """It asked `question`, which has no answer yet: it waits, holding no worker."""

    question: AskedQuestion


@dataclass(frozen=True)
class Abandon:
    """The worker lost its lease (it could not renew it): it writes nothing about the task,
    which another worker takes over once the lease has expired."""


Decision = (
    Complete | Fail | EndCanceled | RetryLater | HandBack | AwaitChildren | AwaitAnswer | Abandon
)

#: Why a handler that was stopped without reaching a checkpoint ended canceled.
STOPPED_AFTER_GRACE = "stopped after the cancel grace time without reaching a checkpoint"


def failed(kind: ErrorKind, message: str) -> Fail:
    """A failure of one of tasklight's own kinds."""
    return Fail(TaskError.of(kind, message))


def prepare(task: StoredTask, registry: Registry) -> tuple[TaskType, BaseModel] | Fail:
    """The task's type and validated arguments, or why it cannot run on this worker."""
    try:
        task_type = registry.get(task.name)
    except UnknownTaskType:
        return failed(ErrorKind.UNKNOWN_TASK_TYPE, f"this worker has no task type {task.name!r}")
    try:
        return task_type, task_type.args_model.model_validate(task.args)
    except ValidationError as exc:
        return failed(ErrorKind.INVALID_ARGS, f"stored arguments no longer validate: {exc}")


def after_return(returned: Any) -> Decision:
    """The handler returned `returned`."""
    if isinstance(returned, WaitForChildren):
        return AwaitChildren(returned.result)
    try:
        result = to_jsonable_python(returned)
    except Exception:
        return failed(ErrorKind.INVALID_RESULT, "the handler returned a value that is not JSON")
    # A result the database cannot store would fail every write of the task's end.
    refused = jsonlimits.violations(result, ["result"])
    if refused:
        where = ".".join(map(str, refused[0]["loc"]))
        message = (
            f"the handler returned a value that cannot be stored: {where}: {refused[0]['msg']}"
        )
        return failed(ErrorKind.INVALID_RESULT, message)
    return Complete(result)


def after_stop(*, handed_back: bool, fenced: bool = False) -> Decision:
    """The handler was stopped from outside: the worker lost its lease (`fenced`: nothing may
    be written, whatever else happened), the worker is stopping (`handed_back`), or it did not
    reach a checkpoint within the grace time after a cancel."""
    if fenced:
        return Abandon()
    if handed_back:
        return HandBack()
    return EndCanceled(TaskError.of(ErrorKind.CANCELED, STOPPED_AFTER_GRACE))


def after_asking(decision: Decision, question: AskedQuestion | None) -> Decision:
    """What becomes of a run that ended as `decision`, given the first of its questions that had
    no answer (`question`). Such a run waits for the answer whatever its handler did after the
    question (a handler that caught the signal cannot have the answer it went on without);
    only a stop (a cancel, or the worker's shutdown) still ends it as a stop."""
    if question is None or isinstance(decision, EndCanceled | HandBack | Abandon):
        return decision
    return AwaitAnswer(question)


def after_error(exc: Exception, task_type: TaskType, attempt: int) -> Decision:
    """The handler raised `exc` on run `attempt` (1 for the first)."""
    if isinstance(exc, TaskCanceled):
        return EndCanceled(TaskError.of(ErrorKind.CANCELED, str(exc)))
    if isinstance(exc, TaskFailed):
        return Fail(TaskError(type=exc.type, message=exc.message))
    policy = task_type.retry
    retryable = isinstance(exc, Retry) or (policy is not None and policy.retries(exc))
    message = exc.message if isinstance(exc, Retry) else f"{type(exc).__name__} raised"
    if retryable and policy is not None and attempt < policy.max_attempts:
        asked = exc.delay_s if isinstance(exc, Retry) and exc.delay_s else None
        return RetryLater(TaskError.of(ErrorKind.RETRY, message), asked or policy.delay_s(attempt))
    if retryable:
        return failed(ErrorKind.RETRIES_EXHAUSTED, f"{message}; gave up after {attempt} attempts")
    return Fail(
        TaskError.of(ErrorKind.INTERNAL, "the task's handler raised an unexpected error"), exc
    )
