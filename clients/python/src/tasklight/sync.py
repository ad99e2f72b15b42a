"""The blocking client, for code without an event loop (scripts, Django views, pytest tests).

    with SyncTasklightClient(api_url, ws_url, token=token) as client:
        task = client.submit("test.count", {"rounds": 3})
        done = client.wait(task["id"], timeout_s=60)

It runs an async `TasklightClient` on an event loop of its own, in a thread of its own, so it
also works where an event loop already runs (an async test calling sync code).
"""

from __future__ import annotations

import asyncio
import builtins
import threading
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from tasklight.client import PING_INTERVAL_S, PING_TIMEOUT_S, TasklightClient
from tasklight.types import Group, Task

T = TypeVar("T")


class SyncTasklightClient:
    """Blocking client of one tasklight deployment; the same calls as `TasklightClient`."""

    def __init__(
        self,
        api_url: str,
        ws_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        ping_interval_s: float = PING_INTERVAL_S,
        ping_timeout_s: float = PING_TIMEOUT_S,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tasklight-client", daemon=True
        )
        self._thread.start()

        async def make() -> TasklightClient:
            # httpx binds its connection pool to the loop it is created on: create it there.
            return TasklightClient(
                api_url,
                ws_url,
                token=token,
                timeout_s=timeout_s,
                ping_interval_s=ping_interval_s,
                ping_timeout_s=ping_timeout_s,
            )

        self._client = self._run(make())
        self._closed = False

    @property
    def api_url(self) -> str:
        """The API's base URL."""
        return self._client.api_url

    @property
    def ws_url(self) -> str:
        """The notifier's WebSocket URL."""
        return self._client.ws_url

    def __enter__(self) -> SyncTasklightClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections and stop the client's thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self._client.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(call, self._loop).result()

    def submit(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        ui: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        **options: Any,
    ) -> Task:
        """Submit a task; returns it as stored (`waiting`). `options`: those of the async
        client's `submit` (`exclusive_resources`, `shared_resources`, `run_at`, `delay_s`,
        `priority`)."""
        return self._run(self._client.submit(name, args, ui=ui, metadata=metadata, **options))

    def submit_many(self, tasks: Iterable[dict[str, Any]]) -> list[Task]:
        """Submit tasks, 100 per request; returns them as stored, in order."""
        return self._run(self._client.submit_many(list(tasks)))

    def get(self, task_id: str) -> Task:
        """A task; raises `NotFound`."""
        return self._run(self._client.get(task_id))

    def list(
        self,
        group: Group | None = None,
        state: Iterable[str] | None = None,
        name: str | None = None,
        limit: int | None = 50,
    ) -> list[Task]:
        """Tasks, newest first, up to `limit` (None: all of them)."""
        states = None if state is None else [*state]
        return self._run(self._client.list(group=group, state=states, name=name, limit=limit))

    def cancel(self, task_id: str) -> Task:
        """Cancel a task; raises `ApiError` (409) if it already finished."""
        return self._run(self._client.cancel(task_id))

    def delete(self, task_id: str) -> Task | None:
        """Delete a finished task (None), or cancel a pending one (the task)."""
        return self._run(self._client.delete(task_id))

    def events(self, task_id: str) -> builtins.list[dict[str, Any]]:
        """A task's state changes, oldest first."""
        return self._run(self._client.events(task_id))

    def wait(self, task_id: str, timeout_s: float) -> Task:
        """The task once it is final, pushed by the notifier; else `WaitTimeout`."""
        return self._run(self._client.wait(task_id, timeout_s))

    def wait_all(self, timeout_s: float) -> None:
        """Return once none of the user's tasks is pending; `WaitTimeout` names those that are."""
        self._run(self._client.wait_all(timeout_s))
