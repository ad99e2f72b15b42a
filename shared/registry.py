"""The registry of task types: each a name, an argument model and a plain async handler."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from shared.questions import Question
from shared.reservations import Resources
from shared.retries import RetryPolicy


class Progress(Protocol):
    """One progress report of a running task, as a handler updates it."""

    async def advance(self, by: int = 1) -> None:
        """Add `by` to the steps done, and record it."""

    async def finish(self) -> None:
        """Mark this report completed."""


class TaskContext(Protocol):
    """What a handler can do besides computing: report, check for cancel, start children, ask
    its owner."""

    @property
    def task_id(self) -> str:
        """The id of the task being run."""

    @property
    def attempt(self) -> int:
        """Which attempt this run is: 1, then one more after each retry."""

    async def report(
        self, message: str, code: str, *, total: int | None = None, suffix: str | None = None
    ) -> Progress:
        """Add a progress report to the task and return it for updates."""

    async def checkpoint(self) -> None:
        """Raise `TaskCanceled` if the task was asked to stop; call it between steps."""

    async def spawn(self, name: str, args: dict[str, Any]) -> str:
        """Submit a child task of this one; return its id."""

    async def ask(self, question: Question) -> Any:
        """The owner's answer to `question`: a choice's value, or the form's object.

        Without a stored answer yet, the run ends here (the worker's slot is freed) and the task
        waits for one; the answer runs the handler again from its start, and this call then
        returns it. Steps before it therefore run again: make them idempotent, or ask first.
        """


@dataclass(frozen=True)
class WaitForChildren:
    """Returned by a handler that ends when its child tasks have: frees the worker's slot now.

    The task stays `running` and completes (with `result`) when the last child finishes, or
    fails if any child did not complete.
    """

    result: Any = None


Handler = Callable[[Any, TaskContext], Awaitable[Any]]


@dataclass(frozen=True)
class TaskType:
    """A kind of task that can be submitted by name."""

    name: str
    title: str
    description: str
    args_model: type[BaseModel]
    handler: Handler
    #: How failures are retried; None: never.
    retry: RetryPolicy | None = None
    #: When its worker goes missing: run it again on another worker, or fail it.
    on_worker_lost: Literal["requeue", "fail"] = "fail"
    #: Runs of one task at most, counting requeues after a lost worker.
    max_runs: int = 3
    #: The resources a task takes, derived from its (validated) arguments, besides those its
    #: submission names: `resources=lambda args: Resources(exclusive=(f"vm:{args.vm}",))`.
    resources: Callable[[Any], Resources] | None = None

    def schema(self) -> dict[str, Any]:
        """JSON Schema of this type's arguments."""
        return self.args_model.model_json_schema()


class UnknownTaskType(KeyError):
    """No task type of that name is registered."""


@dataclass
class Registry:
    """Task types by name."""

    types: dict[str, TaskType] = field(default_factory=dict)

    def add(self, task_type: TaskType) -> None:
        """Register a task type; a name can be registered once."""
        if task_type.name in self.types:
            raise ValueError(f"task type {task_type.name!r} is already registered")
        self.types[task_type.name] = task_type

    def task(
        self,
        name: str,
        args_model: type[BaseModel],
        *,
        title: str,
        description: str = "",
        retry: RetryPolicy | None = None,
        on_worker_lost: Literal["requeue", "fail"] = "fail",
        max_runs: int = 3,
        resources: Callable[[Any], Resources] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Decorator form of `add` for a handler function, with every option of `TaskType`
        (the description defaults to the handler's docstring)."""

        def register(handler: Handler) -> Handler:
            self.add(
                TaskType(
                    name,
                    title,
                    description or (handler.__doc__ or ""),
                    args_model,
                    handler,
                    retry=retry,
                    on_worker_lost=on_worker_lost,
                    max_runs=max_runs,
                    resources=resources,
                )
            )
            return handler

        return register

    def get(self, name: str) -> TaskType:
        """The task type called `name`; raises UnknownTaskType."""
        try:
            return self.types[name]
        except KeyError:
            raise UnknownTaskType(name) from None

    def __iter__(self) -> Iterator[TaskType]:
        return iter(sorted(self.types.values(), key=lambda t: t.name))

    def __contains__(self, name: object) -> bool:
        return name in self.types


#: The built-in task types, loaded as any team's module is: the registry knows them by name only,
#: so they depend on it and not it on them.
BUILTIN_MODULES = ("shared.tasktypes.builtin", "shared.tasktypes.demo")


def load_registry(task_modules: str = "", *, builtin_tasks: bool = False) -> Registry:
    """The task types of each module named in `task_modules` (comma-separated dotted names,
    each module with a `register(registry)` function), and with `builtin_tasks` the built-in
    `test.*` and `demo.*` ones."""
    registry = Registry()
    named = [m.strip() for m in task_modules.split(",")]
    for module_name in filter(None, [*(BUILTIN_MODULES if builtin_tasks else ()), *named]):
        importlib.import_module(module_name).register(registry)
    return registry
