"""Routes under /api/v1/tasks: submit, read, list, cancel, answer and delete tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.api.problems import ProblemError, problem_responses
from services.api.runtime import RuntimeDep, UserDep
from shared.auth import Principal
from shared.ids import is_task_id
from shared.jsonlimits import TOO_DEEP
from shared.lifecycle import FINAL_STATES, GROUP_STATES, Phase, TaskGroup, TaskState
from shared.questions import answer_errors
from shared.rate_limit import RateLimited
from shared.records import StoredTask
from shared.reservations import MAX_RESOURCES
from shared.runs import AlreadyFinished
from shared.submission import (
    ArgsTooLarge,
    BrokerUnavailable,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    InvalidSubmission,
    NewTask,
    Options,
    ScheduledTooFar,
    Submitted,
)
from shared.task import API_PREFIX, Task, UiHints, task_href

# Every route needs credentials (401); writes by cookie need the CSRF token too (403).
router = APIRouter(prefix=f"{API_PREFIX}/tasks", tags=["tasks"], responses=problem_responses(401))

#: Seconds a client should wait before retrying a submission the broker could not take.
RETRY_AFTER_S = 5


class Submission(BaseModel):
    """A task to run: its type, arguments, and optional waiting-page hints and metadata."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["test.count"])
    args: dict[str, Any] = Field(default_factory=dict, examples=[{"rounds": 3, "round_s": 0.2}])
    ui: UiHints | None = None
    metadata: dict[str, Any] | None = None
    exclusive_resources: list[str] = Field(
        default_factory=list,
        max_length=MAX_RESOURCES,
        description="Resources it takes alone: no task that takes one of them runs meanwhile",
        examples=[["vm:web-01"]],
    )
    shared_resources: list[str] = Field(
        default_factory=list,
        max_length=MAX_RESOURCES,
        description="Resources it shares with other shared holders (no exclusive one meanwhile)",
        examples=[["provider:ec2"]],
    )
    run_at: AwareDatetime | None = Field(
        default=None,
        description="Start at this time (a past one: at once); at most 30 days ahead by default",
    )
    delay_s: float | None = Field(
        default=None, ge=0, description="Start this many seconds from now (instead of run_at)"
    )
    priority: int = Field(
        default=0,
        ge=0,
        le=1,
        description="1: high, runs before the normal tasks queued ahead of it",
    )

    def options(self) -> Options:
        """What it asks besides its type and arguments."""
        return Options(
            exclusive_resources=tuple(self.exclusive_resources),
            shared_resources=tuple(self.shared_resources),
            run_at=self.run_at,
            delay_s=self.delay_s,
            priority=self.priority,
        )


class TaskPage(BaseModel):
    """One page of tasks, newest first; `next` is the address of the next page, if any."""

    results: list[Task]
    next: str | None


class TaskEvent(BaseModel):
    """One state change of a task."""

    source: TaskState | None
    target: TaskState
    version: int
    at: Any
    worker: str | None = None
    reason: str | None = None


async def _owned(runtime: RuntimeDep, user: Principal, task_id: str) -> StoredTask:
    """The task, if it exists and the user may see it; 404 otherwise (malformed ids too).

    Another user's task is "not found", not "forbidden": its existence is not theirs to learn.
    """
    task = await runtime.store.tasks.get(task_id) if is_task_id(task_id) else None
    if task is None or not user.may_see(task.owner):
        raise ProblemError("urn:tasklight:problem:not-found", f"no task {task_id}")
    return task


