"""Routes about the system rather than one task: task types, workers, health."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.api.problems import problem_responses
from services.api.runtime import RuntimeDep, UserDep
from shared.task import API_PREFIX

router = APIRouter()

#: Seconds a readiness check waits for each backing service.
READY_TIMEOUT_S = 2.0


class TaskTypeInfo(BaseModel):
    """A task type that can be submitted, with the JSON Schema of its arguments."""

    name: str
    title: str
    description: str
    args_schema: dict[str, Any]


class WorkerInfo(BaseModel):
    """A worker process, its last heartbeat, and the tasks it runs now; the rest (when it
    started, how many tasks it takes, its process id and host) for administrators only."""

    name: str
    last_heartbeat: datetime | None = None
    missing: bool = False
    tasks: list[str] = []
    started_at: datetime | None = None
    concurrency: int | None = None
    pid: int | None = None
    host: str | None = None


#: What a user who is not an administrator sees of a worker.
USER_FIELDS = frozenset({"name", "last_heartbeat", "missing", "tasks"})


@router.get(
    f"{API_PREFIX}/task-types",
    response_model=list[TaskTypeInfo],
    tags=["meta"],
    responses=problem_responses(401),
)
async def task_types(runtime: RuntimeDep, user: UserDep) -> list[TaskTypeInfo]:
    """Every task type this deployment can run."""
    return [
        TaskTypeInfo(name=t.name, title=t.title, description=t.description, args_schema=t.schema())
        for t in runtime.registry
    ]


@router.get(
    f"{API_PREFIX}/workers",
    response_model=list[WorkerInfo],
    tags=["meta"],
    responses=problem_responses(401),
)
async def workers(runtime: RuntimeDep, user: UserDep) -> list[WorkerInfo]:
    """Workers that have heartbeated, newest heartbeat first. An administrator sees all of
    them, with all their fields; a user only the workers running their tasks, with those tasks,
    the name, heartbeat and whether it is missing."""
    records = await runtime.store.workers.all()
    if user.owner_filter is None:
        return [WorkerInfo.model_validate(record.model_dump()) for record in records]
    running = [task_id for record in records for task_id in record.tasks]
    visible = await runtime.store.tasks.visible_ids(running, user.owner_filter)
    infos = []
    for record in records:
        theirs = [task_id for task_id in record.tasks if task_id in visible]
        if theirs:
            shown = record.model_dump(include=set(USER_FIELDS))
            infos.append(WorkerInfo.model_validate({**shown, "tasks": theirs}))
    return infos


@router.get("/healthz", tags=["meta"])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["meta"], responses={503: {"description": "Not ready"}})
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Readiness: the database and the broker both answer."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(runtime.store.ping(), READY_TIMEOUT_S)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    broker_ok = await runtime.broker.ping(timeout=READY_TIMEOUT_S)
    checks["broker"] = "ok" if broker_ok else "unavailable"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )
