"""The task document: how it is stored in MongoDB and how it is shown over REST and WebSocket."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.lifecycle import FIRST_VERSION, TaskState

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


class TaskError(BaseModel):
    """Why a task failed: a short type and a message safe to show a user."""

    type: str
    message: str


class WorkerRef(BaseModel):
    """The worker running (or that ran) a task."""

    name: str
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
    version: int

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Task:
        """The client view of a stored task document."""
        parent_id = doc.get("parent_id")
        return cls(
            id=doc["_id"],
            name=doc["name"],
            state=doc["state"],
            created_at=doc["created_at"],
            started_at=doc.get("started_at"),
            finished_at=doc.get("finished_at"),
            updated_at=doc["updated_at"],
            args=doc.get("args") or {},
            result=doc.get("result"),
            error=doc.get("error"),
            progress_reports=doc.get("progress_reports") or [],
            worker=doc.get("worker"),
            parent_task=task_href(parent_id) if parent_id else None,
            child_tasks=[task_href(child) for child in doc.get("child_ids") or []],
            owner=doc["owner"],
            ui=doc.get("ui"),
            metadata=doc.get("metadata") or {},
            attempts=doc.get("attempts") or [],
            runs=doc.get("runs") or 0,
            version=doc["version"],
        )


#: The integer range MongoDB stores (BSON int64).
_INT64 = range(-(2**63), 2**63)


def unstorable(value: Any, loc: list[str | int]) -> list[dict[str, Any]]:
    """Where JSON `value` holds what MongoDB cannot store: a key with a NUL character, or an
    integer outside 64 bits. Each as a validation error at its location under `loc`."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        if value in _INT64:
            return []
        return [{"loc": loc, "msg": "integers must fit in 64 bits", "type": "int_too_large"}]
    errors: list[dict[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in str(key):
                errors.append(
                    {"loc": [*loc, key], "msg": "keys must not hold NUL", "type": "key_nul"}
                )
            errors += unstorable(item, [*loc, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            errors += unstorable(item, [*loc, index])
    return errors


def new_task_doc(
    *,
    task_id: str,
    name: str,
    args: dict[str, Any],
    owner: str,
    at: datetime,
    ui: UiHints | None = None,
    metadata: dict[str, Any] | None = None,
    parent_id: str | None = None,
) -> dict[str, Any]:
    """The stored form of a task that was just submitted.

    Without `finished_at` (set when it finishes) and, for a task with no parent, without
    `parent_id`: their indexes are sparse, so a task lacking them costs those indexes nothing.
    """
    doc: dict[str, Any] = {
        "_id": task_id,
        "name": name,
        "state": TaskState.WAITING.value,
        "created_at": at,
        "updated_at": at,
        "started_at": None,
        "args": args,
        "result": None,
        "error": None,
        "progress_reports": [],
        "worker": None,
        "run": None,
        "child_ids": [],
        "owner": owner,
        "ui": ui.model_dump(exclude_none=True) if ui else None,
        "metadata": metadata or {},
        "version": FIRST_VERSION,
    }
    if parent_id is not None:
        doc["parent_id"] = parent_id
    return doc