@router.post(
    "",
    status_code=202,
    response_model=Task,
    responses=problem_responses(400, 403, 409, 413, 415, 422, 429, 503),
    summary="Submit a task",
)
async def submit_task(
    submission: Submission,
    runtime: RuntimeDep,
    user: UserDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            description="The same key and body (within 24 h) return the same task",
        ),
    ] = None,
) -> Task:
    """Store the task as `waiting`, queue it, and answer at once with its address."""
    try:
        async with runtime.submissions.counted(user.name):
            if idempotency_key is None:
                submitted = Submitted(
                    await runtime.submissions.submit(
                        submission.name,
                        submission.args,
                        owner=user.name,
                        ui=submission.ui,
                        metadata=submission.metadata,
                        options=submission.options(),
                    )
                )
            else:
                submitted = await runtime.submissions.submit_once(
                    idempotency_key,
                    submission.name,
                    submission.args,
                    owner=user.name,
                    ui=submission.ui,
                    metadata=submission.metadata,
                    options=submission.options(),
                )
        if submitted.replayed:  # the answer to an earlier request: no new task to count
            runtime.submissions.limiter.give_back(user.name)
    except SUBMISSION_ERRORS as exc:
        raise _submission_problem(exc, ["body"]) from None
    except IdempotencyKeyReused:
        raise ProblemError(
            "urn:tasklight:problem:idempotency-key-reused",
            "this Idempotency-Key was used with another body; use a new key for a new task",
        ) from None
    except IdempotencyKeyInFlight:
        raise ProblemError(
            "urn:tasklight:problem:idempotency-key-in-flight",
            "the first request with this Idempotency-Key has not finished; retry shortly",
            headers={"Retry-After": "1"},
        ) from None
    response.headers["Location"] = task_href(submitted.task.id)
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return submitted.task.view()


SUBMISSION_ERRORS = (
    InvalidSubmission,
    ArgsTooLarge,
    RateLimited,
    BrokerUnavailable,
    ScheduledTooFar,
)


