"""Small helpers for tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shared.auth import AuthStore, Role
from shared.clock import utcnow
from shared.ids import new_task_id
from shared.lifecycle import FINAL_STATES, Phase, TaskState
from shared.records import StoredTask, new_task
from shared.store import Store

T = TypeVar("T")

#: The states a task ends in, as the REST API and the pushes spell them.
FINAL = frozenset(state.value for state in FINAL_STATES)


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


class StallingProxy:
    """A TCP proxy (on the test's event loop) that can go silent: while stalled it forwards
    nothing either way and closes nothing, as a network that vanished without a FIN or a RST."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.stalled = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> StallingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._tasks.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)
        self._tasks.difference_update(pipes)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if not self.stalled:
                writer.write(data)
                await writer.drain()
        writer.close()
