"""`python -m bench.cpu_per_task`: where a task's CPU goes, process by process.

A diagnostic beside the benchmarks (not part of `make bench`): it runs the throughput benchmark's
stack (bench/throughput.py: a fresh SecantusDB, the api, a worker and a notifier as processes),
submits N `test.noop` tasks until a `scope: all` subscriber saw them all complete, and prints,
for each process of the run, its CPU time per task (from /proc) with the database server's
commands per task (from its `serverStatus`). `--drop-index NAME` drops an index of the tasks
collection before the run, to weigh what it costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from bench import throughput

Doc = dict[str, Any]


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """Every process's command line and CPU time (user + system) so far."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # ended meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        found[int(entry.name)] = (command.strip(), (int(fields[11]) + int(fields[12])) / tick)
    return found


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
            before = cpu_seconds()
            started = time.monotonic()
            rate = await throughput._throughput(env, batched)
            wall = time.monotonic() - started
            after = cpu_seconds()
            status_after = await client.admin.command("serverStatus")
        finally:
            await client.close()
    print(f"{rate:.1f} tasks/s over {wall:.1f} s; indexes: {', '.join(indexes)}")
    print("database commands per task:")
    for kind, count in status_after["opcounters"].items():
        done = (count - status_before["opcounters"].get(kind, 0)) / tasks
        if done:
            print(f"  {kind:8} {done:6.2f}")
    print("CPU per task (ms), share of one core, process:")
    for pid, (command, seconds) in sorted(after.items()):
        used = seconds - before.get(pid, (command, 0.0))[1]
        if used >= 0.1:
            print(f"  {used * 1000 / tasks:6.2f}  {used / wall:4.0%}  {command[:100]}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_per_task", description=__doc__)
    parser.add_argument("--tasks", type=int, default=1500)
    parser.add_argument("--batched", action="store_true", help="100 tasks per POST /tasks:batch")
    parser.add_argument("--drop-index", action="append", default=[], metavar="NAME")
    arguments = parser.parse_args()
    asyncio.run(measure(arguments.tasks, arguments.batched, arguments.drop_index))


if __name__ == "__main__":
    main()
