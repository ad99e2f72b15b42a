"""The demo resource of the web UI: simulated VMs whose power state the power tasks change."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from services.api.problems import problem_responses
from services.api.runtime import RuntimeDep, UserDep
from shared.lifecycle import GROUP_STATES, TaskGroup, TaskState
from shared.registry import Registry
from shared.task import API_PREFIX, Task
from shared.tasktypes.demo import DEMO_VMS, POWER_OFF, POWER_ON, POWER_TASKS, vm_by_id
from shared.tasktypes.demo import vm_power_states as derive_power_states
from shared.waiting_page import Flash, FlashLevel, Outcome, OutcomeHooks

#: Mounted only where the power types are registered (`available`).
router = APIRouter(prefix=f"{API_PREFIX}/demo", tags=["demo"], responses=problem_responses(401))


def available(registry: Registry) -> bool:
    """Whether the demo's task types are registered (`TASKLIGHT_BUILTIN_TASKS` on)."""
    return all(name in registry for name in POWER_TASKS)


class VmView(BaseModel):
    """A simulated VM as the UI shows it."""

    id: str
    name: str
    provider: str
    power: str
    #: Id of a power task queued or running for this VM, if any.
    pending_task: str | None = None


@router.get("/vms", response_model=list[VmView])
async def list_vms(runtime: RuntimeDep, user: UserDep) -> list[VmView]:
    """The simulated VMs, each with the power state its completed power tasks left it in."""
    power_tasks = await runtime.store.tasks.of_types(user.name, POWER_TASKS)
    powers = derive_power_states(t.model_dump() for t in power_tasks)
    pending: dict[str, str] = {}
    for task in power_tasks:
        if task.state in GROUP_STATES[TaskGroup.PENDING]:
            pending[str(task.args.get("vm", ""))] = task.id
    return [
        VmView(
            id=vm.id,
            name=vm.name,
            provider=vm.provider,
            power=powers[vm.id].value,
            pending_task=pending.get(vm.id),
        )
        for vm in DEMO_VMS
    ]


def register_outcomes(hooks: OutcomeHooks) -> None:
    """On-ready hooks of the power tasks: back to the VM list, naming the VM and its new state."""

    def power_outcome(task: Task) -> Outcome:
        vm_id = str(task.args.get("vm", ""))
        vm = vm_by_id(vm_id)
        label = vm.name if vm else vm_id
        action = "powered off" if task.name == POWER_OFF else "powered on"
        if task.state is TaskState.COMPLETED:
            flash = Flash(level=FlashLevel.SUCCESS, message=f"VM {label} is {action}.")
        elif task.state is TaskState.CANCELED:
            flash = Flash(level=FlashLevel.WARNING, message=f"VM {label} was not {action}.")
        else:
            reason = task.error.message if task.error else "unknown error"
            flash = Flash(
                level=FlashLevel.ERROR, message=f"VM {label} could not be {action}: {reason}"
            )
        return Outcome(ready=True, state=task.state, next_url=f"/#{vm_id}", flash=flash)

    hooks.on_ready(POWER_OFF)(power_outcome)
    hooks.on_ready(POWER_ON)(power_outcome)
