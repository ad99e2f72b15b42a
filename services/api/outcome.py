"""`GET /tasks/{id}/outcome`: where a waiting page goes when its task ends (the rules are
`shared/waiting_page.py`'s)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.api.problems import problem_responses
from services.api.runtime import RuntimeDep, UserDep
from services.api.tasks import _owned
from shared.task import API_PREFIX
from shared.waiting_page import Outcome, OutcomeHooks

router = APIRouter(prefix=f"{API_PREFIX}/tasks", tags=["tasks"])


def get_hooks(request: Request) -> OutcomeHooks:
    """The hooks this app was built with."""
    hooks: OutcomeHooks = request.app.state.outcome_hooks
    return hooks


@router.get(
    "/{task_id}/outcome",
    response_model=Outcome,
    responses=problem_responses(401, 404),
    summary="Where a waiting page goes next",
)
async def task_outcome(
    task_id: str, request: Request, runtime: RuntimeDep, user: UserDep
) -> Outcome:
    """For a finished task, the next URL and the flash message; `ready: false` while pending."""
    task = (await _owned(runtime, user, task_id)).view()
    return await get_hooks(request).outcome(task)
