"""The async client: REST calls to the API and push from the notifier's WebSocket.

    async with TasklightClient("http://127.0.0.1:8000", "ws://127.0.0.1:8001/ws",
                               token=token) as client:
        task = await client.submit("test.count", {"rounds": 3})
        done = await client.wait(task["id"], timeout_s=60)

Subscriptions reconnect by themselves (with backoff) and resume with the versions they hold, so
a dropped connection or a notifier restart loses no update. A connection that silently stops
carrying anything (a network gone, a proxy that keeps the socket open) is noticed by WebSocket
pings within `ping_interval_s + ping_timeout_s` and replaced.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import random
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tasklight import protocol
from tasklight.errors import ApiError, NotFound, Unauthorized, Unreachable, WaitTimeout
from tasklight.types import FINAL_STATES, Group, Task

_API = "/api/v1"
# The protocol's numbers come from one definition the notifier and tasklight.js share
# (tasklight/protocol.py is generated from it). After a `NO_RECONNECT` close, reconnecting makes
# no sense; after `UNAUTHORIZED` or `REVOKED`, not until signed in again.
_CLOSE_UNAUTHORIZED = frozenset({protocol.CloseCode.UNAUTHORIZED, protocol.CloseCode.REVOKED})
_NO_RECONNECT = frozenset(protocol.NO_RECONNECT)
#: Longest pause between reconnects, in seconds.
MAX_BACKOFF_S = protocol.BACKOFF_MAX_S
#: Seconds between WebSocket pings, and seconds a pong may take before the connection is
#: given up: together, how long a silently dead connection can pass for a live one.
PING_INTERVAL_S = protocol.PING_INTERVAL_S
PING_TIMEOUT_S = protocol.PONG_TIMEOUT_S
#: Seconds a closing connection waits for the notifier's closing frame.
CLOSE_TIMEOUT_S = 1.0

#: What a subscription's connection is doing: "idle" before the first subscription, then
#: "connecting", "live" (subscribed), "reconnecting" (lost; trying again).
ConnectionStatus = Literal["idle", "connecting", "live", "reconnecting"]


@dataclass(frozen=True)
class _Event:
    """One thing a subscription saw: a task, a deletion, or "the initial state is complete"."""

    kind: str  # "task", "deleted", "live" (initial state complete), "down" (reconnecting)
    task: Task | None = None
    task_id: str | None = None


class TasklightClient:
    """Async client of one tasklight deployment."""

    def __init__(
        self,
        api_url: str,
        ws_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        ping_interval_s: float = PING_INTERVAL_S,
        ping_timeout_s: float = PING_TIMEOUT_S,
        on_status: Callable[[ConnectionStatus], None] | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.ws_url = ws_url
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        #: The newest subscription connection's status; `on_status` hears every change.
        self.status: ConnectionStatus = "idle"
        self._on_status = on_status
        #: Sent with every request and WebSocket handshake: the API token.
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=self.api_url, timeout=timeout_s, headers=self._headers
        )

    async def __aenter__(self) -> TasklightClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    # REST

    async def submit(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        ui: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        exclusive_resources: Iterable[str] = (),
        shared_resources: Iterable[str] = (),
        run_at: datetime | str | None = None,
        delay_s: float | None = None,
        priority: int = 0,
    ) -> Task:
        """Submit a task; returns it as stored (`waiting`: `queued`, `blocked` while a
        resource it takes is held by another task, `scheduled` until `run_at` or `delay_s`)."""
        body: dict[str, Any] = {"name": name, "args": args or {}}
        if ui is not None:
            body["ui"] = ui
        if metadata is not None:
            body["metadata"] = metadata
        if exclusive := list(exclusive_resources):
            body["exclusive_resources"] = exclusive
        if shared := list(shared_resources):
            body["shared_resources"] = shared
        if run_at is not None:
            body["run_at"] = run_at.isoformat() if isinstance(run_at, datetime) else run_at
        if delay_s is not None:
            body["delay_s"] = delay_s
        if priority:
            body["priority"] = priority
        return cast(Task, await self._call("POST", f"{_API}/tasks", json=body))

    async def submit_many(self, tasks: Iterable[dict[str, Any]]) -> list[Task]:
        """Submit tasks (each `{name, args?, ui?, metadata?}`) with `POST /tasks:batch`, 100 per
        request; returns them as stored, in order. A refused batch raises `ApiError`; the
        batches before it stay submitted."""
        items, stored = list(tasks), list[Task]()
        for start in range(0, len(items), 100):
            body = {"tasks": items[start : start + 100]}
            answer = await self._call("POST", f"{_API}/tasks:batch", json=body)
            stored.extend(answer["results"])
        return stored

    async def get(self, task_id: str) -> Task:
        """A task; raises `NotFound`."""
        return cast(Task, await self._call("GET", f"{_API}/tasks/{task_id}"))

    async def list(
        self,
        group: Group | None = None,
        state: Iterable[str] | None = None,
        name: str | None = None,
        limit: int | None = 50,
    ) -> list[Task]:
        """Tasks, newest first, following pages until `limit` (None: all of them)."""
        params: list[tuple[str, str]] = []
        if group is not None:
            params.append(("group", group))
        params.extend(("state", s) for s in state or [])
        if name is not None:
            params.append(("name", name))
        params.append(("limit", str(min(limit or 500, 500))))
        found: list[Task] = []
        page = await self._call("GET", f"{_API}/tasks", params=params)
        while True:
            found.extend(page["results"])
            if page["next"] is None or (limit is not None and len(found) >= limit):
                return found[:limit] if limit is not None else found
            page = await self._call("GET", page["next"])

    async def cancel(self, task_id: str) -> Task:
        """Cancel a task; raises `ApiError` (409) if it already finished."""
        return cast(Task, await self._call("POST", f"{_API}/tasks/{task_id}/cancel"))

    async def delete(self, task_id: str) -> Task | None:
        """Delete a finished task (None), or cancel a pending one (the task, as `cancel`)."""
        answer = await self._call("DELETE", f"{_API}/tasks/{task_id}")
        return cast(Task | None, answer)

    async def events(self, task_id: str) -> builtins.list[dict[str, Any]]:
        """A task's state changes, oldest first."""
        return cast(
            builtins.list[dict[str, Any]], await self._call("GET", f"{_API}/tasks/{task_id}/events")
        )

    async def answer(self, task_id: str, answer: Any, *, question: str | None = None) -> Task:
        """Answer the question the task waits on (`question`: its key, refused unless it is
        still the one asked); raises `ApiError`: 422 for an answer it refuses, 409 if it waits
        on no question (or another one)."""
        body: dict[str, Any] = {"answer": answer}
        if question is not None:
            body["question"] = question
        return await self._call("POST", f"{_API}/tasks/{task_id}/answer", json=body)  # type: ignore[no-any-return]

    async def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise Unreachable(f"the API at {self.api_url} did not answer: {exc!r}") from None
        if response.status_code == 204:
            return None
        if response.is_success:
            return response.json()
        try:
            problem = response.json()
        except ValueError:
            problem = {"title": response.reason_phrase, "detail": response.text[:200]}
        if not isinstance(problem, dict):
            problem = {"detail": str(problem)}
        kind = {404: NotFound, 401: Unauthorized}.get(response.status_code, ApiError)
        raise kind(response.status_code, problem)

    # Push

    async def subscribe(
        self, ids: Iterable[str] | None = None, *, scope_all: bool = False
    ) -> AsyncGenerator[Task, None]:
        """Every new state of the tasks `ids` (or of all tasks, `scope_all`), as task dicts.

        First the current state of each, then each change; reconnects and resumes on its own.
        Raises `NotFound` when a named task does not exist.
        """
        async with aclosing(self._events(ids, scope_all=scope_all)) as events:
            async for event in events:
                if event.task is not None:
                    yield event.task

    async def wait(self, task_id: str, timeout_s: float) -> Task:
        """The task once it is final (completed, failed, canceled); else `WaitTimeout`."""
        last: Task | None = None
        try:
            async with asyncio.timeout(timeout_s), aclosing(self.subscribe([task_id])) as tasks:
                async for task in tasks:
                    last = task
                    if task["state"] in FINAL_STATES:
                        return task
        except TimeoutError:
            note = ""
            if last is None:
                note = f" (the notifier at {self.ws_url} did not answer)"
                last = await self.get(task_id)
                if last["state"] in FINAL_STATES:
                    return last
            raise WaitTimeout(timeout_s, [last], note) from None
        raise AssertionError("a subscription does not end by itself")

    async def wait_all(self, timeout_s: float) -> None:
        """Return once none of the user's tasks is pending; `WaitTimeout` names those that are."""
        pending: dict[str, Task] = {}
        live = ever_live = False
        try:
            events = self._events(None, scope_all=True)
            async with asyncio.timeout(timeout_s), aclosing(events):
                async for event in events:
                    if event.task is not None:
                        if event.task["state"] in FINAL_STATES:
                            pending.pop(event.task["id"], None)
                        else:
                            pending[event.task["id"]] = event.task
                    elif event.task_id is not None:
                        pending.pop(event.task_id, None)
                    else:
                        # Only a complete initial state tells that nothing else is pending.
                        live = event.kind == "live"
                        ever_live = ever_live or live
                    if live and not pending:
                        return
        except TimeoutError:
            note = ""
            if not ever_live:
                # Never subscribed: say so, and name what REST says is pending.
                note = f" (the notifier at {self.ws_url} did not answer)"
                pending = {t["id"]: t for t in await self.list(group="pending", limit=None)}
            found = sorted(pending.values(), key=lambda t: t["id"])
            raise WaitTimeout(timeout_s, found, note) from None

    async def _events(
        self, ids: Iterable[str] | None, *, scope_all: bool
    ) -> AsyncGenerator[_Event, None]:
        """The events of one logical subscription across reconnects ("down" after a drop)."""
        if (ids is None) == (not scope_all):
            raise ValueError("give task ids, or scope_all=True")
        task_ids = None if ids is None else list(dict.fromkeys(ids))
        held = _Held()
        backoff_s = protocol.BACKOFF_INITIAL_S
        self._set_status("connecting")
        while True:
            try:
                async with connect(
                    self.ws_url,
                    compression=None,
                    open_timeout=10,
                    max_size=None,
                    additional_headers=self._headers,
                    # Pings, not the notifier's own, are what tell this end the line is dead.
                    ping_interval=self.ping_interval_s or None,
                    ping_timeout=self.ping_timeout_s or None,
                    # A line found dead cannot carry a closing handshake either: do not wait
                    # websockets' default 10 s for the peer's close frame.
                    close_timeout=CLOSE_TIMEOUT_S,
                ) as ws:
                    await ws.send(json.dumps(held.subscribe_message(task_ids)))
                    async for frame in ws:
                        message = json.loads(frame)
                        kind = message.get("type")
                        if kind == "task":
                            if held.take(message["task"]):
                                yield _Event("task", task=message["task"])
                        elif kind == "deleted":
                            held.forget(message["id"])
                            yield _Event("deleted", task_id=message["id"])
                        elif kind == "subscribed":
                            backoff_s = protocol.BACKOFF_INITIAL_S
                            self._set_status("live")
                            yield _Event("live")
                        elif kind == "error":
                            _raise_problem(message.get("problem") or {})
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                if code in _CLOSE_UNAUTHORIZED:
                    reason = exc.rcvd.reason if exc.rcvd is not None else ""
                    raise Unauthorized(401, {"detail": f"the notifier refused: {reason}"}) from None
                if code in _NO_RECONNECT:
                    raise Unreachable(f"the notifier closed the connection ({exc})") from None
            except InvalidURI:
                raise Unreachable(f"bad notifier URL {self.ws_url!r}") from None
            except (OSError, InvalidHandshake, TimeoutError):
                pass
            self._set_status("reconnecting")
            yield _Event("down")
            await asyncio.sleep(backoff_s * (0.5 + random.random()))
            backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)

    def _set_status(self, status: ConnectionStatus) -> None:
        if status == self.status:
            return
        self.status = status
        if self._on_status is not None:
            self._on_status(status)


