"""The context a handler runs with on a worker: progress reports, cancel checkpoints, children,
and questions to the task's owner."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from shared.clock import utcnow
from shared.errors import TaskCanceled
from shared.lifecycle import TaskState
from shared.questions import AnswerNeeded, AskedQuestion, Question, asked, key_of
from shared.runs import Claim, Hold, Runs
from shared.store.errors import DatabaseError
from shared.submission import Submissions
from shared.task import ProgressReport

log = logging.getLogger(__name__)


class RunContext:
    """A `TaskContext` for one run of one task; only this run writes the task while it holds it."""

    def __init__(self, runs: Runs, submissions: Submissions, claim: Claim) -> None:
        self._runs = runs
        self._submissions = submissions
        self.claim = claim
        self._attempt = claim.task.attempt_number()
        self.cancel_requested = asyncio.Event()
        #: The handler's future, so that a stopping worker can take the task back.
        self.handler: asyncio.Future[Any] | None = None
        self.handed_back = False
        #: Set when the worker lost its lease: the handler is stopped and nothing written.
        self.fenced = False
        #: The reports as stored: this run is their only writer, so the copy stays exact.
        self.reports: list[ProgressReport] = []
        #: The answers earlier runs' questions got, by key; and how many this run asked.
        self._answers = {answer.key: answer.value for answer in claim.task.answers}
        self._asked = 0
        #: The first question of this run that had no answer: the task waits for it.
        self.question: AskedQuestion | None = None

    @property
    def task_id(self) -> str:
        """The id of the task being run."""
        return self.claim.task_id

    @property
    def attempt(self) -> int:
        """Which attempt this run is: 1, then one more after each retry."""
        return self._attempt

    async def report(
        self, message: str, code: str, *, total: int | None = None, suffix: str | None = None
    ) -> RunProgress:
        """Add a progress report to the task and return it for updates."""
        report = ProgressReport(
            message=_storable(message),
            code=_storable(code),
            total=total,
            suffix=None if suffix is None else _storable(suffix),
        )
        self.reports.append(report)
        await self._store_reports()
        return RunProgress(self, len(self.reports) - 1)

    def hand_back(self) -> None:
        """Stop the handler because the worker stops; the task will run elsewhere."""
        self.handed_back = True
        if self.handler is not None:
            self.handler.cancel()

    def fence(self) -> None:
        """Stop the handler because the worker lost its lease; nothing of this run is written
        after (another worker takes the task once the lease has expired)."""
        self.fenced = True
        if self.handler is not None:
            self.handler.cancel()

    async def checkpoint(self) -> None:
        """Raise `TaskCanceled` if the task was asked to stop."""
        await asyncio.sleep(0)
        if self.cancel_requested.is_set():
            raise TaskCanceled()

    async def spawn(self, name: str, args: dict[str, Any]) -> str:
        """Submit a child task owned by this task's owner; return its id."""
        child = await self._submissions.submit(
            name, args, owner=self.claim.task.owner, parent_id=self.task_id
        )
        return child.id

    async def ask(self, question: Question) -> Any:
        """The stored answer to `question`, matched by its key; without one, raise
        `AnswerNeeded`: the runner then stores the question and frees this worker's slot."""
        await self.checkpoint()
        self._asked += 1
        key = key_of(question, self._asked)
        if key in self._answers:
            return self._answers[key]
        if self.question is None:
            self.question = asked(question, key, utcnow())
        # Even a handler that swallowed the first signal waits for the first question.
        raise AnswerNeeded(self.question)

    async def _store_reports(self) -> None:
        if self.fenced:
            return
        try:
            hold = await self._runs.report(self.claim, self.reports)
        except DatabaseError as exc:
            # Progress is best effort: a database blip must not fail the task. The outcome is
            # what must be stored, and the runner insists on that.
            log.warning("progress of task %s not recorded: %r", self.task_id, exc)
            return
        if hold is not Hold.HELD:  # canceled, or lost to another run: stop
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
        await self._context._store_reports()

    async def finish(self) -> None:
        """Mark this report completed."""
        self._report.state = TaskState.COMPLETED
        await self._context._store_reports()


def _storable(text: str) -> str:
    """`text` as the database can store it: a lone surrogate (which no UTF-8 encodes) becomes
    U+FFFD, so that a handler's odd message never fails the writes of its task."""
    return text.encode("utf-8", "replace").decode("utf-8")
