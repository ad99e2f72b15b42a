"""The reservations benchmark's hand-over gaps (bench/handover.py), from tasks' documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bench.handover import handover_gaps_ms

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _task(resource: str | None, start_ms: int, end_ms: int) -> dict[str, object]:
    return {
        "reservations": [{"resource": resource, "mode": "exclusive"}] if resource else [],
        "started_at": T0 + timedelta(milliseconds=start_ms),
        "finished_at": T0 + timedelta(milliseconds=end_ms),
    }


def test_gaps_are_from_each_end_to_the_next_start_of_the_same_resource() -> None:
    tasks = [
        _task("vm:a", 250, 300),  # out of order: sorted by start
        _task("vm:a", 0, 100),
        _task("vm:b", 10, 20),
        _task("vm:b", 70, 80),
        _task(None, 0, 5),  # no reservation: not a hand-over
    ]
    assert sorted(handover_gaps_ms(tasks)) == [50.0, 150.0]


def test_a_task_not_finished_is_left_out() -> None:
    unfinished = {"reservations": [{"resource": "vm:a"}], "started_at": T0, "finished_at": None}
    assert handover_gaps_ms([_task("vm:a", 0, 10), unfinished]) == []
