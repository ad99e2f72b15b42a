"""Demo task types for the web UI's "queue and tell" flow: simulated virtual machines.

A VM here is a name in a fixed catalogue; its power state is not stored anywhere of its own. It is
derived from the power tasks that completed for it (`vm_power_states`), so the handlers stay plain
functions that compute and return, with no database or broker to reach, as real provider calls
would be made from a worker and their outcome recorded as the task's result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import TaskFailed
from shared.lifecycle import TaskState
from shared.questions import APPROVE, Question
from shared.registry import Registry, TaskContext, TaskType
from shared.reservations import Resources

#: Task type that powers a VM off.
POWER_OFF = "demo.vm_power_off"
#: Task type that powers a VM on.
POWER_ON = "demo.vm_power_on"
POWER_TASKS = (POWER_OFF, POWER_ON)


class Power(StrEnum):
    """Power state of a simulated VM."""

    #: Running.
    ON = "on"
    #: Stopped.
    OFF = "off"


@dataclass(frozen=True)
class DemoVm:
    """One simulated VM of the catalogue."""

    id: str
    name: str
    provider: str
    #: Serves production: powering it off waits for its owner's approval.
    production: bool = False


#: The simulated VMs; every one starts powered on.
DEMO_VMS: tuple[DemoVm, ...] = (
    DemoVm("vm-web-01", "web-01", "RHEV"),
    DemoVm("vm-db-01", "db-01", "VMware"),
    DemoVm("vm-batch-07", "batch-07", "EC2"),
    DemoVm("vm-erp-01", "erp-01", "VMware", production=True),
)

VmId = Literal["vm-web-01", "vm-db-01", "vm-batch-07", "vm-erp-01"]


class VmPowerArgs(BaseModel):
    """Arguments of the VM power tasks."""

    model_config = ConfigDict(extra="forbid")

    vm: VmId = Field(description="Id of the simulated VM.")
    delay_s: float = Field(
        default=3.0, ge=0, le=600, description="Seconds the simulated provider call takes."
    )
    approval_timeout_s: float = Field(
        default=600,
        gt=0,
        le=86400,
        description="Seconds a production VM's power-off waits for approval; then it fails.",
    )


def vm_resources(args: VmPowerArgs) -> Resources:
    """A power task takes its VM exclusively: two power changes of one VM never overlap."""
    vm = vm_by_id(args.vm)
    return Resources(exclusive=(f"vm:{vm.name if vm else args.vm}",))


def vm_by_id(vm_id: str) -> DemoVm | None:
    """The catalogue entry of `vm_id`, or None."""
    return next((vm for vm in DEMO_VMS if vm.id == vm_id), None)


async def _change_power(args: VmPowerArgs, ctx: TaskContext, target: Power) -> dict[str, Any]:
    vm = vm_by_id(args.vm)
    label = vm.name if vm else args.vm
    if target is Power.OFF and vm is not None and vm.production:
        # Asked before anything is done: the run after the answer starts from here again.
        await _approve_power_off(vm, ctx, args.approval_timeout_s)
    verb = "Powering off" if target is Power.OFF else "Powering on"
    progress = await ctx.report(f"{verb} {label}", "demo.vm_power", total=1)
    await ctx.checkpoint()
    await asyncio.sleep(args.delay_s)  # the provider's API call, simulated
    await progress.advance()
    await progress.finish()
    return {"vm": args.vm, "power": target.value}


async def _approve_power_off(vm: DemoVm, ctx: TaskContext, timeout_s: float) -> None:
    """Ask the owner to approve powering off a production VM; fail unless they do."""
    question = Question.approval(
        f"Power off {vm.name}?",
        f"{vm.name} serves production: powering it off stops it for everyone who uses it.",
        approve="Power off",
        deny="Keep it running",
        danger=True,
        timeout_s=timeout_s,
    )
    if await ctx.ask(question) != APPROVE:
        raise TaskFailed(f"powering off {vm.name} was not approved", type="not_approved")


async def power_off(args: VmPowerArgs, ctx: TaskContext) -> dict[str, Any]:
    """Power a simulated VM off, after a delay that stands for the provider's API call; a
    production VM only once its owner approved."""
    return await _change_power(args, ctx, Power.OFF)


async def power_on(args: VmPowerArgs, ctx: TaskContext) -> dict[str, Any]:
    """Power a simulated VM on, after a delay that stands for the provider's API call."""
    return await _change_power(args, ctx, Power.ON)


def vm_power_states(tasks: Iterable[Mapping[str, Any]]) -> dict[str, Power]:
    """Each VM's power state, from its power tasks (stored documents or API views, any order).

    The completed task that finished last decides; a VM with none is on.
    """
    states = {vm.id: Power.ON for vm in DEMO_VMS}
    decided_at: dict[str, Any] = {}
    for task in tasks:
        if task.get("name") not in POWER_TASKS or task.get("state") != TaskState.COMPLETED:
            continue
        result = task.get("result") or {}
        vm_id, power = result.get("vm"), result.get("power")
        finished_at = task.get("finished_at")
        if vm_id not in states or power not in (Power.ON, Power.OFF) or finished_at is None:
            continue
        if vm_id not in decided_at or finished_at >= decided_at[vm_id]:
            decided_at[vm_id] = finished_at
            states[vm_id] = Power(power)
    return states


def register(registry: Registry) -> None:
    """Add the demo task types to `registry`."""
    registry.add(
        TaskType(
            POWER_OFF,
            "Power off VM",
            power_off.__doc__ or "",
            VmPowerArgs,
            power_off,
            resources=vm_resources,
        )
    )
    registry.add(
        TaskType(
            POWER_ON,
            "Power on VM",
            power_on.__doc__ or "",
            VmPowerArgs,
            power_on,
            resources=vm_resources,
        )
    )
