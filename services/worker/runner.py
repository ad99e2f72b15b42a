"""Running one `RunTask` command: claim the task, run its handler, record how it ended."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from services.worker.context import RunContext
from shared.errors import TaskCanceled, TaskFailed
from shared.ids import new_task_id
from shared.lifecycle import FINAL_STATES, TaskState, utcnow
from shared.messages import RunTask
from shared.registry import Registry, UnknownTaskType, WaitForChildren
from shared.service import TaskService
from shared.store import Doc, TaskStore
from shared.task import ProgressReport

log = logging.getLogger(__name__)

_ACTIVE = (TaskState.RUNNING, TaskState.CANCELING)


@dataclass
class Outcome:
    """How a run ended: the final state and the fields to record with it."""

    state: TaskState
    result: Any = None
    error: dict[str, str] | None = None
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


@dataclass
class Runner:
    """Runs commands for one worker process; knows which tasks it runs now."""

    service: TaskService
    registry: Registry
    worker_name: str
    #: Seconds a handler gets after a cancel before it is stopped without reaching a checkpoint.
    cancel_grace_s: float = 10.0
    running: dict[str, RunContext] = field(default_factory=dict)

    @property
    def store(self) -> TaskStore:
        """The task store."""
        return self.service.store

    async def handle(self, command: RunTask) -> None:
        """Run the task of `command` unless it already ran or runs elsewhere.

        Returns once the task's outcome is stored (or it was skipped), so the caller may then
        acknowledge the command. Raises only when the database cannot be written: the caller
        should then give the command back to the queue.
        """
        run_id = new_task_id()
        doc = await self.store.transition(
            command.task_id,
            [TaskState.WAITING],
            TaskState.RUNNING,
            fields={
                "worker": {"name": self.worker_name, "last_heartbeat": utcnow(), "missing": False},
                "run": {"id": run_id, "worker": self.worker_name},
            },
            worker=self.worker_name,
        )
        if doc is None:
            await self._skip(command)
            return
        outcome = await self._run(doc, run_id)
        await self._record(doc, run_id, outcome)

    async def request_cancel(self, task_id: str) -> None:
        """A cancel for `task_id` was broadcast: stop it at its next checkpoint."""
        context = self.running.get(task_id)
        if context is not None:
            context.cancel_requested.set()

    async def _skip(self, command: RunTask) -> None:
        current = await self.store.get(command.task_id)
        if current is None:
            log.info("task %s no longer exists; dropping its command", command.task_id)
        elif current["state"] in FINAL_STATES:
            log.info("task %s already %s; not running it again", command.task_id, current["state"])
        else:
            # Another delivery of the same command holds it; that run records the outcome, and
            # the liveness check ends it if that worker dies.
            log.info(
                "task %s is %s on another run; dropping duplicate",
                command.task_id,
                current["state"],
            )

    async def _run(self, doc: Doc, run_id: str) -> Outcome:
        context = RunContext(self.service, doc, run_id)
        self.running[doc["_id"]] = context
        try:
            outcome = await self._call_handler(doc, context)
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
        stopper = asyncio.ensure_future(self._stop_after_grace(context, handler))
        try:
            returned = await handler
        except TaskCanceled as exc:
            return Outcome(TaskState.CANCELED, error={"type": "canceled", "message": str(exc)})
        except asyncio.CancelledError:
            if context.cancel_requested.is_set() and not _current_task_cancelling():
                return Outcome(
                    TaskState.CANCELED,
                    error={"type": "canceled", "message": "stopped after the cancel grace time"},
                )
            raise
        except TaskFailed as exc:
            return _failed(exc.type, exc.message)
        except Exception:
            log.exception("handler of task %s (%s) raised", doc["_id"], doc["name"])
            return _failed("internal", "the task's handler raised an unexpected error")
        finally:
            stopper.cancel()
        if isinstance(returned, WaitForChildren):
            return Outcome(TaskState.RUNNING, result=returned.result)
        try:
            return Outcome(TaskState.COMPLETED, result=to_jsonable_python(returned))
        except Exception:
            return _failed("invalid_result", "the handler returned a value that is not JSON")

    async def _stop_after_grace(self, context: RunContext, handler: asyncio.Future[Any]) -> None:
        await context.cancel_requested.wait()
        await asyncio.sleep(self.cancel_grace_s)
        handler.cancel()

    async def _record(self, doc: Doc, run_id: str, outcome: Outcome) -> None:
        task_id = doc["_id"]
        guard = {"run.id": run_id}
        if outcome.state is TaskState.RUNNING:
            await self._await_children(doc, run_id, outcome.result)
            return
        written = None
        if outcome.state is TaskState.CANCELED:
            written = await self.store.transition(
                task_id,
                [TaskState.CANCELING],
                TaskState.CANCELED,
                fields=outcome.fields(),
                guard=guard,
                worker=self.worker_name,
            )
            if written is None:
                # A handler that gave up without being asked: that is a failure.
                reports = outcome.reports
                outcome = _failed("canceled", "the handler stopped without a cancel request")
                outcome.reports = reports
        if written is None:
            written = await self.store.transition(
                task_id,
                _ACTIVE,
                outcome.state,
                fields=outcome.fields(),
                guard=guard,
                worker=self.worker_name,
            )
        if written is None:
            log.warning(
                "task %s was taken from run %s before it ended; outcome dropped", task_id, run_id
            )
            return
        if written.get("parent_id"):
            await self.finish_parent(written["parent_id"])

    async def _await_children(self, doc: Doc, run_id: str, result: Any) -> None:
        written = await self.store.update_running(
            doc["_id"],
            run_id,
            {"$set": {"awaiting_children": True, "join_result": to_jsonable_python(result)}},
            projection={"_id": 1},
        )
        if written is not None:
            await self.finish_parent(doc["_id"])

    async def finish_parent(self, parent_id: str) -> None:
        """End a task that waits for its children, if they have all ended."""
        parent = await self.store.get(parent_id)
        if parent is None or not parent.get("awaiting_children"):
            return
        if parent["state"] not in _ACTIVE:
            return
        children = await self.store.children(parent_id)
        if any(child["state"] not in FINAL_STATES for child in children):
            return
        not_completed = [c for c in children if c["state"] != TaskState.COMPLETED]
        if not not_completed:
            outcome = Outcome(TaskState.COMPLETED, result=parent.get("join_result"))
        elif parent["state"] == TaskState.CANCELING:
            outcome = Outcome(
                TaskState.CANCELED,
                error={"type": "canceled", "message": "canceled with its children"},
            )
        else:
            outcome = _failed(
                "child_failed",
                f"{len(not_completed)} of {len(children)} child tasks did not complete",
            )
        sources = [TaskState.CANCELING] if outcome.state is TaskState.CANCELED else _ACTIVE
        await self.store.transition(
            parent_id,
            sources,
            outcome.state,
            fields=outcome.fields(),
            guard={"awaiting_children": True},
            worker=self.worker_name,
        )


def _failed(type_: str, message: str) -> Outcome:
    return Outcome(TaskState.FAILED, error={"type": type_, "message": message})


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
