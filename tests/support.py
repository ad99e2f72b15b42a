"""Small helpers for tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shared.auth import AuthStore, Role
from shared.clock import utcnow
from shared.ids import new_task_id
from shared.lifecycle import Phase, TaskState
from shared.records import StoredTask, new_task
from shared.store import Store

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


async def admin_headers(store: Store, name: str = "root") -> dict[str, str]:
    """The Authorization header of a new administrator in the test's database: what only
    operators see (the workers' fields, every user's tasks) needs one."""
    auth = AuthStore(store.accounts)
    await auth.create_user(name, Role.ADMIN)
    return {"Authorization": f"Bearer {await auth.issue_token(name)}"}


def stored_task(**fields: Any) -> StoredTask:
    """A new task as a submission stores it (`test.noop` of `dev`), with `fields` changed; a
    `state` given without a `phase` comes with the phase it usually has."""
    task = new_task(task_id=new_task_id(), name="test.noop", args={}, owner="dev", at=utcnow())
    state = fields.get("state")
    if state is not None and "phase" not in fields:
        fields["phase"] = _USUAL_PHASE.get(TaskState(state), Phase.ENDED)
    return StoredTask.model_validate({**task.model_dump(), **fields})


_USUAL_PHASE = {
    TaskState.WAITING: Phase.QUEUED,
    TaskState.RUNNING: Phase.HELD,
    TaskState.CANCELING: Phase.HELD,
}
