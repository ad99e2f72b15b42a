"""`python -m bench.webhook_cost`: what webhooks cost the database per task.

A diagnostic beside the benchmarks (not part of `make bench`): a fresh SecantusDB, an api and a
worker as processes, a webhook sender in this process (its database client counts every command
it sends), and N `test.noop` tasks run twice: with no endpoint, and with one endpoint (a local
receiver that answers 204). For each it prints the sender's commands per task by name, counted
from the first submission until every task ended and, with the endpoint, every delivery
succeeded, less what the sender sends in as long a time idle; and the whole database's commands
per task (from its `serverStatus`) for comparison, which the timing of grouped writes moves by
a few tenths from run to run.
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
from pymongo import AsyncMongoClient, monitoring

from services.stack import EmbeddedMongo, free_port, start_service, stop_processes, wait_for_port
from services.webhooks.app import Sender
from shared.auth import DEV_TOKEN
from shared.broker import delete_topology
from shared.migrate import migrate
from shared.settings import Settings
from shared.store import Store
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


class Counting(monitoring.CommandListener):
    """Counts the commands a client sends, by name."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.counts[event.command_name] = self.counts.get(event.command_name, 0) + 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def snapshot(self) -> dict[str, int]:
        """The counts now."""
        return dict(self.counts)


def per_task(
    before: dict[str, int],
    idle: dict[str, int],
    after: dict[str, int],
    *,
    idle_s: float,
    run_s: float,
    count: int,
) -> dict[str, float]:
    """Commands per task of a run, less what as long a time costs idle."""
    names = set(before) | set(idle) | set(after)
    out = {}
    for name in sorted(names):
        idle_rate = (idle.get(name, 0) - before.get(name, 0)) / idle_s
        spent = after.get(name, 0) - idle.get(name, 0) - idle_rate * run_s
        out[name] = spent / count
    return out


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
        api_port, hook_port = free_port(), free_port()
        settings = Settings(
            mongodb_url=mongo.url,
            database="bench",
            namespace=namespace,
            api_port=api_port,
            webhook_allow_loopback=True,
            webhooks_port=0,
        )
        await migrate(settings)
        env = {
            **os.environ,
            "MONGODB_URL": mongo.url,
            "TASKLIGHT_DATABASE": "bench",
            "TASKLIGHT_NAMESPACE": namespace,
            "TASKLIGHT_API_PORT": str(api_port),
            "TASKLIGHT_WORKER_PORT": "0",
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
        counting = Counting()
        sender_client: AsyncMongoClient[Doc] = AsyncMongoClient(
            mongo.url, tz_aware=True, event_listeners=[counting]
        )
        sender = Sender(settings, Store(sender_client, "bench"))
        base = f"http://127.0.0.1:{api_port}"
        try:
            async with (
                services(env, ("api", "worker"), tmp),
                httpx.AsyncClient(base_url=base, headers=AUTH, timeout=30) as http,
            ):
                await sender.start()
                for label, endpoint in [("no endpoint", False), ("one endpoint", True)]:
                    if endpoint:
                        url = f"http://127.0.0.1:{hook_port}/hook"
                        made = await http.post("/api/v1/webhooks", json={"url": url})
                        assert made.status_code == 201, made.text

                        async def following() -> bool:
                            return sender.recorder.streams_opened > 0

                        await until(following)
                    await asyncio.sleep(2)
                    before, server_before = counting.snapshot(), await opcounters(client)
                    await asyncio.sleep(idle_s)
                    idle, server_idle = counting.snapshot(), await opcounters(client)
                    started = time.monotonic()
                    ids = await run_tasks(http, count)

                    async def done(ids: list[str] = ids, endpoint: bool = endpoint) -> bool:
                        ended = await tasks.count_documents(
                            {"_id": {"$in": ids}, "state": "completed"}
                        )
                        sent = await deliveries.count_documents(
                            {"task_id": {"$in": ids}, "state": "succeeded"}
                        )
                        return ended == len(ids) and (not endpoint or sent == len(ids))

                    await until(done)
                    run_s = time.monotonic() - started
                    after, server_after = counting.snapshot(), await opcounters(client)
                    print(f"sender, {label}: {count} tasks in {run_s:.1f} s")
                    idle_rates = {
                        name: (idle.get(name, 0) - before.get(name, 0)) / idle_s
                        for name in sorted(set(idle) | set(before))
                    }
                    print(f"  sender idle, commands per second: {idle_rates}")
                    mine = per_task(before, idle, after, idle_s=idle_s, run_s=run_s, count=count)
                    print(
                        "  sender, commands per task: "
                        + ", ".join(
                            f"{name} {value:.2f}"
                            for name, value in mine.items()
                            if abs(value) >= 0.005
                        )
                        + f" (total {sum(mine.values()):.2f})"
                    )
                    server = per_task(
                        server_before,
                        server_idle,
                        server_after,
                        idle_s=idle_s,
                        run_s=run_s,
                        count=count,
                    )
                    print(
                        "  database, commands per task: "
                        + ", ".join(
                            f"{name} {value:.2f}" for name, value in server.items() if value
                        )
                        + f" (total {sum(server.values()):.2f})"
                    )
                await sender.stop()
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
