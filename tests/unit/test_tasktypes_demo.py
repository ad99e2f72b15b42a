"""The demo VM task types: plain handlers, and a VM's power state derived from its tasks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import TaskCanceled, TaskFailed
from shared.registry import load_registry
from shared.tasks import APPROVE, DENY, AnswerNeeded, MemoryContext
from shared.tasktypes.demo import (
    POWER_OFF,
    POWER_ON,
    Power,
    VmPowerArgs,
    power_off,
    power_on,
    vm_power_states,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def power_task(
    name: str, vm: str, finished_s: float | None, state: str = "completed"
) -> dict[str, Any]:
    power = "off" if name == POWER_OFF else "on"
    return {
        "name": name,
        "state": state,
        "args": {"vm": vm},
        "result": {"vm": vm, "power": power} if state == "completed" else None,
        "finished_at": None if finished_s is None else T0 + timedelta(seconds=finished_s),
    }


def test_every_vm_is_on_when_no_power_task_completed() -> None:
    states = vm_power_states([power_task(POWER_OFF, "vm-web-01", None, state="running")])

    assert set(states.values()) == {Power.ON}


def test_the_power_task_that_finished_last_decides_whatever_the_order_given() -> None:
    tasks = [
        power_task(POWER_OFF, "vm-web-01", 10),
        power_task(POWER_ON, "vm-web-01", 5),
        power_task(POWER_OFF, "vm-db-01", 1),
        power_task(POWER_ON, "vm-db-01", 2, state="failed"),
    ]

    states = vm_power_states(tasks)

    assert states["vm-web-01"] is Power.OFF
    assert states["vm-db-01"] is Power.OFF
    assert states["vm-batch-07"] is Power.ON


def test_tasks_of_other_types_or_unknown_vms_are_ignored() -> None:
    tasks = [
        {**power_task(POWER_OFF, "vm-web-01", 1), "name": "test.count"},
        power_task(POWER_OFF, "vm-nope", 1),
    ]

    assert set(vm_power_states(tasks).values()) == {Power.ON}


async def test_power_off_reports_one_step_and_returns_the_new_state() -> None:
    ctx = MemoryContext()

    result = await power_off(VmPowerArgs(vm="vm-web-01", delay_s=0), ctx)

    assert result == {"vm": "vm-web-01", "power": "off"}
    [report] = ctx.reports
    assert (report.message, report.done, report.total, report.finished) == (
        "Powering off web-01",
        1,
        1,
        True,
    )


async def test_a_power_task_canceled_before_the_call_changes_nothing() -> None:
    with pytest.raises(TaskCanceled):
        await power_on(VmPowerArgs(vm="vm-db-01", delay_s=0), MemoryContext(cancel_after=0))


def test_the_registry_loads_the_demo_types() -> None:
    registry = load_registry(builtin_tasks=True)

    assert POWER_OFF in registry
    assert POWER_ON in registry
    assert registry.get(POWER_OFF).schema()["properties"]["vm"]["enum"] == [
        "vm-web-01",
        "vm-db-01",
        "vm-batch-07",
        "vm-erp-01",
    ]


async def test_powering_off_a_production_vm_asks_first_and_needs_approval() -> None:
    args = VmPowerArgs(vm="vm-erp-01", delay_s=0)
    unasked = MemoryContext()
    with pytest.raises(AnswerNeeded):
        await power_off(args, unasked)
    # It asks before it does anything: the run after the answer does it all once.
    assert (unasked.reports, [q.title for q in unasked.questions]) == ([], ["Power off erp-01?"])
    assert await power_off(args, MemoryContext(answers=[APPROVE])) == {
        "vm": "vm-erp-01",
        "power": "off",
    }
    with pytest.raises(TaskFailed) as denied:
        await power_off(args, MemoryContext(answers=[DENY]))
    assert denied.value.type == "not_approved"


async def test_other_vms_and_powering_on_ask_nothing() -> None:
    ctx = MemoryContext()
    await power_off(VmPowerArgs(vm="vm-web-01", delay_s=0), ctx)
    await power_on(VmPowerArgs(vm="vm-erp-01", delay_s=0), ctx)
    assert ctx.questions == []
