"""Exceptions a task handler raises to tell the worker what to do.

    HandlerSignal (root)
    ├── TaskCanceled   the task was asked to stop; the worker records `canceled`
    ├── TaskFailed     a failure worth showing the user as it is; the worker records `failed`
    └── Retry          try again later, within the task type's retry policy

Any other exception fails the task too, but its text is redacted (it may hold secrets): the task
shows its type and a generic message, and the worker's log has the details.
"""

from __future__ import annotations


class HandlerSignal(Exception):
    """Root of the exceptions a handler raises to steer its task's outcome. (A task's stored
    `error` is `shared.task.TaskError`, a record, not an exception.)"""


class TaskCanceled(HandlerSignal):
    """Raised at a checkpoint of a task that was asked to stop."""

    def __init__(self, message: str = "canceled at a checkpoint") -> None:
        super().__init__(message)


class TaskFailed(HandlerSignal):
    """A failure whose message is safe and useful to show to the task's owner."""

    def __init__(self, message: str, *, type: str = "task_failed") -> None:
        super().__init__(message)
        self.type = type
        self.message = message


class Retry(HandlerSignal):
    """Ask for another attempt (within the task type's retry policy), after `delay_s` if given."""

    def __init__(self, message: str = "retry requested", *, delay_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.delay_s = delay_s
