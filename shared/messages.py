"""Commands (orders, sent to workers) and events (facts, recorded in each task's `history`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.clock import utcnow
from shared.ids import new_task_id
from shared.lifecycle import FIRST_VERSION, TaskState
from shared.reservations import Reservation


class Message(BaseModel):
    """Every command and event: immutable, with its own id and the time it was made."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str = Field(default_factory=new_task_id)
    at: datetime = Field(default_factory=utcnow)


class TaskSnapshot(BaseModel):
    """What a task's first run needs of it, as its submission stored it: with it, the worker
    need not read the task back after claiming it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    owner: str
    args: dict[str, Any]
    created_at: datetime
    parent_id: str | None = None
    #: The resources it holds while it runs (a task's end releases them).
    reservations: list[Reservation] = Field(default_factory=list)


class RunTask(Message):
    """Run the stored task `task_id` (of type `name`); sent once per submission, once when a
    task that waited (for its time, or for a resource) is queued, and again for each retry,
    hand-back or requeue (then without `snapshot`)."""

    task_id: str
    name: str
    #: The task as submitted; only good for a claim of the task at `version`.
    snapshot: TaskSnapshot | None = None
    #: The version the task had when this command was sent (with `snapshot`): its first for a
    #: new task, a later one for a task queued after waiting.
    version: int = FIRST_VERSION
    #: 1: high (sent to the high-priority queue; a worker's next free slot goes to it first).
    priority: int = 0


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
