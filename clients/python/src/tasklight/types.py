"""The shapes the API answers with, as typed dictionaries, and the task states' groups."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

State = Literal["waiting", "running", "canceling", "completed", "failed", "canceled"]
Group = Literal["pending", "failed", "finished"]

#: States a task never leaves.
FINAL_STATES: frozenset[str] = frozenset({"completed", "failed", "canceled"})
#: The web UI's groups of states (what `GET /tasks?group=` takes).
GROUPS: dict[str, Group] = {
    "waiting": "pending",
    "running": "pending",
    "canceling": "pending",
    "failed": "failed",
    "canceled": "failed",
    "completed": "finished",
}


class TaskError(TypedDict):
    """Why a task failed (or was canceled)."""

    type: str
    message: str


class ProgressReport(TypedDict):
    """One progress report of a task."""

    message: str
    code: str
    state: str
    done: int
    total: int | None
    suffix: str | None


class WorkerInfo(TypedDict):
    """The worker that runs (or ran) a task."""

    name: str
    last_heartbeat: str | None
    missing: bool


class Attempt(TypedDict, total=False):
    """A run that did not end its task: retried, its worker lost, or handed back."""

    outcome: str  # "retry", "worker_lost", "hand_back", "asked"
    worker: str | None
    error: TaskError | None
    ended_at: str | None
    retry_in_s: float


class Task(TypedDict, total=False):
    """A task as the API and the notifier send it (fields the server adds later pass through)."""

    id: str
    name: str
    state: State
    version: int
    owner: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str
    args: dict[str, Any]
    result: Any
    error: TaskError | None
    progress_reports: list[ProgressReport]
    worker: WorkerInfo | None
    parent_task: str | None
    child_tasks: list[str]
    ui: dict[str, Any] | None
    metadata: dict[str, Any]
    attempts: list[Attempt]
    runs: int
    #: Who moves it on: "queued", "blocked", "scheduled", "held", "released",
    #: "awaiting_children", "awaiting_answer", "ended".
    phase: str
    #: While it waits for its owner's answer: the question its handler asked.
    question: dict[str, Any] | None
    #: Every answer given to it.
    answers: list[dict[str, Any]]
    #: The resources it takes: `{"resource": "vm:web-01", "mode": "exclusive" | "shared"}`.
    reservations: list[dict[str, str]]
    #: While `blocked`: `{"resource", "holder"}` (the task ahead of it there).
    waiting_for: dict[str, str] | None
    #: The time it was asked to start at (phase `scheduled` until then).
    run_at: str | None
    #: 0 normal, 1 high.
    priority: int


def is_final(state: str) -> bool:
    """Whether a task in `state` will never change state again."""
    return state in FINAL_STATES
