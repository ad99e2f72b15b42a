"""Which changes of a task are webhook events, which endpoints get each, and what is sent. Pure.

A delivery is one event for one endpoint. Its id (the `webhook-id` header) is derived from the
endpoint, the task and the event, so recording the same event twice (a sender that restarted,
two senders following the same changes) makes one delivery, and every retry carries the same id.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.lifecycle import FINAL_STATES, TaskState
from shared.records import StoredTask


class EventType(StrEnum):
    """What happened to a task."""

    #: A worker started it (its first run).
    STARTED = "task.started"
    #: Its progress reports changed while it ran (one event per change).
    PROGRESS = "task.progress"
    COMPLETED = "task.completed"
    FAILED = "task.failed"
    CANCELED = "task.canceled"


#: What an endpoint gets when it names no events: how each task ended.
DEFAULT_EVENTS: frozenset[EventType] = frozenset(
    {EventType.COMPLETED, EventType.FAILED, EventType.CANCELED}
)
FINAL_EVENTS: dict[TaskState, EventType] = {
    TaskState.COMPLETED: EventType.COMPLETED,
    TaskState.FAILED: EventType.FAILED,
    TaskState.CANCELED: EventType.CANCELED,
}


@dataclass(frozen=True)
class TaskChange:
    """One committed change of a task, as the change stream reports it."""

    #: The task as read after the change (it may have moved on since).
    task: StoredTask
    #: The state the change moved it to; None if the state stayed.
    new_state: TaskState | None
    #: The version the change left it at.
    version: int
    #: Whether the change rewrote its progress reports.
    progress: bool


@dataclass(frozen=True)
class Event:
    """An event of one task: its type, when it happened, and what tells it apart from the
    task's other events of that type (only progress has several)."""

    type: EventType
    task: StoredTask
    at: datetime
    key: str


def events_of(change: TaskChange) -> list[Event]:
    """The events a change makes: a start, an end, or (with no change of state) progress."""
    task = change.task
    state = change.new_state
    if state is TaskState.RUNNING:
        return [Event(EventType.STARTED, task, task.started_at or task.updated_at, "started")]
    if state in FINAL_STATES:
        event_type = FINAL_EVENTS[state]
        return [Event(event_type, task, task.finished_at or task.updated_at, "ended")]
    if state is None and change.progress:
        # The change's own version: the task read after it may be at a later one.
        return [Event(EventType.PROGRESS, task, task.updated_at, f"progress.{change.version}")]
    return []


def final_event(task: StoredTask) -> Event | None:
    """The event of how a finished task ended (for catching up from the tasks themselves)."""
    event_type = FINAL_EVENTS.get(task.state)
    if event_type is None:
        return None
    return Event(event_type, task, task.finished_at or task.updated_at, "ended")


def wants(
    *,
    owner: str,
    events: frozenset[EventType],
    task_types: tuple[str, ...],
    created_at: datetime,
    event: Event,
) -> bool:
    """Whether an endpoint of `owner` that takes `events` of `task_types` (all types if empty;
    `prefix.*` names a family) and was created at `created_at` gets `event`: only its owner's
    tasks, and only what happened after it was registered."""
    task = event.task
    if task.owner != owner or event.type not in events or event.at < created_at:
        return False
    return not task_types or any(type_matches(pattern, task.name) for pattern in task_types)


def type_matches(pattern: str, name: str) -> bool:
    """Whether task type `name` is `pattern`, or of the family `pattern` names (`demo.*`)."""
    if pattern.endswith(".*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def delivery_id(endpoint_id: str, task_id: str, key: str) -> str:
    """The `webhook-id` of an event of a task for an endpoint: the same every time it is
    recorded, so receivers de-duplicate on it."""
    digest = hashlib.sha256(f"{endpoint_id}\n{task_id}\n{key}".encode()).digest()
    return "msg_" + base64.b32encode(digest[:20]).decode().lower()


def payload(event: Event) -> str:
    """The body of a delivery: Standard Webhooks' `{type, timestamp, data}`, where `data` is the
    task exactly as `GET /api/v1/tasks/{id}` shows it."""
    body: dict[str, Any] = {
        "type": event.type.value,
        "timestamp": event.at.isoformat().replace("+00:00", "Z"),
        "data": event.task.view().model_dump(mode="json"),
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
