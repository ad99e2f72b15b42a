"""`python -m bench.cpu_per_task`: where a task's CPU goes, process by process.

A diagnostic beside the benchmarks (not part of `make bench`): it runs the throughput benchmark's
stack (bench/throughput.py: a fresh SecantusDB, the api, a worker and a notifier as processes),
submits N `test.noop` tasks until a `scope: all` subscriber saw them all complete, and prints,
for each part of the run, its CPU time per task (by process id, bench/meter.py) with the
database server's commands per task (from its `serverStatus`). `--drop-index NAME` drops an
index of the tasks collection before the run, to weigh what it costs.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from pymongo import AsyncMongoClient

from bench import throughput

Doc = dict[str, Any]


async def measure(tasks: int, batched: bool, drop: list[str]) -> None:
    throughput.TASKS = tasks
    async with throughput.stack() as env:
        await throughput._throughput_warmup(env)
        client: AsyncMongoClient[Doc] = AsyncMongoClient(env.database.url)
        try:
            collection = client["bench"]["tasks"]
            for name in drop:
                await collection.drop_index(name)
            indexes = [index["name"] async for index in await collection.list_indexes()]
            status_before = await client.admin.command("serverStatus")
            started = time.monotonic()
            figures = await throughput._throughput(env, batched)
            wall = time.monotonic() - started
            status_after = await client.admin.command("serverStatus")
        finally:
            await client.close()
    rate, spent = figures["tasks_per_s"], figures["cpu_ms_per_task"]
    print(f"{rate:.1f} tasks/s over {wall:.1f} s; indexes: {', '.join(indexes)}")
    print(f"idle cores {figures['idle_cores']}, others' cores {figures['others_cores']}")
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
