"""Built-in task types, for trying the system and for tests (counting, failing, retried tasks)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import Retry, TaskFailed
from shared.questions import Question
from shared.registry import Registry, TaskContext, TaskType, WaitForChildren
from shared.retries import RetryPolicy


class CountArgs(BaseModel):
    """Arguments of `test.count`."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(default=5, ge=0, le=100_000, description="How many rounds to count.")
    round_s: float = Field(default=1.0, ge=0, le=3600, description="Seconds one round takes.")


class FailArgs(BaseModel):
    """Arguments of `test.fail`."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(default="failed on purpose", max_length=2000)
    after_s: float = Field(default=1.0, ge=0, le=3600, description="Seconds before failing.")


class FlakyArgs(BaseModel):
    """Arguments of `test.flaky`."""

    model_config = ConfigDict(extra="forbid")

    failures: int = Field(default=2, ge=0, le=100, description="Attempts that fail first.")


class SpawnArgs(BaseModel):
    """Arguments of `test.spawn`."""

    model_config = ConfigDict(extra="forbid")

    children: int = Field(default=3, ge=1, le=100, description="How many child tasks to start.")
    rounds: int = Field(default=3, ge=0, le=100_000, description="Rounds each child counts.")
    round_s: float = Field(default=1.0, ge=0, le=3600, description="Seconds a child's round takes.")


class AskArgs(BaseModel):
    """Arguments of `test.ask`."""

    model_config = ConfigDict(extra="forbid")

    questions: int = Field(default=1, ge=1, le=5, description="Questions asked one after another.")
    form: bool = Field(default=False, description="Ask with a small form instead of approve/deny.")
    timeout_s: float = Field(
        default=3600, gt=0, le=86400, description="Seconds each question waits for an answer."
    )
    default: Literal["approve", "deny"] | None = Field(
        default=None, description="The answer a question's timeout takes; none: the task fails."
    )


#: The small form `test.ask` asks with: one field of each kind the web UI draws.
ASK_FORM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "title": "Reason", "minLength": 3, "maxLength": 200},
        "copies": {"type": "integer", "title": "Copies", "minimum": 1, "maximum": 10, "default": 1},
        "size": {"type": "string", "title": "Size", "enum": ["small", "large"]},
        "notify": {"type": "boolean", "title": "Tell the team"},
    },
    "required": ["reason", "copies"],
    "additionalProperties": False,
}


class NoopArgs(BaseModel):
    """Arguments of `test.noop`: none."""

    model_config = ConfigDict(extra="forbid")


async def noop(args: NoopArgs, ctx: TaskContext) -> None:
    """Do nothing: what a task costs the system itself (the benchmarks' task)."""


async def count(args: CountArgs, ctx: TaskContext) -> dict[str, Any]:
    """Count `rounds` rounds of `round_s` seconds, one progress step per round."""
    unit = "round" if args.rounds == 1 else "rounds"  # "1/1 round", "2/3 rounds"
    progress = await ctx.report("Counting", "test.count", total=args.rounds, suffix=unit)
    for _ in range(args.rounds):
        await ctx.checkpoint()
        await asyncio.sleep(args.round_s)
        await progress.advance()
    await progress.finish()
    return {"counted": args.rounds}


async def fail(args: FailArgs, ctx: TaskContext) -> None:
    """Wait `after_s` seconds, then fail with `message`."""
    await ctx.checkpoint()
    await asyncio.sleep(args.after_s)
    raise TaskFailed(args.message)


async def flaky(args: FlakyArgs, ctx: TaskContext) -> dict[str, int]:
    """Fail with a retryable error on the first `failures` attempts, then succeed."""
    await ctx.checkpoint()
    if ctx.attempt <= args.failures:
        raise Retry(f"attempt {ctx.attempt} fails on purpose")
    return {"attempts": ctx.attempt}


async def spawn(args: SpawnArgs, ctx: TaskContext) -> WaitForChildren:
    """Start `children` counting tasks; finish when they all have."""
    progress = await ctx.report("Starting child tasks", "test.spawn", total=args.children)
    for _ in range(args.children):
        await ctx.checkpoint()
        await ctx.spawn("test.count", {"rounds": args.rounds, "round_s": args.round_s})
        await progress.advance()
    await progress.finish()
    return WaitForChildren(result={"children": args.children})


async def ask(args: AskArgs, ctx: TaskContext) -> dict[str, Any]:
    """Ask `questions` questions in turn (approve / deny, or a small form); return the answers."""
    progress = await ctx.report("Asking", "test.ask", total=args.questions, suffix="answered")
    answers = []
    for number in range(1, args.questions + 1):
        title = f"Question {number} of {args.questions}"
        if args.form:
            question = Question(
                title=title, text="Fill in the form.", form=ASK_FORM, timeout_s=args.timeout_s
            )
        else:
            question = Question.approval(
                title, "Approve or deny.", timeout_s=args.timeout_s, default=args.default
            )
        answers.append(await ctx.ask(question))
        await progress.advance()
    await progress.finish()
    return {"answers": answers}


def register(registry: Registry) -> None:
    """Add the built-in types to `registry`."""
    # Counting again from the start is harmless, so a count survives the loss of its worker.
    registry.add(
        TaskType(
            "test.count",
            "Count",
            count.__doc__ or "",
            CountArgs,
            count,
            on_worker_lost="requeue",
        )
    )
    registry.add(
        TaskType(
            "test.noop", "Do nothing", noop.__doc__ or "", NoopArgs, noop, on_worker_lost="requeue"
        )
    )
    registry.add(TaskType("test.fail", "Fail", fail.__doc__ or "", FailArgs, fail))
    registry.add(
        TaskType(
            "test.flaky",
            "Flaky",
            flaky.__doc__ or "",
            FlakyArgs,
            flaky,
            retry=RetryPolicy(max_attempts=4, base_s=1.0, max_delay_s=8.0),
        )
    )
    registry.add(TaskType("test.spawn", "Spawn children", spawn.__doc__ or "", SpawnArgs, spawn))
    registry.add(TaskType("test.ask", "Ask and wait", ask.__doc__ or "", AskArgs, ask))
