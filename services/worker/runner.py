"""Running one `RunTask` command: claim the task, run its handler, record how it ended."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from pymongo.errors import PyMongoError

from services.worker.context import RunContext
from shared import metrics
from shared.errors import Retry, TaskCanceled, TaskFailed
from shared.lifecycle import FINAL_STATES, TaskState, utcnow
from shared.messages import RunTask
from shared.registry import Registry, TaskType, UnknownTaskType, WaitForChildren
from shared.service import TaskService
from shared.store import Doc, TaskStore
from shared.task import ProgressReport

log = logging.getLogger(__name__)

_ACTIVE = (TaskState.RUNNING, TaskState.CANCELING)
#: Seconds a worker keeps trying to store an outcome while the database is unreachable.
OUTCOME_PATIENCE_S = 300.0
Ack = Callable[[], Awaitable[None]]


class Next(Enum):
    """What happens to a task after its handler returned or raised."""

    #: It ends in `Outcome.state`.
    END = "end"
    #: It ends when its children have (the handler returned `WaitForChildren`).
    AWAIT_CHILDREN = "await_children"
    #: It runs again after `Outcome.delay_s` (a retryable failure).
    RETRY = "retry"
    #: The worker is stopping: another worker runs it again.
    HAND_BACK = "hand_back"


@dataclass
class Outcome:
    """How a run ended, and what to store."""

    next: Next
    state: TaskState = TaskState.RUNNING
    result: Any = None
    error: dict[str, str] | None = None
    delay_s: float = 0
    reports: list[ProgressReport] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        """What to store with the final state; running reports end in that state too."""
        fields: dict[str, Any] = {"result": self.result, "error": self.error}
        if self.reports:
            fields["progress_reports"] = [
                {
                    **r.model_dump(mode="json"),
                    "state": (self.state if r.state is TaskState.RUNNING else r.state).value,
                }
                for r in self.reports
            ]
        return fields


def _end(state: TaskState, **fields: Any) -> Outcome:
    return Outcome(Next.END, state, **fields)


def _failed(type_: str, message: str) -> Outcome:
    return _end(TaskState.FAILED, error={"type": type_, "message": message})


@dataclass
class Runner:
    """Runs commands for one worker process; knows which tasks it runs now."""

    service: TaskService
    registry: Registry
    worker_name: str
    #: Seconds a handler gets after a cancel before it is stopped without reaching a checkpoint.
    cancel_grace_s: float = 10.0
    #: Seconds after which the command of a still-running task is acknowledged.
    ack_deadline_s: float = 25 * 60.0
    running: dict[str, RunContext] = field(default_factory=dict)
    #: Every `handle` call in progress, from claim to stored outcome.
    inflight: set[asyncio.Future[Any]] = field(default_factory=set)

    @property
    def store(self) -> TaskStore:
        """The task store."""
        return self.service.store

    async def handle(self, command: RunTask, ack: Ack) -> None:
        """Run the task of `command` unless it already ran or runs elsewhere.

        Returns once the task's outcome is stored (or it was skipped); the caller then
        acknowledges the command, unless `ack` already did (a task running past the ack
        deadline). Raises only when the database cannot be written: the caller should then give
        the command back to the queue.
        """
        current = asyncio.current_task()
        assert current is not None
        self.inflight.add(current)
        try:
            await self._handle(command, ack)
        finally:
            self.inflight.discard(current)

    async def _handle(self, command: RunTask, ack: Ack) -> None:
        claimed = await self._claim(command.task_id)
        if claimed is None:
            await self._skip(command)
            return
        doc, run_id = claimed
        early_ack = asyncio.get_running_loop().call_later(
            self.ack_deadline_s, lambda: asyncio.ensure_future(ack())
        )
        try:
            outcome = await self._run(doc, run_id)
            await self._insist(lambda: self._record(doc, run_id, outcome))
        finally:
            early_ack.cancel()

    async def _insist(self, write: Callable[[], Awaitable[None]]) -> None:
        """Store an outcome, retrying through a database outage of up to `OUTCOME_PATIENCE_S`.

        Each write is a compare-and-set, so one that was applied before its reply was lost
        simply loses the retry: the stored outcome is the same.
        """
        delay_s = 0.1
        deadline = asyncio.get_running_loop().time() + OUTCOME_PATIENCE_S
        while True:
            try:
                await write()
                return
            except PyMongoError as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("outcome not stored yet (%r); retrying in %.1f s", exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    async def request_cancel(self, task_id: str) -> None:
        """A cancel for `task_id` was broadcast: stop it at its next checkpoint."""
        context = self.running.get(task_id)
        if context is not None:
            context.cancel_requested.set()

    async def shutdown(self, grace_s: float) -> None:
        """Let running tasks finish for `grace_s` seconds, then hand the rest back."""
        if self.inflight:
            await asyncio.wait(set(self.inflight), timeout=grace_s)
        for context in list(self.running.values()):
            context.hand_back()
        if self.inflight:
            await asyncio.wait(set(self.inflight))

    async def _claim(self, task_id: str) -> tuple[Doc, str] | None:
        """The task and the id of the run that now holds it, or None if it is not ours to run."""
        run_id = await self.store.claim(task_id, self.worker_name)
        if run_id is not None:
            doc = await self.store.get_shared(task_id)
            # Ours unless, in the instant between, it was canceled and ended: then skip it.
            if doc is not None and (doc.get("run") or {}).get("id") == run_id:
                return doc, run_id
            return None
        # Not waiting: it may have been handed back (retry, lost worker, shutdown).
        return await self.store.claim_released(task_id, self.worker_name)

    async def _skip(self, command: RunTask) -> None:
        current = await self.store.get(command.task_id)
        if current is None:
            log.info("task %s no longer exists; dropping its command", command.task_id)
        elif current["state"] in FINAL_STATES:
            log.info("task %s already %s; not running it again", command.task_id, current["state"])
        elif (
            current["state"] == TaskState.CANCELING and (current.get("run") or {}).get("id") is None
        ):
            await self.service.end_unheld(current, reason="canceled while queued again")
        else:
            # Another delivery of the same command holds it; that run records the outcome,
            # and the janitor ends it if that worker goes missing.
            log.info("task %s is held by another run; dropping this copy", command.task_id)

    async def _run(self, doc: Doc, run_id: str) -> Outcome:
        context = RunContext(self.service, doc, run_id)
        self.running[doc["_id"]] = context
        try:
            outcome = await metrics.timed_run(doc, self._call_handler(doc, context))
        finally:
            del self.running[doc["_id"]]
        outcome.reports = context.reports
        return outcome

    async def _call_handler(self, doc: Doc, context: RunContext) -> Outcome:
        try:
            task_type = self.registry.get(doc["name"])
            args = task_type.args_model.model_validate(doc["args"])
        except UnknownTaskType:
            return _failed("unknown_task_type", f"this worker has no task type {doc['name']!r}")
        except ValidationError as exc:
            return _failed("invalid_args", f"stored arguments no longer validate: {exc}")
        handler = asyncio.ensure_future(task_type.handler(args, context))
        context.handler = handler
        stopper = asyncio.ensure_future(self._stop_after_grace(context, handler))
        try:
            returned = await handler
        except TaskCanceled as exc:
            return _end(TaskState.CANCELED, error={"type": "canceled", "message": str(exc)})
        except asyncio.CancelledError:
            if _current_task_cancelling():
                raise  # this worker's own task is being cancelled, not the handler
            if context.handed_back:
                return Outcome(Next.HAND_BACK)
            message = "stopped after the cancel grace time without reaching a checkpoint"
            return _end(TaskState.CANCELED, error={"type": "canceled", "message": message})
        except TaskFailed as exc:
            return _failed(exc.type, exc.message)
        except Exception as exc:
            return self._after_error(doc, task_type, context, exc)
        finally:
            stopper.cancel()
        if isinstance(returned, WaitForChildren):
            return Outcome(Next.AWAIT_CHILDREN, result=returned.result)
        try:
            return _end(TaskState.COMPLETED, result=to_jsonable_python(returned))
        except Exception:
            return _failed("invalid_result", "the handler returned a value that is not JSON")

    def _after_error(
        self, doc: Doc, task_type: TaskType, context: RunContext, exc: Exception
    ) -> Outcome:
        policy = task_type.retry
        attempt = context.attempt
        message = exc.message if isinstance(exc, Retry) else f"{type(exc).__name__} raised"
        if policy is not None and policy.retries(exc) and attempt < policy.max_attempts:
            delay_s = exc.delay_s if isinstance(exc, Retry) and exc.delay_s else None
            return Outcome(
                Next.RETRY,
                error={"type": "retry", "message": message},
                delay_s=delay_s or policy.delay_s(attempt),
            )
        if isinstance(exc, Retry) or (policy is not None and policy.retries(exc)):
            return _failed("retries_exhausted", f"{message}; gave up after {attempt} attempts")
        log.error("handler of task %s (%s) raised", doc["_id"], doc["name"], exc_info=exc)
        return _failed("internal", "the task's handler raised an unexpected error")

    async def _stop_after_grace(self, context: RunContext, handler: asyncio.Future[Any]) -> None:
        await context.cancel_requested.wait()
        await asyncio.sleep(self.cancel_grace_s)
        handler.cancel()

    async def _record(self, doc: Doc, run_id: str, outcome: Outcome) -> None:
        task_id = doc["_id"]
        if outcome.next is Next.AWAIT_CHILDREN:
            written = await self.store.update_running(
                task_id,
                run_id,
                {"$set": {"awaiting_children": True, "join_result": outcome.result}},
                projection={"_id": 1},
            )
            if written is not None:
                await self.service.finish_parent(task_id)
            return
        if outcome.next in (Next.RETRY, Next.HAND_BACK):
            attempt = {
                "worker": self.worker_name,
                "outcome": outcome.next.value,
                "error": outcome.error,
                "ended_at": utcnow(),
                "retry_in_s": round(outcome.delay_s, 3),
            }
            if await self.service.requeue(doc, run_id, attempt, delay_s=outcome.delay_s):
                return
            # Not released: it is being canceled (or was taken); end it as canceled if we can.
            outcome = _end(TaskState.CANCELED, error={"type": "canceled", "message": "canceled"})
        await self._end(doc, run_id, outcome)

    async def _end(self, doc: Doc, run_id: str, outcome: Outcome) -> None:
        """Store the final state (no read back: the claim's copy has what `ended` needs)."""
        task_id = doc["_id"]
        written = False
        if outcome.state is TaskState.CANCELED:
            written = await self.store.end_run(
                task_id,
                run_id,
                [TaskState.CANCELING],
                TaskState.CANCELED,
                fields=outcome.fields(),
                worker=self.worker_name,
            )
            if not written:
                # A handler that gave up without being asked: that is a failure.
                reports = outcome.reports
                outcome = _failed("canceled", "the handler stopped without a cancel request")
                outcome.reports = reports
        if not written:
            written = await self.store.end_run(
                task_id,
                run_id,
                _ACTIVE,
                outcome.state,
                fields=outcome.fields(),
                worker=self.worker_name,
                # Known only while nothing but the claim changed the task: a progress report
                # moves its version (and a miss just costs the general compare-and-set).
                version=None if outcome.reports else doc["version"],
            )
        if not written:
            log.warning("task %s was taken from run %s before it ended", task_id, run_id)
            return
        metrics.finished(doc["name"], outcome.state)
        await self.service.ended(doc)


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