def _submission_problem(exc: Exception, loc: list[str | int]) -> ProblemError:
    """The problem for a refused submission; `loc` is where the submission is in the body."""
    if isinstance(exc, InvalidSubmission):
        errors = [{**err, "loc": [*loc, *err["loc"]]} for err in exc.errors]
        # Too deep is the same problem wherever it is, in the body or in a task's free JSON.
        deep = any(err.get("type") == TOO_DEEP for err in errors)
        return ProblemError(
            "urn:tasklight:problem:too-deep" if deep else "urn:tasklight:problem:invalid-task",
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors),
            errors=errors,
        )
    if isinstance(exc, ArgsTooLarge):
        return ProblemError("urn:tasklight:problem:args-too-large", str(exc))
    if isinstance(exc, ScheduledTooFar):
        return ProblemError(
            "urn:tasklight:problem:scheduled-too-far", str(exc), extra={"limit_s": exc.limit_s}
        )
    if isinstance(exc, RateLimited):
        return ProblemError(
            "urn:tasklight:problem:rate-limited",
            str(exc),
            headers={"Retry-After": str(exc.retry_after_s)},
        )
    return ProblemError(
        "urn:tasklight:problem:broker-unavailable",
        f"not queued ({exc}); nothing was stored, retry later",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


#: Most tasks one batch submission may hold.
MAX_BATCH = 100


class Batch(BaseModel):
    """Several tasks submitted at once (at most 100)."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[Submission] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResult(BaseModel):
    """The stored tasks of a batch, in the order submitted."""

    results: list[Task]


@router.post(
    ":batch",
    status_code=202,
    response_model=BatchResult,
    responses=problem_responses(400, 403, 413, 415, 422, 429, 503),
    summary="Submit up to 100 tasks at once",
)
async def submit_batch(batch: Batch, runtime: RuntimeDep, user: UserDep) -> BatchResult:
    """Store every task as `waiting` in one write and queue them all: one round trip, and one
    database commit, for up to 100 tasks. All or nothing: one invalid task refuses the batch
    (`errors[].loc` names it by index), and so does a broker that takes none of the commands."""
    try:
        async with runtime.submissions.counted(user.name, len(batch.tasks)):
            stored = await runtime.submissions.submit_many(
                [NewTask(t.name, t.args, t.ui, t.metadata, t.options()) for t in batch.tasks],
                owner=user.name,
            )
    except SUBMISSION_ERRORS as exc:
        raise _submission_problem(exc, ["body", "tasks"]) from None
    return BatchResult(results=[task.view() for task in stored])


@router.get("", response_model=TaskPage, responses=problem_responses(422), summary="List tasks")
async def list_tasks(
    runtime: RuntimeDep,
    user: UserDep,
    group: TaskGroup | None = None,
    state: Annotated[list[TaskState] | None, Query()] = None,
    name: str | None = None,
    owner: Annotated[
        str | None, Query(description="Only this user's tasks (others than yourself: admins)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="`next` of the previous page")] = None,
) -> TaskPage:
    """The user's tasks (an admin's: everyone's), newest first, filtered by dialog group,
    states, type name and owner."""
    if cursor is not None and not is_task_id(cursor):
        raise ProblemError(
            "urn:tasklight:problem:invalid-request",
            "cursor: not a cursor from a previous page",
            errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value_error"}],
        )
    states: set[TaskState] | None = None
    if group is not None:
        states = set(GROUP_STATES[group])
    if state:
        states = set(state) if states is None else states & set(state)
    visible = user.owner_filter
    if owner is not None:
        if not user.may_see(owner):
            return TaskPage(results=[], next=None)
        visible = owner
    found = await runtime.store.tasks.page(
        owner=visible, states=states, name=name, limit=limit + 1, before=cursor
    )
    next_url = None
    if len(found) > limit:
        found = found[:limit]
        params: list[tuple[str, str]] = [("limit", str(limit)), ("cursor", found[-1].id)]
        if group is not None:
            params.append(("group", group.value))
        params.extend(("state", s.value) for s in state or [])
        if name is not None:
            params.append(("name", name))
        if owner is not None:
            params.append(("owner", owner))
        next_url = f"{API_PREFIX}/tasks?{urlencode(params)}"
    return TaskPage(results=[task.view() for task in found], next=next_url)


class Purged(BaseModel):
    """How many finished tasks a purge removed."""

    deleted: int


@router.delete(
    "",
    response_model=Purged,
    responses=problem_responses(403, 422),
    summary="Purge finished tasks",
)
async def purge_tasks(
    runtime: RuntimeDep,
    user: UserDep,
    finished_before: Annotated[datetime, Query(description="Purge tasks finished before this")],
    group: TaskGroup | None = None,
) -> Purged:
    """Delete the user's (an admin's: everyone's) finished (`group=finished`) or failed tasks,
    or both, that finished before `finished_before`. Pending tasks are never purged; cancel
    them first."""
    if group is TaskGroup.PENDING:
        raise ProblemError(
            "urn:tasklight:problem:invalid-request",
            "group: pending tasks cannot be purged; cancel them first",
            errors=[{"loc": ["query", "group"], "msg": "not purgeable", "type": "value_error"}],
        )
    states = GROUP_STATES[group] if group is not None else FINAL_STATES
    deleted = await runtime.store.tasks.purge(
        owner=user.owner_filter, states=states, finished_before=finished_before
    )
    return Purged(deleted=deleted)


@router.get(
    "/{task_id}", response_model=Task, responses=problem_responses(404), summary="Read a task"
)
async def get_task(task_id: str, runtime: RuntimeDep, user: UserDep) -> Task:
    """The task with its progress reports, worker, parent and children."""
    return (await _owned(runtime, user, task_id)).view()


@router.get(
    "/{task_id}/events",
    response_model=list[TaskEvent],
    responses=problem_responses(404),
    summary="A task's state changes",
)
async def get_task_events(task_id: str, runtime: RuntimeDep, user: UserDep) -> list[TaskEvent]:
    """Every state change of the task, oldest first."""
    await _owned(runtime, user, task_id)
    history = await runtime.store.tasks.history(task_id)
    return [TaskEvent.model_validate(event.model_dump()) for event in history]


@router.post(
    "/{task_id}/cancel",
    status_code=202,
    response_model=Task,
    responses=problem_responses(403, 404, 409),
    summary="Cancel a task",
)
async def cancel_task(task_id: str, runtime: RuntimeDep, user: UserDep) -> Task:
    """A waiting task is canceled at once; a running one stops at its next checkpoint."""
    await _owned(runtime, user, task_id)
    return (await _cancel(runtime, task_id)).view()


class AnswerBody(BaseModel):
    """The answer to the question a task waits on: a choice's value, or the form's object."""

    model_config = ConfigDict(extra="forbid")

    answer: Any = Field(examples=["approve"])
    question: str | None = Field(
        default=None,
        max_length=100,
        description="The key of the question answered: refused (409) if it is no longer the "
        "one the task waits on, so an answer to a question seen earlier is never taken for "
        "another",
    )


@router.post(
    "/{task_id}/answer",
    status_code=202,
    response_model=Task,
    responses=problem_responses(400, 403, 404, 409, 422),
    summary="Answer the question a task asked",
)
async def answer_task(task_id: str, body: AnswerBody, runtime: RuntimeDep, user: UserDep) -> Task:
    """Answer the task's `question` (its owner, or an admin); the task runs on with it, on any
    worker. `422` for an answer the question refuses (not one of its choices, or not valid for
    its form's schema), `409` if it waits on no question, or on another one (answered already,
    timed out, canceled)."""
    task = await _owned(runtime, user, task_id)
    question = task.question
    if task.phase is not Phase.AWAITING_ANSWER or question is None:
        raise _not_asking(task, f"task {task_id} is not waiting for an answer")
    if body.question is not None and body.question != question.key:
        raise _not_asking(task, f"task {task_id} no longer waits on question {body.question!r}")
    errors = answer_errors(question, body.answer)
    if errors:
        located = [{**error, "loc": ["body", "answer", *error["loc"]]} for error in errors]
        raise ProblemError(
            "urn:tasklight:problem:invalid-answer",
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in located),
            errors=located,
        )
    answered = await runtime.runs.answer(task_id, question.key, body.answer, by=user.name)
    if answered is None:
        current = await runtime.store.tasks.get(task_id) or task
        raise _not_asking(current, f"question {question.key!r} of task {task_id} is settled")
    return answered.view()


def _not_asking(task: StoredTask, detail: str) -> ProblemError:
    return ProblemError(
        "urn:tasklight:problem:not-asking",
        detail,
        extra={"task": task.view().model_dump(mode="json")},
    )


@router.delete(
    "/{task_id}",
    status_code=204,
    responses={202: {"model": Task}, **problem_responses(403, 404)},
    summary="Delete a finished task, or cancel a pending one",
)
async def delete_task(task_id: str, runtime: RuntimeDep, user: UserDep) -> Response:
    """A finished task is deleted (204); a pending one is canceled (202, as cancel does)."""
    await _owned(runtime, user, task_id)
    if await runtime.store.tasks.delete_finished(task_id):
        return Response(status_code=204)
    try:
        canceled = await _cancel(runtime, task_id)
    except ProblemError:
        # It finished between the two steps: delete it now.
        if await runtime.store.tasks.delete_finished(task_id):
            return Response(status_code=204)
        raise
    return Response(
        canceled.view().model_dump_json(), status_code=202, media_type="application/json"
    )


async def _cancel(runtime: RuntimeDep, task_id: str) -> StoredTask:
    try:
        task = await runtime.runs.cancel(task_id)
    except AlreadyFinished as exc:
        raise ProblemError(
            "urn:tasklight:problem:already-finished",
            f"task {task_id} is already {exc.task.state}; there is nothing to cancel",
            extra={"task": exc.task.view().model_dump(mode="json")},
        ) from None
    if task is None:
        raise ProblemError("urn:tasklight:problem:not-found", f"no task {task_id}")
    return task