class _Held:
    """What a subscription holds: the highest version per task and the newest `updated_at`."""

    #: Seconds before the newest `updated_at` whose tasks go into `since` for a scope-all resume.
    RECENT_S = protocol.SINCE_WINDOW_S
    #: Most `since` entries sent, so the subscribe frame stays far below 64 KiB.
    MAX_SINCE = protocol.MAX_SINCE_ENTRIES

    def __init__(self) -> None:
        self.versions: dict[str, tuple[int, str]] = {}
        self.newest_update: str | None = None

    def take(self, task: Task) -> bool:
        """Record a task's state; False if it is not newer than what is held (drop it)."""
        held = self.versions.get(task["id"])
        if held is not None and task["version"] <= held[0]:
            return False
        self.versions[task["id"]] = (task["version"], task["updated_at"])
        if self.newest_update is None or task["updated_at"] > self.newest_update:
            self.newest_update = task["updated_at"]
        return True

    def forget(self, task_id: str) -> None:
        """A deleted task."""
        self.versions.pop(task_id, None)

    def subscribe_message(self, task_ids: list[str] | None) -> dict[str, Any]:
        """The `subscribe` that resumes from what is held."""
        message: dict[str, Any] = {"type": "subscribe", "id": "s"}
        if task_ids is None:
            message["scope"] = "all"
            since = self._recent()
            if self.newest_update is not None:
                message["since_ts"] = self.newest_update
        else:
            message["tasks"] = task_ids
            since = {t: self.versions[t][0] for t in task_ids if t in self.versions}
        if since:
            message["since"] = since
        return message

    def _recent(self) -> dict[str, int]:
        # A scope-all resume only re-reads tasks updated shortly before `since_ts`: only those
        # could be sent again.
        if self.newest_update is None:
            return {}
        newest = datetime.fromisoformat(self.newest_update.replace("Z", "+00:00"))
        cutoff = (newest - timedelta(seconds=self.RECENT_S)).isoformat()
        recent = sorted(
            ((at, task_id, version) for task_id, (version, at) in self.versions.items()),
            reverse=True,
        )
        return {
            task_id: version
            for at, task_id, version in recent[: self.MAX_SINCE]
            if _iso(at) >= cutoff
        }


def _iso(text: str) -> str:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).isoformat()


def _raise_problem(problem: dict[str, Any]) -> None:
    status = int(problem.get("status", 400))
    if str(problem.get("type", "")).endswith(":not-found"):
        raise NotFound(404, problem)
    raise ApiError(status, problem)
