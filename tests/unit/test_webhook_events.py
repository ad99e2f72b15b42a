"""Which task changes are webhook events, who gets them, and the body sent."""

from __future__ import annotations

import json
from datetime import timedelta

from shared.clock import utcnow
from shared.lifecycle import TaskState
from shared.webhooks.events import (
    DEFAULT_EVENTS,
    EventType,
    TaskChange,
    delivery_id,
    events_of,
    final_event,
    payload,
    type_matches,
    wants,
)
from tests.support import stored_task


def change(
    state: TaskState | None, *, progress: bool = False, version: int = 2, **fields: object
) -> TaskChange:
    task = stored_task(state=(state or TaskState.RUNNING).value, **fields)
    return TaskChange(task=task, new_state=state, version=version, progress=progress)


def test_a_start_an_end_and_progress_are_events_and_other_changes_are_not() -> None:
    now = utcnow()
    [started] = events_of(change(TaskState.RUNNING, started_at=now))
    assert (started.type, started.at, started.key) == (EventType.STARTED, now, "started")
    for state, kind in [
        (TaskState.COMPLETED, EventType.COMPLETED),
        (TaskState.FAILED, EventType.FAILED),
        (TaskState.CANCELED, EventType.CANCELED),
    ]:
        [ended] = events_of(change(state, finished_at=now, progress=True))
        assert (ended.type, ended.at, ended.key) == (kind, now, "ended")
    [progress] = events_of(change(None, progress=True, version=7))
    assert (progress.type, progress.key) == (EventType.PROGRESS, "progress.7")
    assert events_of(change(TaskState.CANCELING)) == []
    assert events_of(change(None)) == []


def test_an_endpoint_gets_only_its_owners_wanted_events_of_its_types_since_it_exists() -> None:
    now = utcnow()
    task = stored_task(state="completed", finished_at=now, name="demo.vm_power_off")
    event = final_event(task)
    assert event is not None

    def gets(**overrides: object) -> bool:
        options: dict[str, object] = {
            "owner": "dev",
            "events": DEFAULT_EVENTS,
            "task_types": (),
            "created_at": now - timedelta(seconds=1),
            "event": event,
        }
        options.update(overrides)
        return wants(**options)  # type: ignore[arg-type]

    assert gets()
    assert not gets(owner="alice")
    assert not gets(events=frozenset({EventType.FAILED}))
    assert not gets(created_at=now + timedelta(seconds=1))
    assert gets(task_types=("demo.*",))
    assert gets(task_types=("test.noop", "demo.vm_power_off"))
    assert not gets(task_types=("test.*",))
    assert type_matches("demo.*", "demo.x")
    assert not type_matches("demo.*", "demonstration")


def test_a_delivery_id_is_the_same_for_the_same_event_and_differs_for_any_other() -> None:
    first = delivery_id("ep1", "task1", "ended")
    assert first == delivery_id("ep1", "task1", "ended")
    assert first.startswith("msg_")
    others = {delivery_id("ep2", "task1", "ended"), delivery_id("ep1", "task2", "ended")}
    others.add(delivery_id("ep1", "task1", "started"))
    assert first not in others
    assert len(others) == 3


def test_the_body_holds_the_task_as_the_rest_api_shows_it() -> None:
    task = stored_task(state="completed", finished_at=utcnow(), result={"counted": 3})
    event = final_event(task)
    assert event is not None
    body = json.loads(payload(event))
    assert body["type"] == "task.completed"
    assert body["timestamp"].endswith("Z")
    assert body["data"] == json.loads(task.view().model_dump_json())
