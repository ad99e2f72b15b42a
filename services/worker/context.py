"""The context a handler runs with: progress reports, cancel checkpoints, child tasks."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pymongo.errors import PyMongoError

from shared.errors import TaskCanceled
from shared.lifecycle import TaskState
from shared.service import TaskService
from shared.store import Doc
from shared.task import ProgressReport

log = logging.getLogger(__name__)

#: Returned by progress writes so the run learns of a cancel without asking separately.
_STATE_ONLY = {"state": 1}


class RunContext:
    """A `TaskContext` for one run of one task; only this run writes the task while it holds it."""

    def __init__(self, service: TaskService, doc: Doc, run_id: str) -> None:
        self.service = service
        self._task_id: str = doc["_id"]
        self.owner: str = doc["owner"]
        self._attempt = 1 + sum(1 for a in doc.get("attempts") or [] if a.get("outcome") == "retry")
        self.run_id = run_id
        self.cancel_requested = asyncio.Event()
        #: The handler's future, so that a stopping worker can take the task back.
        self.handler: asyncio.Future[Any] | None = None
        self.handed_back = False
        #: The reports as stored: this run is their only writer, so the copy stays exact.
        self.reports: list[ProgressReport] = []

    @property
    def task_id(self) -> str:
        """The id of the task being run."""
        return self._task_id

    @property
    def attempt(self) -> int:
        """Which attempt this run is: 1, then one more after each retry."""
        return self._attempt

    async def report(
        self, message: str, code: str, *, total: int | None = None, suffix: str | None = None
    ) -> RunProgress:
        """Add a progress report to the task and return it for updates."""
        report = ProgressReport(message=message, code=code, total=total, suffix=suffix)
        self.reports.append(report)
        await self._write({"$push": {"progress_reports": report.model_dump(mode="json")}})
        return RunProgress(self, len(self.reports) - 1)

    def hand_back(self) -> None:
        """Stop the handler because the worker stops; the task will run elsewhere."""
        self.handed_back = True
        if self.handler is not None:
            self.handler.cancel()

    async def checkpoint(self) -> None:
        """Raise `TaskCanceled` if the task was asked to stop."""
        await asyncio.sleep(0)
        if self.cancel_requested.is_set():
            raise TaskCanceled()

    async def spawn(self, name: str, args: dict[str, Any]) -> str:
        """Submit a child task owned by this task's owner; return its id."""
        doc = await self.service.submit(name, args, owner=self.owner, parent_id=self.task_id)
        child_id: str = doc["_id"]
        return child_id

    async def _write(self, update: Doc) -> None:
        try:
            doc = await self.service.store.update_running(
                self.task_id, self.run_id, update, projection=_STATE_ONLY
            )
        except PyMongoError as exc:
            # Progress is best effort: a database blip must not fail the task. The outcome is
            # what must be stored, and the runner insists on that.
            log.warning("progress of task %s not recorded: %r", self.task_id, exc)
            return
        # None: the run lost the task (taken over, or failed by the liveness check); stop it.
        if doc is None or doc["state"] == TaskState.CANCELING:
            self.cancel_requested.set()


class RunProgress:
    """A progress report of a running task."""

    def __init__(self, context: RunContext, index: int) -> None:
        self._context = context
        self._index = index

    @property
    def _report(self) -> ProgressReport:
        return self._context.reports[self._index]

    async def advance(self, by: int = 1) -> None:
        """Add `by` to the steps done, and record it."""
        self._report.done += by
        await self._context._write(
            {"$set": {f"progress_reports.{self._index}.done": self._report.done}}
        )

    async def finish(self) -> None:
        """Mark this report completed."""
        self._report.state = TaskState.COMPLETED
        await self._context._write(
            {"$set": {f"progress_reports.{self._index}.state": TaskState.COMPLETED.value}}
        )
