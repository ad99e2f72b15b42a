"""What a benchmark run costs: CPU by the exact processes it started, and the machine's idle cores.

A part of a run (the api, the worker, the database server, Celery's worker...) is the process
whose id the benchmark holds, with every process descended from it (a prefork pool's children),
and nothing else: on a machine shared with others, matching command lines would count their
workers and every RabbitMQ node too. A process's CPU is the sum of its threads' run time
(/proc/<pid>/task/<tid>/schedstat, in nanoseconds).

The idle cores are the machine's idle and iowait time over the run's window (/proc/stat), in
cores: 2.0 on an idle two-core machine, 0.0 when everything was busy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROC = Path("/proc")


def children_by_parent(proc: Path = PROC) -> dict[int, list[int]]:
    """Every process's children, by parent id, from /proc/<pid>/stat."""
    found: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        found.setdefault(parent, []).append(int(entry.name))
    return found


def with_descendants(pids: Iterable[int], proc: Path = PROC) -> set[int]:
    """`pids` and every process descended from one of them."""
    children = children_by_parent(proc)
    found: set[int] = set()
    pending = list(pids)
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending.extend(children.get(pid, ()))
    return found


def process_cpu_s(pid: int, proc: Path = PROC) -> float:
    """CPU seconds a process has used so far, all its threads; 0.0 if it is gone."""
    total_ns = 0
    try:
        for thread in (proc / str(pid) / "task").iterdir():
            try:
                total_ns += int((thread / "schedstat").read_text().split()[0])
            except OSError:
                continue  # the thread ended meanwhile
    except OSError:
        return 0.0
    return total_ns / 1e9


@dataclass(frozen=True)
class Ticks:
    """The machine's CPU time so far, from the first line of /proc/stat (clock ticks)."""

    idle: int
    total: int

    @classmethod
    def read(cls, proc: Path = PROC) -> Ticks:
        """The current reading."""
        fields = [int(value) for value in (proc / "stat").read_text().split("\n", 1)[0].split()[1:]]
        # user nice system idle iowait irq softirq steal (guest time is in user already)
        return cls(idle=fields[3] + fields[4], total=sum(fields[:8]))


def idle_cores(before: Ticks, after: Ticks, cpus: int) -> float:
    """Cores the machine left idle, on average, between two readings."""
    elapsed = after.total - before.total
    return 0.0 if elapsed <= 0 else cpus * (after.idle - before.idle) / elapsed


@dataclass
class Meter:
    """CPU of the named parts over a window: `start()`, the run, then `stop()`.

    A part of `trees` is the processes of the given ids and their descendants, looked up at
    `start` and again at `stop` (a process born meanwhile counts from zero); a part of `alone`
    is one process without its children (the benchmark's own, whose children are the parts)."""

    trees: Mapping[str, Iterable[int]]
    alone: Mapping[str, int] = field(default_factory=dict)
    proc: Path = PROC
    _cpu_before: dict[int, float] = field(default_factory=dict)
    _ticks_before: Ticks | None = None
    _started: float = 0.0

    def _members(self) -> dict[str, set[int]]:
        members = {name: with_descendants(pids, self.proc) for name, pids in self.trees.items()}
        members.update({name: {pid} for name, pid in self.alone.items()})
        return members

    def start(self) -> None:
        """Begin the window."""
        self._ticks_before = Ticks.read(self.proc)
        self._started = time.monotonic()
        self._cpu_before = {
            pid: process_cpu_s(pid, self.proc)
            for members in self._members().values()
            for pid in members
        }

    def stop(self) -> Reading:
        """End the window: what each part used in it, and the idle cores."""
        if self._ticks_before is None:
            raise RuntimeError("the meter was not started")
        spent = {
            name: sum(
                max(0.0, process_cpu_s(pid, self.proc) - self._cpu_before.get(pid, 0.0))
                for pid in members
            )
            for name, members in self._members().items()
        }
        wall_s = time.monotonic() - self._started
        idle = idle_cores(self._ticks_before, Ticks.read(self.proc), os.cpu_count() or 1)
        return Reading(cpu_s=spent, wall_s=wall_s, idle_cores=idle, cpus=os.cpu_count() or 1)


@dataclass(frozen=True)
class Reading:
    """What a `Meter` measured over its window."""

    #: CPU seconds by part.
    cpu_s: dict[str, float]
    wall_s: float
    #: Cores the whole machine left idle, on average, over the window.
    idle_cores: float
    cpus: int

    @property
    def others_cores(self) -> float:
        """Cores that processes outside the parts used, on average, over the window (other
        people's work, and a shared broker)."""
        ours = sum(self.cpu_s.values()) / self.wall_s if self.wall_s > 0 else 0.0
        return max(0.0, self.cpus - self.idle_cores - ours)

    def figures(self, tasks: int) -> dict[str, Any]:
        """The reading as benchmark figures: CPU ms per task by part, and the machine."""
        return {
            "cpu_ms_per_task": self.ms_per(tasks),
            "idle_cores": round(self.idle_cores, 2),
            "others_cores": round(self.others_cores, 2),
        }

    def ms_per(self, tasks: int) -> dict[str, float]:
        """CPU milliseconds per task, by part."""
        return {name: round(used * 1000 / tasks, 2) for name, used in self.cpu_s.items()}
