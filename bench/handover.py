"""What a hand-over of a resource takes, read from the tasks' documents (no service needed)."""

from __future__ import annotations

import itertools

from shared.store.documents import Doc


def handover_gaps_ms(tasks: list[Doc]) -> list[float]:
    """For each resource, the milliseconds from a task's end to the start of the next of its
    tasks (what a hand-over takes), from the tasks' documents: the first resource of each."""
    by_resource: dict[str, list[Doc]] = {}
    for task in tasks:
        if task.get("reservations") and task.get("started_at") and task.get("finished_at"):
            by_resource.setdefault(task["reservations"][0]["resource"], []).append(task)
    gaps: list[float] = []
    for ran in by_resource.values():
        ran.sort(key=lambda task: task["started_at"])
        for before, after in itertools.pairwise(ran):
            gaps.append((after["started_at"] - before["finished_at"]).total_seconds() * 1000)
    return gaps
