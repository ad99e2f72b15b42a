"""`python -m bench.cpu_per_task`: where a task's CPU goes, process by process.

A diagnostic beside the benchmarks (not part of `make bench`): it runs the throughput benchmark's
stack (bench/throughput.py: a fresh SecantusDB, the api, a worker and a notifier as processes),
submits N `test.noop` tasks until a `scope: all` subscriber saw them all complete, and prints,
for each part of the run, its CPU time per task (from /proc) with the database server's
commands per task (from its `serverStatus`). `--drop-index NAME` drops an index of the tasks
collection before the run, to weigh what it costs.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from pymongo import AsyncMongoClient

from bench import throughput
from bench.env import cpu_seconds

Doc = dict[str, Any]


def database_port(processes: dict[int, tuple[str, float]]) -> int:
    """The port of this run's database server (the benchmark names its directory)."""
    for command, _ in processes.values():
        if "secantusd" in command and "tasklight-bench-" in command:
            words = command.split()
            return int(words[words.index("--port") + 1])
    raise RuntimeError("no benchmark database server is running")


async def measure(tasks: int, batched: bool, drop: list[str]) -> None:
    throughput.TASKS = tasks
    async with throughput.stack() as env:
        await throughput._throughput_warmup(env)
        port = database_port(cpu_seconds())
        client: AsyncMongoClient[Doc] = AsyncMongoClient(f"mongodb://127.0.0.1:{port}/")
        try:
            collection = client["bench"]["tasks"]
            for name in drop:
                await collection.drop_index(name)
            indexes = [index["name"] async for index in await collection.list_indexes()]
            status_before = await client.admin.command("serverStatus")
            started = time.monotonic()
            rate, spent = await throughput._throughput(env, batched)
            wall = time.monotonic() - started
            status_after = await client.admin.command("serverStatus")
        finally:
            await client.close()
    print(f"{rate:.1f} tasks/s over {wall:.1f} s; indexes: {', '.join(indexes)}")
    print("database commands per task:")
    for kind, count in status_after["opcounters"].items():
        done = (count - status_before["opcounters"].get(kind, 0)) / tasks
        if done:
            print(f"  {kind:8} {done:6.2f}")
    print("CPU per task (ms), share of one core, part:")
    for part, ms in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"  {ms:6.2f}  {ms * rate / 1000:4.0%}  {part}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_per_task", description=__doc__)
    parser.add_argument("--tasks", type=int, default=1500)
    parser.add_argument("--batched", action="store_true", help="100 tasks per POST /tasks:batch")
    parser.add_argument("--drop-index", action="append", default=[], metavar="NAME")
    arguments = parser.parse_args()
    asyncio.run(measure(arguments.tasks, arguments.batched, arguments.drop_index))


if __name__ == "__main__":
    main()
