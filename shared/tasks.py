"""Everything a team needs to write task types for tasklight, in one import.

    from pydantic import BaseModel
    from shared.tasks import Registry, RetryPolicy, TaskContext, TaskFailed

    class ResizeArgs(BaseModel):
        volume: str
        size_gib: int

    def register(registry: Registry) -> None:
        @registry.task(
            "storage.resize",
            ResizeArgs,
            title="Resize a volume",
            retry=RetryPolicy(max_attempts=3, retry_on=(TimeoutError,)),
            on_worker_lost="requeue",
        )
        async def resize(args: ResizeArgs, ctx: TaskContext) -> dict[str, int]:
            step = await ctx.report(f"Resizing {args.volume}", "storage.resize", total=1)
            await ctx.checkpoint()  # a cancel stops it here
            ...
            await step.advance()
            return {"size_gib": args.size_gib}

A handler may ask its task's owner a question and wait for the answer without holding a worker:
`await ctx.ask(Question.approval("Power off db-01?"))` (docs/questions.md).

Name the module in `TASKLIGHT_TASK_MODULES` for the api and the workers. A module may also
define `register_outcomes(hooks: OutcomeHooks)` for where the waiting page goes when its tasks
end. Test a handler by calling it with a `MemoryContext` (docs/architecture.md has a whole
example). Nothing else of tasklight is meant to be imported by task authors.
"""

from shared.errors import HandlerSignal, Retry, TaskCanceled, TaskFailed
from shared.lifecycle import TaskState
from shared.memory_context import TIMED_OUT, MemoryContext, MemoryReport
from shared.questions import APPROVE, DENY, AnswerNeeded, Choice, Question
from shared.registry import Progress, Registry, TaskContext, TaskType, WaitForChildren
from shared.reservations import Resources
from shared.retries import RetryPolicy
from shared.task import Task, TaskError
from shared.waiting_page import Flash, FlashLevel, Outcome, OutcomeHooks

__all__ = [
    "APPROVE",
    "DENY",
    "TIMED_OUT",
    "AnswerNeeded",
    "Choice",
    "Flash",
    "FlashLevel",
    "HandlerSignal",
    "MemoryContext",
    "MemoryReport",
    "Outcome",
    "OutcomeHooks",
    "Progress",
    "Question",
    "Registry",
    "Resources",
    "Retry",
    "RetryPolicy",
    "Task",
    "TaskCanceled",
    "TaskContext",
    "TaskError",
    "TaskFailed",
    "TaskState",
    "TaskType",
    "WaitForChildren",
]
