"""Tasks over REST and commands on the broker, as the integration and fault tests drive them."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import httpx

from shared.broker import connect_first, make_broker, publish_command, tasks_exchange
from shared.messages import RunTask
from shared.settings import Settings
from shared.topology import RUN_KEY, Topology
from tests.support import FINAL, eventually


async def submit(api: httpx.AsyncClient, name: str, **args: Any) -> str:
    """Submit a task of type `name` with `args` over REST; its id (the answer must be 202)."""
    response = await api.post("/api/v1/tasks", json={"name": name, "args": args})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["id"]
    return task_id


async def read(api: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """The task as REST shows it."""
    body: dict[str, Any] = (await api.get(f"/api/v1/tasks/{task_id}")).json()
    return body


async def until_state(
    api: httpx.AsyncClient, task_id: str, states: Collection[str] = FINAL
) -> dict[str, Any]:
    """The task once it is in one of `states` (by default, once it has ended)."""
    return await eventually(lambda: read(api, task_id), lambda t: t["state"] in states)


async def publish_again(settings: Settings, task_id: str, name: str) -> None:
    """Publish a task's command once more, as a broker's redelivery or a relay's copy would."""
    broker = make_broker(settings, logger=None)
    await broker.connect()
    try:
        await publish_command(
            broker,
            tasks_exchange(Topology(settings.namespace)),
            RunTask(task_id=task_id, name=name),
            routing_key=RUN_KEY,
            timeout_s=5,
            message_id=task_id,
        )
    finally:
        await broker.stop()


async def queued_commands(settings: Settings) -> int:
    """Commands in the tasks queue that no consumer holds."""
    connection = await connect_first(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(Topology(settings.namespace).tasks_queue, passive=True)
        count = queue.declaration_result.message_count
        return count or 0
