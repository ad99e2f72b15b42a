"""`python -m bench.webhook_cost`: what webhooks cost the database per task.

A diagnostic beside the benchmarks (not part of `make bench`): a fresh SecantusDB, an api and a
worker as processes, and N `test.noop` tasks run three times: with no webhook sender, with a
sender but no endpoint, and with a sender and one endpoint (a local receiver that answers 204).
For each it prints the database server's commands per task (from its `serverStatus`), counted
from the first submission until every task ended and, with an endpoint, every delivery
succeeded; and, for the runs with a sender, what the sender costs per second while idle.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from services.stack import EmbeddedMongo, free_port, start_service, stop_processes, wait_for_port
from shared.auth import DEV_TOKEN
from shared.broker import delete_topology
from shared.migrate import migrate
from shared.settings import Settings
from shared.topology import Topology

Doc = dict[str, Any]
AUTH = {"Authorization": f"Bearer {DEV_TOKEN}"}


async def receiver(port: int) -> asyncio.Server:
    """An HTTP server that answers every request 204 (keep-alive off)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", port)


async def opcounters(client: AsyncMongoClient[Doc]) -> dict[str, int]:
    """The server's command counters now."""
    status = await client.admin.command("serverStatus")
    return {k: int(v) for k, v in status["opcounters"].items()}


async def until(probe: Callable[[], Awaitable[bool]], timeout_s: float = 300) -> None:
    """Wait for `probe()` to hold."""
    deadline = time.monotonic() + timeout_s
    while not await probe():
        if time.monotonic() > deadline:
            raise TimeoutError("the run did not finish")
        await asyncio.sleep(0.2)


@asynccontextmanager
async def services(env: dict[str, str], names: tuple[str, ...], tmp: Path) -> AsyncIterator[None]:
    """The named services, until the block ends."""
    processes = [start_service(name, env, tmp) for name in names]
    try:
        await asyncio.to_thread(
            wait_for_port, "127.0.0.1", int(env["TASKLIGHT_API_PORT"]), 60, processes[0]
        )
        await asyncio.sleep(3)  # the worker consumes, the sender settles
        yield
    finally:
        await asyncio.to_thread(stop_processes, processes)


async def run_tasks(http: httpx.AsyncClient, count: int) -> list[str]:
    """Submit `count` tasks, 10 at a time; their ids, once all ended."""
    ids: list[str] = []
    for start in range(0, count, 10):
        answers = await asyncio.gather(
            *(
                http.post("/api/v1/tasks", json={"name": "test.noop", "args": {}})
                for _ in range(min(10, count - start))
            )
        )
        ids += [a.json()["id"] for a in answers]
    return ids


async def measure(count: int, idle_s: float) -> None:
    with tempfile.TemporaryDirectory(prefix="tasklight-webhook-cost-") as tmp_name:
        tmp = Path(tmp_name)
        mongo = EmbeddedMongo(tmp / "db", port=free_port(), log_path=tmp / "db.log")
        await asyncio.to_thread(mongo.start)
        namespace = f"bench.{uuid.uuid4().hex[:8]}"
        settings = Settings(mongodb_url=mongo.url, database="bench", namespace=namespace)
        await migrate(settings)
        api_port, hook_port = free_port(), free_port()
        env = {
            **os.environ,
            "MONGODB_URL": mongo.url,
            "TASKLIGHT_DATABASE": "bench",
            "TASKLIGHT_NAMESPACE": namespace,
            "TASKLIGHT_API_PORT": str(api_port),
            "TASKLIGHT_WORKER_PORT": "0",
            "TASKLIGHT_WEBHOOKS_PORT": "0",
            "TASKLIGHT_DEV_MODE": "true",
            "TASKLIGHT_BUILTIN_TASKS": "true",
            "TASKLIGHT_SUBMIT_RATE_PER_MINUTE": "0",
            "TASKLIGHT_WEBHOOK_ALLOW_LOOPBACK": "true",
            "TASKLIGHT_LOG_LEVEL": "WARNING",
        }
        client: AsyncMongoClient[Doc] = AsyncMongoClient(mongo.url)
        tasks = client["bench"]["tasks"]
        deliveries = client["bench"]["webhook_deliveries"]
        hooks = await receiver(hook_port)
        base = f"http://127.0.0.1:{api_port}"
        try:
            async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=30) as http:
                for label, names, endpoint in [
                    ("no sender", ("api", "worker"), False),
                    ("sender, no endpoint", ("api", "worker", "webhooks"), False),
                    ("sender, one endpoint", ("api", "worker", "webhooks"), True),
                ]:
                    async with services(env, names, tmp):
                        if endpoint:
                            url = f"http://127.0.0.1:{hook_port}/hook"
                            made = await http.post("/api/v1/webhooks", json={"url": url})
                            assert made.status_code == 201, made.text
                            await asyncio.sleep(3)  # the sender opens its stream
                        idle_before = await opcounters(client)
                        await asyncio.sleep(idle_s)
                        idle = await opcounters(client)
                        ids = await run_tasks(http, count)

                        async def done(ids: list[str] = ids, endpoint: bool = endpoint) -> bool:
                            ended = await tasks.count_documents(
                                {"_id": {"$in": ids}, "state": "completed"}
                            )
                            sent = await deliveries.count_documents(
                                {"task_id": {"$in": ids}, "state": "succeeded"}
                            )
                            return ended == len(ids) and (not endpoint or sent == len(ids))

                        started = time.monotonic()
                        await until(done)
                        after = await opcounters(client)
                    spent_s = time.monotonic() - started
                    print(f"{label}: {count} tasks in {spent_s:.1f} s after submitting")
                    for kind in sorted(after):
                        # What the run cost, less what the same time costs idle.
                        per_s = (idle[kind] - idle_before[kind]) / idle_s
                        per_task = (after[kind] - idle[kind]) / count
                        print(f"  {kind:8} {per_task:6.2f} per task  (idle {per_s:5.2f}/s)")
        finally:
            hooks.close()
            await client.close()
            await asyncio.to_thread(mongo.stop)
            await delete_topology(settings.amqp_url, Topology(namespace))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_cost", description=__doc__)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--idle-s", type=float, default=10.0)
    arguments = parser.parse_args()
    asyncio.run(measure(arguments.tasks, arguments.idle_s))


if __name__ == "__main__":
    main()
