"""Small helpers for tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shared.auth import AuthStore, Role
from shared.errors import TaskCanceled
from shared.store import TaskStore

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout_s: float = 15.0,
    interval_s: float = 0.05,
) -> T:
    """Call `probe` until `accept` takes its value; fail with the last value after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s; last value: {value!r}")
        await asyncio.sleep(interval_s)


async def admin_headers(store: TaskStore, name: str = "root") -> dict[str, str]:
    """The Authorization header of a new administrator in the test's database: what only
    operators see (the workers' fields, every user's tasks) needs one."""
    auth = AuthStore(store.db)
    await auth.create_user(name, Role.ADMIN)
    return {"Authorization": f"Bearer {await auth.issue_token(name)}"}


@dataclass
class Report:
    """A progress report as `MemoryContext` keeps it."""

    message: str
    code: str
    total: int | None
    done: int = 0
    finished: bool = False

    async def advance(self, by: int = 1) -> None:
        self.done += by

    async def finish(self) -> None:
        self.finished = True


@dataclass
class MemoryContext:
    """Records what a handler does; cancels after `cancel_after` checkpoints if set."""

    cancel_after: int | None = None
    reports: list[Report] = field(default_factory=list)
    checkpoints: int = 0
    spawned: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    attempt: int = 1

    @property
    def task_id(self) -> str:
        return "task-1"

    async def report(
        self, message: str, code: str, *, total: int | None = None, suffix: str | None = None
    ) -> Report:
        self.reports.append(Report(message, code, total))
        return self.reports[-1]

    async def checkpoint(self) -> None:
        if self.cancel_after is not None and self.checkpoints >= self.cancel_after:
            raise TaskCanceled()
        self.checkpoints += 1

    async def spawn(self, name: str, args: dict[str, Any]) -> str:
        self.spawned.append((name, args))
        return f"child-{len(self.spawned)}"
