"""`MemoryContext`: the context a handler gets, kept in memory, for unit tests of task types.

    async def test_counting_reports_each_round() -> None:
        ctx = MemoryContext()
        await count(CountArgs(rounds=3, round_s=0), ctx)
        [report] = ctx.reports
        assert (report.done, report.total, report.finished) == (3, 3, True)

A handler that runs on a worker gets a context with the same methods that writes to the
database; this one records what the handler did, can be told to cancel, and answers the
questions the handler asks from `answers` (in the order asked, or by key):

    ctx = MemoryContext(answers=[APPROVE])
    await power_off(args, ctx)
    assert ctx.questions[0].title == "Power off db-01?"

A question beyond the answers given raises `AnswerNeeded`, as on a worker, where the task would
then wait; `TIMED_OUT` as an answer stands for a timeout: the question's default is returned,
or, without one, `TaskFailed` of type `no_answer` is raised (how the task would end).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from shared.clock import utcnow
from shared.errors import TaskCanceled, TaskFailed
from shared.questions import (
    AnswerNeeded,
    AskedQuestion,
    Question,
    answer_errors,
    asked,
    key_of,
    no_answer_message,
)
from shared.task import ErrorKind


class _TimedOut(Enum):
    TIMED_OUT = "timed out"


#: An answer to give `MemoryContext` for a question whose timeout passes unanswered.
TIMED_OUT = _TimedOut.TIMED_OUT


@dataclass
class MemoryReport:
    """A progress report as `MemoryContext` keeps it."""

    message: str
    code: str
    total: int | None
    suffix: str | None = None
    done: int = 0
    finished: bool = False

    async def advance(self, by: int = 1) -> None:
        """Add `by` to the steps done."""
        self.done += by

    async def finish(self) -> None:
        """Mark this report completed."""
        self.finished = True


@dataclass
class MemoryContext:
    """Records what a handler does; cancels at the checkpoint after `cancel_after` passed ones
    (None: only once `cancel()` is called)."""

    cancel_after: int | None = None
    #: Which attempt the run pretends to be (1, then one more per retry).
    attempt: int = 1
    task_id: str = "task-1"
    reports: list[MemoryReport] = field(default_factory=list)
    #: Checkpoints passed without a cancel.
    checkpoints: int = 0
    #: (type name, arguments) of each child task the handler started.
    spawned: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    cancel_requested: bool = False
    #: The answers `ask` returns: in the order the questions are asked, or by question key.
    answers: Sequence[Any] | Mapping[str, Any] = field(default_factory=list)
    #: Each question the handler asked, as a task stores it (with its key and deadline).
    questions: list[AskedQuestion] = field(default_factory=list)

    def cancel(self) -> None:
        """Ask the handler to stop at its next checkpoint."""
        self.cancel_requested = True

    async def report(
        self, message: str, code: str, *, total: int | None = None, suffix: str | None = None
    ) -> MemoryReport:
        """Add a progress report and return it for updates."""
        self.reports.append(MemoryReport(message, code, total, suffix))
        return self.reports[-1]

    async def checkpoint(self) -> None:
        """Raise `TaskCanceled` if the task was asked to stop."""
        if self.cancel_after is not None and self.checkpoints >= self.cancel_after:
            self.cancel_requested = True
        if self.cancel_requested:
            raise TaskCanceled()
        self.checkpoints += 1

    async def spawn(self, name: str, args: dict[str, Any]) -> str:
        """Record a child task; its id is `child-<n>`."""
        self.spawned.append((name, args))
        return f"child-{len(self.spawned)}"

    async def ask(self, question: Question) -> Any:
        """The answer given for `question` (it is a checkpoint too); raises `AnswerNeeded` when
        none was given, and `ValueError` for a given answer that the question would refuse."""
        await self.checkpoint()
        place = len(self.questions) + 1
        stored = asked(question, key_of(question, place), utcnow())
        self.questions.append(stored)
        if isinstance(self.answers, Mapping):
            if stored.key not in self.answers:
                raise AnswerNeeded(stored)
            answer = self.answers[stored.key]
        elif place <= len(self.answers):
            answer = self.answers[place - 1]
        else:
            raise AnswerNeeded(stored)
        if answer is TIMED_OUT:
            if stored.default is None:
                raise TaskFailed(no_answer_message(stored), type=ErrorKind.NO_ANSWER.value)
            return stored.default
        wrong = answer_errors(stored, answer)
        if wrong:
            raise ValueError(f"{answer!r} does not answer {stored.key!r}: {wrong}")
        return answer
