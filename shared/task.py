"""A task as clients see it over REST and WebSocket, and the value types its fields hold.

The stored form (what MongoDB holds, with the fields only the system reads) is
`shared/records.py`'s `StoredTask`; `StoredTask.view()` makes this one.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.lifecycle import Phase, TaskState
from shared.questions import Answer, AskedQuestion
from shared.reservations import Reservation, WaitingFor

API_PREFIX = "/api/v1"


def task_href(task_id: str) -> str:
    """The REST address of a task."""
    return f"{API_PREFIX}/tasks/{task_id}"


class ProgressReport(BaseModel):
    """One step of a task's progress, as Pulp's task API reports it."""

    message: str
    code: str
    state: TaskState = TaskState.RUNNING
    done: int = 0
    total: int | None = None
    suffix: str | None = None


class ErrorKind(StrEnum):
    """The kinds of error tasklight itself records; a handler's `TaskFailed` may name others."""

    #: Stopped after a cancel (at a checkpoint, after the grace time, or before it ran again).
    CANCELED = "canceled"
    #: The handler raised `TaskFailed` without naming a type of its own.
    TASK_FAILED = "task_failed"
    #: A failed attempt that will be retried (recorded in `attempts`).
    RETRY = "retry"
    #: The retry policy's attempts are used up.
    RETRIES_EXHAUSTED = "retries_exhausted"
    #: The handler raised something unexpected; the details are in the worker's log only.
    INTERNAL = "internal"
    #: The stored arguments no longer validate against the task type's model.
    INVALID_ARGS = "invalid_args"
    #: The worker that took the command has no task type of that name.
    UNKNOWN_TASK_TYPE = "unknown_task_type"
    #: The handler returned a value that is not JSON.
    INVALID_RESULT = "invalid_result"
    #: The worker running it stopped heartbeating.
    WORKER_LOST = "worker_lost"
    #: Its command could not be delivered and was dead-lettered.
    DEAD_LETTERED = "dead_lettered"
    #: A child task did not complete.
    CHILD_FAILED = "child_failed"
    #: Its question's timeout passed without an answer, and the question had no default.
    NO_ANSWER = "no_answer"


class TaskError(BaseModel):
    """Why a task failed: a short type and a message safe to show a user."""

    type: str
    message: str

    @classmethod
    def of(cls, kind: ErrorKind, message: str) -> TaskError:
        """An error of one of tasklight's own kinds."""
        return cls(type=kind.value, message=message)


class WorkerRef(BaseModel):
    """The worker running (or that ran) a task."""

    name: str
    #: When this run took the task (its claim). The worker's lease, renewed by its heartbeat,
    #: is on the worker's own record (`/api/v1/workers`); `missing` says when it lapsed.
    last_heartbeat: datetime | None = None
    missing: bool = False


class Attempt(BaseModel):
    """A run that did not end its task, and why it will run again."""

    outcome: str
    worker: str | None = None
    error: TaskError | None = None
    ended_at: datetime | None = None
    retry_in_s: float = 0


class UiHints(BaseModel):
    """What the waiting page shows, and where it goes when the task ends (unless a hook decides)."""

    model_config = ConfigDict(extra="forbid")

    header: str | None = Field(default=None, max_length=200)
    message: str | None = Field(default=None, max_length=2000)
    next_url: str | None = Field(default=None, max_length=2000)
    success_message: str | None = Field(default=None, max_length=2000)
    failure_message: str | None = Field(default=None, max_length=2000)


class Task(BaseModel):
    """A task as clients see it."""

    id: str
    name: str
    state: TaskState
    #: The sub-state: queued, held by a run, released (queued again), awaiting children, ended.
    phase: Phase | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    args: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    error: TaskError | None = None
    progress_reports: list[ProgressReport] = Field(default_factory=list)
    worker: WorkerRef | None = None
    parent_task: str | None = None
    child_tasks: list[str] = Field(default_factory=list)
    owner: str
    ui: UiHints | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: Runs that did not end the task: retried failures, lost workers, hand-backs on shutdown.
    attempts: list[Attempt] = Field(default_factory=list)
    #: How many times a worker started it.
    runs: int = 0
    #: The question its handler asked, while it waits for the answer (phase `awaiting_answer`).
    question: AskedQuestion | None = None
    #: The answers its questions got, oldest first (`by` None: the question's timeout).
    answers: list[Answer] = Field(default_factory=list)
    #: The resources it takes: exclusively, or shared with other shared holders.
    reservations: list[Reservation] = Field(default_factory=list)
    #: While `waiting/blocked`: the resource it waits for, and the task ahead of it there.
    waiting_for: WaitingFor | None = None
    #: The time it was asked to start at (phase `scheduled` until then).
    run_at: datetime | None = None
    #: 0 (normal) or 1 (high: it runs before the normal tasks queued ahead of it).
    priority: int = 0
    version: int
