"""The task lifecycle: its states, the one table of allowed changes, and the compare-and-set writes.

Allowed changes (a finished task never changes state again)::

    waiting ──▶ running ──▶ completed | failed
       │  │        │
       │  ▼        ▼
       │ failed   canceling ──▶ canceled | completed | failed
       ▼
    canceled

`waiting → failed` exists because a task whose command can never be delivered (it was
dead-lettered) must fail without pretending that it started.

Every state change is a conditional update: the task document is changed only where it is still in
one of the expected states (and, for a worker, still held by the same run). When the update matches
nothing, someone else won the race, and the caller learns it from the `None` it gets back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class TaskState(StrEnum):
    """Where a task is in its life."""

    #: Stored and queued; no worker has started it.
    WAITING = "waiting"
    #: A worker is running its handler.
    RUNNING = "running"
    #: Cancel was asked while it ran; the handler stops at its next checkpoint.
    CANCELING = "canceling"
    #: The handler returned; `result` holds what it returned.
    COMPLETED = "completed"
    #: The handler raised, or the task could not run; `error` says why.
    FAILED = "failed"
    #: Canceled before it ran, or stopped at a checkpoint after a cancel.
    CANCELED = "canceled"


class TaskGroup(StrEnum):
    """The three tabs of the background-tasks dialog."""

    PENDING = "pending"
    FAILED = "failed"
    FINISHED = "finished"


FINAL_STATES: frozenset[TaskState] = frozenset(
    {TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELED}
)

ALLOWED_CHANGES: Mapping[TaskState, frozenset[TaskState]] = {
    TaskState.WAITING: frozenset({TaskState.RUNNING, TaskState.CANCELED, TaskState.FAILED}),
    TaskState.RUNNING: frozenset({TaskState.CANCELING, TaskState.COMPLETED, TaskState.FAILED}),
    TaskState.CANCELING: frozenset({TaskState.CANCELED, TaskState.COMPLETED, TaskState.FAILED}),
    TaskState.COMPLETED: frozenset(),
    TaskState.FAILED: frozenset(),
    TaskState.CANCELED: frozenset(),
}

GROUP_STATES: Mapping[TaskGroup, frozenset[TaskState]] = {
    TaskGroup.PENDING: frozenset({TaskState.WAITING, TaskState.RUNNING, TaskState.CANCELING}),
    TaskGroup.FAILED: frozenset({TaskState.FAILED, TaskState.CANCELED}),
    TaskGroup.FINISHED: frozenset({TaskState.COMPLETED}),
}


class IllegalTransition(ValueError):
    """A change that the lifecycle forbids was asked for: a bug in the caller, not a race."""


def can_change(source: TaskState, target: TaskState) -> bool:
    """Whether a task in `source` may move to `target`."""
    return target in ALLOWED_CHANGES[source]


def group_of(state: TaskState) -> TaskGroup:
    """The dialog tab a task in `state` is shown under."""
    return next(group for group, states in GROUP_STATES.items() if state in states)


#: The version of a task as stored by its submission.
FIRST_VERSION = 1


def utcnow() -> datetime:
    """Now, in UTC, truncated to the millisecond that BSON dates keep."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _checked_set(
    sources: Iterable[TaskState],
    target: TaskState,
    at: datetime,
    fields: Mapping[str, Any] | None,
) -> tuple[list[TaskState], dict[str, Any]]:
    """The sources, sorted, and what a change to `target` sets; raises if it is forbidden."""
    source_list = sorted(set(sources))
    if not source_list:
        raise IllegalTransition(f"no source state given for a change to {target}")
    for source in source_list:
        if not can_change(source, target):
            raise IllegalTransition(f"{source} → {target} is not an allowed change")
    if fields and any("." in key for key in fields):
        # Whole top-level fields only: each is set as one literal value.
        raise ValueError("transition fields must be top-level names")
    to_set: dict[str, Any] = {"state": target.value, "updated_at": at, **(fields or {})}
    if target is TaskState.RUNNING:
        to_set["started_at"] = at
    if target in FINAL_STATES:
        to_set["finished_at"] = at
    return source_list, to_set


def transition_write(
    task_id: str,
    sources: Iterable[TaskState],
    target: TaskState,
    *,
    at: datetime,
    fields: Mapping[str, Any] | None = None,
    guard: Mapping[str, Any] | None = None,
    worker: str | None = None,
    reason: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The MongoDB filter and update pipeline that move a task from any of `sources` to `target`.

    One atomic write: the new state and `fields`, the version bumped by the server, and the
    change appended to the task's own `history` (in it, `$state` is the state being replaced).
    `guard` adds conditions to the filter (a worker's run token, say).
    Raises `IllegalTransition` if any source may not move to `target`.
    """
    source_list, to_set = _checked_set(sources, target, at, fields)
    query: dict[str, Any] = {"_id": task_id, "state": {"$in": [s.value for s in source_list]}}
    query.update(guard or {})
    new_version = {"$add": ["$version", 1]}
    event = {
        "source": "$state",
        "target": target.value,
        "version": new_version,
        "at": {"$literal": at},
        "worker": {"$literal": worker},
        "reason": {"$literal": reason},
    }
    stage = {
        **{key: {"$literal": value} for key, value in to_set.items()},
        "version": new_version,
        "history": {"$concatArrays": [{"$ifNull": ["$history", []]}, [event]]},
    }
    return query, [{"$set": stage}]


def known_transition_write(
    source: TaskState,
    version: int,
    target: TaskState,
    *,
    at: datetime,
    fields: Mapping[str, Any] | None = None,
    worker: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """`transition_write` for a writer that knows the task's state and version: a plain update
    document with the same effect on a task that matches `known_filter(version)` (and so is at
    `source`).

    A plain update costs the database less than a pipeline, and, having no per-task parts, the
    same change of many tasks can be one `update_many` (see shared/batching.py). A task that is
    no longer at (`source`, `version`) is not changed; the caller then falls back on
    `transition_write`, which reads state and version from the task itself.
    """
    _, to_set = _checked_set([source], target, at, fields)
    event = {
        "source": source.value,
        "target": target.value,
        "version": version + 1,
        "at": at,
        "worker": worker,
        "reason": reason,
    }
    return {"$set": to_set, "$inc": {"version": 1}, "$push": {"history": event}}


def known_filter(version: int) -> dict[str, Any]:
    """The filter (without `_id`) of a `known_transition_write` from a task's `version`.

    The version alone says the state, and the run that holds the task: every write that
    changes a task moves its version on, state and run included (the one write that leaves it
    alone is the clearing of the outbox mark, which no client sees). Naming the state as
    well would change nothing, and SecantusDB plans each field of a filter, so it would cost
    every shared statement (0.1 ms per task of a batch of five, measured).
    """
    return {"version": version}
