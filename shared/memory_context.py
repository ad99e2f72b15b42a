"""`MemoryContext`: the context a handler gets, kept in memory, for unit tests of task types.

    async def test_counting_reports_each_round() -> None:
        ctx = MemoryContext()
        await count(CountArgs(rounds=3, round_s=0), ctx)
        [report] = ctx.reports
        assert (report.done, report.total, report.finished) == (3, 3, True)

A handler that runs on a worker gets a context with the same methods that writes to the
database; this one records what the handler did, and can be told to cancel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.errors import TaskCanceled


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
