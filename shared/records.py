"""The stored forms that cross the store's boundary: a task as MongoDB holds it, and a worker.

The store reads documents into these models and writes these models as documents, so no caller
handles a raw document. `StoredTask` has every field the system reads, of which `view()` shows a
client what is theirs to see.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.lifecycle import FINAL_STATES, FIRST_VERSION, Phase, TaskState
from shared.messages import TaskSnapshot
from shared.questions import Answer, AskedQuestion
from shared.reservations import Mode, Reservation, WaitingFor
from shared.task import Attempt, ProgressReport, Task, TaskError, UiHints, WorkerRef, task_href


class Run(BaseModel):
    """The run that holds a task (`id`), or why none does (`released`, with `id` None)."""

    id: str | None = None
    worker: str | None = None
    released: str | None = None


class HistoryEntry(BaseModel):
    """One state change of a task, as its own `history` keeps it."""

    source: TaskState | None
    target: TaskState
    version: int
    at: datetime
    worker: str | None = None
    reason: str | None = None


class StoredTask(BaseModel):
    """A task document, typed."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str = Field(alias="_id")
    name: str
    state: TaskState
    phase: Phase = Phase.QUEUED
    owner: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    error: TaskError | None = None
    progress_reports: list[ProgressReport] = Field(default_factory=list)
    worker: WorkerRef | None = None
    run: Run | None = None
    parent_id: str | None = None
    child_ids: list[str] = Field(default_factory=list)
    ui: UiHints | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    attempts: list[Attempt] = Field(default_factory=list)
    runs: int = 0
    version: int = FIRST_VERSION
    history: list[HistoryEntry] = Field(default_factory=list)
    #: The outbox mark: when the relay publishes the command if no confirm cleared it first.
    dispatch_due_at: datetime | None = None
    #: What a parent completes with once its children have all completed.
    join_result: Any = None
    #: The question its handler asked, while it waits for the answer (absent otherwise).
    question: AskedQuestion | None = None
    #: The answers its questions got, oldest first: a run replaying the handler reads them.
    answers: list[Answer] = Field(default_factory=list)
    #: The resources it takes (in the order it takes them); it holds them until it ends.
    reservations: list[Reservation] = Field(default_factory=list)
    #: While `waiting/blocked`: the resource it waits for, and the task ahead of it there.
    waiting_for: WaitingFor | None = None
    #: The time it was asked to start at (`waiting/scheduled` until then).
    run_at: datetime | None = None
    #: Its priority: above 0, its command goes to the high-priority queue.
    priority: int = 0

    @model_validator(mode="before")
    @classmethod
    def _phase_of_older_documents(cls, data: Any) -> Any:
        """Documents stored before phases were: the phase their fields imply."""
        if isinstance(data, dict) and "phase" not in data and "state" in data:
            data = {**data, "phase": implied_phase(data)}
        return data

    @property
    def run_id(self) -> str | None:
        """The id of the run that holds it, if one does."""
        return None if self.run is None else self.run.id

    @property
    def final(self) -> bool:
        """Whether it has ended."""
        return self.state in FINAL_STATES

    @property
    def retried_attempts(self) -> int:
        """How many runs ended in a retry."""
        return sum(1 for a in self.attempts if a.outcome == "retry")

    def attempt_number(self) -> int:
        """Which attempt a run starting now is: 1, then one more after each retry."""
        return 1 + self.retried_attempts

    def exclusive_resources(self) -> list[str]:
        """The resources it takes exclusively, in the order it takes them."""
        return [r.resource for r in self.reservations if r.mode is Mode.EXCLUSIVE]

    def snapshot(self) -> TaskSnapshot:
        """What its first run needs of it (see `RunTask.snapshot`)."""
        return TaskSnapshot(
            owner=self.owner,
            args=self.args,
            created_at=self.created_at,
            parent_id=self.parent_id,
            reservations=self.reservations,
        )

    def view(self) -> Task:
        """The task as clients see it."""
        return Task(
            id=self.id,
            name=self.name,
            state=self.state,
            phase=self.phase,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            updated_at=self.updated_at,
            args=self.args,
            result=self.result,
            error=self.error,
            progress_reports=self.progress_reports,
            worker=self.worker,
            parent_task=task_href(self.parent_id) if self.parent_id else None,
            child_tasks=[task_href(child) for child in self.child_ids],
            owner=self.owner,
            ui=self.ui,
            metadata=self.metadata,
            attempts=self.attempts,
            runs=self.runs,
            question=self.question,
            answers=self.answers,
            reservations=self.reservations,
            waiting_for=self.waiting_for,
            run_at=self.run_at,
            priority=self.priority,
            version=self.version,
        )


def implied_phase(doc: dict[str, Any]) -> str:
    """The phase of a document stored before phases were, from its fields."""
    state = doc["state"]
    if state in {s.value for s in FINAL_STATES}:
        return Phase.ENDED.value
    if state == TaskState.WAITING.value:
        return Phase.QUEUED.value
    if doc.get("awaiting_children"):
        return Phase.AWAITING_CHILDREN.value
    return Phase.HELD.value if (doc.get("run") or {}).get("id") else Phase.RELEASED.value


def new_task(
    *,
    task_id: str,
    name: str,
    args: dict[str, Any],
    owner: str,
    at: datetime,
    ui: UiHints | None = None,
    metadata: dict[str, Any] | None = None,
    parent_id: str | None = None,
    reservations: list[Reservation] | None = None,
    run_at: datetime | None = None,
    priority: int = 0,
) -> StoredTask:
    """A task that was just submitted: waiting, queued, at its first version."""
    return StoredTask(
        reservations=reservations or [],
        run_at=run_at,
        priority=priority,
        id=task_id,
        name=name,
        state=TaskState.WAITING,
        phase=Phase.QUEUED,
        owner=owner,
        created_at=at,
        updated_at=at,
        args=args,
        ui=ui,
        metadata=metadata or {},
        parent_id=parent_id,
        history=[HistoryEntry(source=None, target=TaskState.WAITING, version=FIRST_VERSION, at=at)],
    )


class WorkerRecord(BaseModel):
    """A worker process as its heartbeat records it."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    name: str = Field(alias="_id")
    last_heartbeat: datetime
    missing: bool = False
    started_at: datetime | None = None
    concurrency: int = 0
    tasks: list[str] = Field(default_factory=list)
    #: The process and its host, for operators (administrators see them in /api/v1/workers).
    pid: int | None = None
    host: str | None = None
