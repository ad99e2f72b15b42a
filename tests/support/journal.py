"""A task type whose runs say when they ran: `test.count`, each run appending its start and its
end to a journal file, from inside the worker process that runs it.

What the runs wrote to the database says how often a task was claimed and handed back; only
the handlers themselves can say whether two runs of one task ever ran at the same time. Worker
processes load this module with `TASKLIGHT_TASK_MODULES=tests.support.journal` (the api too, to
accept the submissions).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.registry import Registry, TaskContext, TaskType
from shared.tasktypes.builtin import CountArgs, count

#: The task type's name.
JOURNALED = "faults.journaled"
#: The module to name in `TASKLIGHT_TASK_MODULES`.
MODULE = __name__


class JournaledArgs(BaseModel):
    """`test.count`'s arguments, and the journal's path."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(ge=0, le=1000)
    round_s: float = Field(ge=0, le=60)
    journal: str


async def journaled_count(args: JournaledArgs, ctx: TaskContext) -> dict[str, Any]:
    """Count as `test.count` does; the run's start and end go to the journal, the end also
    when the run is stopped (a fence, a hand-back), as it stops."""
    run = uuid.uuid4().hex
    _append(args.journal, {"run": run, "task": ctx.task_id, "start": time.time()})
    try:
        return await count(CountArgs(rounds=args.rounds, round_s=args.round_s), ctx)
    finally:
        _append(args.journal, {"run": run, "task": ctx.task_id, "end": time.time()})


def _append(path: str, entry: dict[str, Any]) -> None:
    # One short write to a file opened for appending: the workers' lines never interleave.
    with open(path, "a", encoding="utf-8") as journal:
        journal.write(json.dumps(entry) + "\n")


def register(registry: Registry) -> None:
    """Add `faults.journaled`; like `test.count`, it runs again when its worker is lost."""
    registry.add(
        TaskType(
            JOURNALED,
            "Count, journaling each run",
            journaled_count.__doc__ or "",
            JournaledArgs,
            journaled_count,
            on_worker_lost="requeue",
        )
    )


@dataclass(frozen=True)
class Span:
    """One run of a task, as its handler journaled it (seconds since the epoch)."""

    start: float
    #: None: the run has not ended (or its process died first).
    end: float | None


def runs_of(path: Path) -> dict[str, list[Span]]:
    """Each task's runs in the journal at `path`, by start."""
    starts: dict[str, tuple[str, float]] = {}
    ends: dict[str, float] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if "start" in entry:
                starts[entry["run"]] = (entry["task"], entry["start"])
            else:
                ends[entry["run"]] = entry["end"]
    runs: dict[str, list[Span]] = defaultdict(list)
    for run, (task, start) in starts.items():
        runs[task].append(Span(start, ends.get(run)))
    return {task: sorted(spans, key=lambda s: s.start) for task, spans in runs.items()}


def at_once(spans: list[Span]) -> bool:
    """Whether two of one task's runs (by start) ran at the same time: one began before the
    one before it ended, or while it had not ended. (Runs sorted by start are all apart when
    each is apart from the next.)"""
    return any(
        earlier.end is None or later.start < earlier.end
        for earlier, later in itertools.pairwise(spans)
    )
