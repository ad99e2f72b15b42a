"""Where a waiting page goes when its task ends, and the flash it shows there (the "on ready"
hook of a job record, as Rails apps with a spinner page have it).

A hook can be registered per task type to compute the outcome from the finished task; without
one, the task's `ui` hints decide (`next_url`, `success_message`, `failure_message`).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from enum import StrEnum

from pydantic import BaseModel

from shared.lifecycle import FINAL_STATES, TaskState
from shared.local_path import local_path
from shared.task import Task


class FlashLevel(StrEnum):
    """How a flash message is shown."""

    #: The task completed.
    SUCCESS = "success"
    #: The task was canceled.
    WARNING = "warning"
    #: The task failed.
    ERROR = "error"


class Flash(BaseModel):
    """A one-time message shown on the page the user is sent to."""

    level: FlashLevel
    message: str


class Outcome(BaseModel):
    """Where to go after a task, and what to tell the user; `ready` is False while it is pending."""

    ready: bool
    state: TaskState
    next_url: str | None = None
    flash: Flash | None = None


OnReady = Callable[[Task], Outcome | Awaitable[Outcome | None] | None]


class OutcomeHooks:
    """On-ready hooks by task type name."""

    def __init__(self) -> None:
        self._hooks: dict[str, OnReady] = {}

    def on_ready(self, name: str) -> Callable[[OnReady], OnReady]:
        """Decorator: register `hook` for the finished tasks of type `name` (one per type)."""

        def register(hook: OnReady) -> OnReady:
            if name in self._hooks:
                raise ValueError(f"an on-ready hook for {name!r} is already registered")
            self._hooks[name] = hook
            return hook

        return register

    async def outcome(self, task: Task) -> Outcome:
        """The outcome of `task`: its hook's, else the default from its `ui` hints."""
        if task.state not in FINAL_STATES:
            return Outcome(ready=False, state=task.state)
        hook = self._hooks.get(task.name)
        if hook is not None:
            computed = hook(task)
            if inspect.isawaitable(computed):
                computed = await computed
            if computed is not None:
                # A hook may build its URL from the task's arguments: the same rule holds.
                target = local_path(computed.next_url)
                if computed.next_url is not None and target is None:
                    target = f"/tasks/{task.id}"
                return computed.model_copy(update={"next_url": target})
        return default_outcome(task)


def default_outcome(task: Task) -> Outcome:
    """The outcome from the task's `ui` hints, or, without them, its detail page and state."""
    ui = task.ui
    next_url = (local_path(ui.next_url) if ui else None) or f"/tasks/{task.id}"
    if task.state is TaskState.COMPLETED:
        level = FlashLevel.SUCCESS
        message = (ui.success_message if ui else None) or f"Task {task.name} completed."
    else:
        level = FlashLevel.WARNING if task.state is TaskState.CANCELED else FlashLevel.ERROR
        base = (ui.failure_message if ui else None) or f"Task {task.name} {task.state.value}"
        detail = task.error.message if task.error else None
        message = f"{base.rstrip('.:')}: {detail}" if detail else base
    return Outcome(
        ready=True,
        state=task.state,
        next_url=next_url,
        flash=Flash(level=level, message=message),
    )
