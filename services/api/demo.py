"""The demo resource of the web UI: simulated VMs whose power state the power tasks change."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from services.api.outcome import Flash, FlashLevel, Outcome, OutcomeHooks
from services.api.problems import problem_responses
from services.api.runtime import RuntimeDep, UserDep
from shared.lifecycle import GROUP_STATES, TaskGroup, TaskState
from shared.task import API_PREFIX, Task
from shared.tasktypes.demo import DEMO_VMS, POWER_OFF, POWER_ON, POWER_TASKS, vm_by_id
from shared.tasktypes.demo import vm_power_states as derive_power_states

router = APIRouter(prefix=f"{API_PREFIX}/demo", tags=["demo"], responses=problem_responses(401))


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
    cursor = runtime.store.tasks.find(
        {"owner": user.name, "name": {"$in": list(POWER_TASKS)}},
        {"name": 1, "state": 1, "result": 1, "finished_at": 1, "args": 1},
    )
    docs = [doc async for doc in cursor]
    powers = derive_power_states(docs)
    pending_states = {s.value for s in GROUP_STATES[TaskGroup.PENDING]}
    pending: dict[str, str] = {}
    for doc in sorted(docs, key=lambda d: d["_id"]):
        if doc["state"] in pending_states:
            pending[doc["args"].get("vm", "")] = doc["_id"]
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
