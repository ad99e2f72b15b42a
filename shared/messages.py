"""Commands (orders, sent to workers) and events (facts, recorded in each task's `history`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.clock import utcnow
from shared.ids import new_task_id
from shared.lifecycle import TaskState


class Message(BaseModel):
    """Every command and event: immutable, with its own id and the time it was made."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str = Field(default_factory=new_task_id)
    at: datetime = Field(default_factory=utcnow)


class RunTask(Message):
    """Run the stored task `task_id` (of type `name`); sent once per submission."""

    task_id: str
    name: str


class CancelTask(Message):
    """Stop the running task `task_id` at its next checkpoint; broadcast to every worker."""

    task_id: str


class TaskStateChanged(Message):
    """A task moved from one state to another; `version` is the task's version after the move."""

    task_id: str
    source: TaskState | None
    target: TaskState
    version: int
    worker: str | None = None
    reason: str | None = None
