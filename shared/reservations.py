"""Reservations, as Pulp's tasks have them: the rules, pure (no database, no broker).

A task names the resources it takes exclusively (`vm:web-01`) and those it shares
(`provider:ec2`). Two tasks conflict when one takes a resource exclusively that the other takes at
all. Each resource has one queue, in the order tasks reached it; an entry is *granted* when no
entry ahead of it conflicts with it: an exclusive entry when it is first, a shared one when every
entry ahead of it is shared. So a granted entry stays granted until it leaves (entries are only
appended, and leave from anywhere), and who is granted is never stored: it follows from the order.

A task takes its resources one after the other, in their sorted order, and joins the queue of the
next one only once it is granted the one before (ordered acquisition: no two tasks can each wait
for the other, whatever the number of resources). Its command is queued once it is granted them
all. `shared/runs.py` makes the changes; `shared/store/reservations.py` keeps the queues.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

#: What a resource name may be: a kind and a name, such as `vm:web-01`.
RESOURCE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_.:/@-]{1,200}$"
#: Resources one task may name at most.
MAX_RESOURCES = 16


class Mode(StrEnum):
    """How a task takes a resource."""

    #: No other task takes it while this one holds it.
    EXCLUSIVE = "exclusive"
    #: Other shared holders may hold it at the same time; no exclusive one may.
    SHARED = "shared"


class Reservation(BaseModel):
    """One resource a task takes, and how."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resource: str = Field(pattern=RESOURCE_PATTERN)
    mode: Mode


class Entry(BaseModel):
    """A task's place in one resource's queue."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    task: str
    mode: Mode


class WaitingFor(BaseModel):
    """Why a task in `waiting/blocked` waits: the resource, and the task ahead of it there."""

    model_config = ConfigDict(extra="ignore")

    resource: str
    #: The task that holds the resource, or waits for it first.
    holder: str


@dataclass(frozen=True)
class Resources:
    """What a task type's `resources` option derives from a task's arguments."""

    exclusive: tuple[str, ...] = ()
    shared: tuple[str, ...] = ()


class InvalidResource(ValueError):
    """A resource name that does not fit `RESOURCE_PATTERN`, or too many of them."""


def reservations(exclusive: Iterable[str] = (), shared: Iterable[str] = ()) -> list[Reservation]:
    """The reservations of a task, in the order they are taken (sorted by resource); a resource
    named both ways is taken exclusively."""
    wanted = {name: Mode.SHARED for name in shared}
    wanted.update({name: Mode.EXCLUSIVE for name in exclusive})
    bad = [name for name in wanted if not re.match(RESOURCE_PATTERN, name)]
    if bad:
        raise InvalidResource(f"resource names are kind:name (such as vm:web-01), not {bad[0]!r}")
    if len(wanted) > MAX_RESOURCES:
        raise InvalidResource(f"a task takes {MAX_RESOURCES} resources at most")
    return [Reservation(resource=name, mode=wanted[name]) for name in sorted(wanted)]


def conflicts(a: Mode, b: Mode) -> bool:
    """Whether two takes of one resource may not be held at once."""
    return Mode.EXCLUSIVE in (a, b)


def granted(entries: Sequence[Entry]) -> list[str]:
    """The tasks of a queue that hold the resource now: the first entry, and each shared entry
    that only shared entries precede."""
    if not entries:
        return []
    if entries[0].mode is Mode.EXCLUSIVE:
        return [entries[0].task]
    holders: list[str] = []
    for entry in entries:
        if entry.mode is not Mode.SHARED:
            break
        holders.append(entry.task)
    return holders


def is_granted(entries: Sequence[Entry], task_id: str) -> bool:
    """Whether `task_id` holds the resource of this queue."""
    return task_id in granted(entries)


def ahead_of(entries: Sequence[Entry], task_id: str) -> str | None:
    """The task that `task_id` waits for in this queue: the first entry ahead of it that
    conflicts with it (None: it holds the resource, or is not in the queue)."""
    mine = next((e for e in entries if e.task == task_id), None)
    if mine is None:
        return None
    for entry in entries:
        if entry.task == task_id:
            return None
        if conflicts(entry.mode, mine.mode):
            return entry.task
    return None


class LatelyTaken:
    """Resources this process lately found taken: a hint of where a new task will meet others.

    Taking a resource by key costs one insert when it is free, but where tasks queue one after
    another (ten to a resource) almost every new one finds it taken: a failed insert and a look
    for its holder, both wasted before it queues. A resource found taken is remembered for
    `ttl_s` from the last time, and a task on one goes straight to the queues. Only the path is
    chosen by it, never the outcome: the queues find out who holds what whatever the hint says,
    so a stale one costs a queue entry and nothing else. At most `size` resources are kept,
    the longest untouched forgotten first.
    """

    def __init__(self, *, ttl_s: float = 5.0, size: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._until: dict[str, float] = {}

    def taken(self, resources: Iterable[str], now: float) -> None:
        for resource in resources:
            self._until.pop(resource, None)
            self._until[resource] = now + self.ttl_s
        while len(self._until) > self.size:
            del self._until[next(iter(self._until))]

    def any_of(self, resources: Iterable[str], now: float) -> bool:
        return any(self._until.get(resource, 0.0) > now for resource in resources)
