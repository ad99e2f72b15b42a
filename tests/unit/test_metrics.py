"""The Prometheus metrics each service serves: names, units, labels, and what moves them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from shared import metrics
from shared.clock import utcnow
from shared.questions import Answer
from shared.task import Attempt
from tests.support import stored_task


def families(registry: CollectorRegistry) -> set[str]:
    """The names of the tasklight metric families `registry` serves."""
    return {f.name for f in registry.collect() if f.name.startswith("tasklight_")}


def test_the_api_serves_submissions_and_its_requests() -> None:
    assert (families(metrics.API_REGISTRY)) == {
        "tasklight_tasks_submitted",
        "tasklight_http_requests",
        "tasklight_http_request_duration_seconds",
        "tasklight_questions",
    }


def test_a_worker_serves_the_task_lifecycle() -> None:
    assert (families(metrics.WORKER_REGISTRY)) == {
        "tasklight_tasks_submitted",
        "tasklight_tasks_started",
        "tasklight_tasks_finished",
        "tasklight_tasks_running",
        "tasklight_task_run_seconds",
        "tasklight_task_queue_wait_seconds",
        "tasklight_task_retries",
        "tasklight_dead_letters",
        "tasklight_commands_declined",
        "tasklight_commands_parked",
        "tasklight_workers_missing",
        "tasklight_tasks_worker_lost",
        "tasklight_questions",
    }


def test_the_notifier_serves_connections_and_pushes() -> None:
    assert (families(metrics.NOTIFIER_REGISTRY)) == {
        "tasklight_ws_connections",
        "tasklight_ws_pushes",
    }


@pytest.mark.parametrize(
    "registry", [metrics.API_REGISTRY, metrics.WORKER_REGISTRY, metrics.NOTIFIER_REGISTRY]
)
def test_counters_end_in_total_durations_are_seconds_and_no_label_is_per_task(
    registry: CollectorRegistry,
) -> None:
    metrics.finished("test.noop", "completed")  # so that labelled families have samples
    metrics.submitted(["test.noop"])
    metrics.WS_PUSHES.add("queued")
    allowed = {"task_type", "outcome", "action", "reason", "result", "method", "route", "status"}
    for family in registry.collect():
        if not family.name.startswith("tasklight_"):
            continue
        names = {sample.name for sample in family.samples}
        if family.type == "counter":
            assert names <= {f"{family.name}_total", f"{family.name}_created"}, names
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        labels = {label for sample in family.samples for label in sample.labels} - {"le"}
        assert labels <= allowed, (family.name, labels)
    # Each also serves its process' CPU and memory.
    assert "process_cpu_seconds_total" in metrics.exposition(registry).decode()


def test_submissions_are_counted_per_task_type() -> None:
    registry = metrics.API_REGISTRY
    name = "tasklight_tasks_submitted_total"
    before = {t: metrics.sample(registry, name, {"task_type": t}) for t in ("a.x", "b.y")}

    metrics.submitted(["a.x", "b.y", "a.x"])

    assert metrics.sample(registry, name, {"task_type": "a.x"}) == before["a.x"] + 2
    assert metrics.sample(registry, name, {"task_type": "b.y"}) == before["b.y"] + 1


def test_a_claim_counts_the_run_as_started_and_the_wait_before_it() -> None:
    registry = metrics.WORKER_REGISTRY
    labels = {"task_type": "unit.claim"}
    started = metrics.sample(registry, "tasklight_tasks_started_total", labels)
    waits = metrics.sample(registry, "tasklight_task_queue_wait_seconds_count", labels)
    wait_sum = metrics.sample(registry, "tasklight_task_queue_wait_seconds_sum", labels)

    metrics.claimed(stored_task(name="unit.claim", created_at=utcnow() - timedelta(seconds=2)))

    assert metrics.sample(registry, "tasklight_tasks_started_total", labels) == started + 1
    assert metrics.sample(registry, "tasklight_task_queue_wait_seconds_count", labels) == waits + 1
    waited = metrics.sample(registry, "tasklight_task_queue_wait_seconds_sum", labels) - wait_sum
    assert 2.0 <= waited < 10.0


async def test_a_run_counts_as_ran_and_running_meanwhile_not_as_started_again() -> None:
    registry = metrics.WORKER_REGISTRY
    labels = {"task_type": "unit.run"}
    started = metrics.sample(registry, "tasklight_tasks_started_total", labels)
    runs = metrics.sample(registry, "tasklight_task_run_seconds_count", labels)
    run_sum = metrics.sample(registry, "tasklight_task_run_seconds_sum", labels)
    doc = stored_task(name="unit.run")
    gate = asyncio.Event()

    async def handler() -> str:
        await gate.wait()
        await asyncio.sleep(0.05)
        return "done"

    running = asyncio.create_task(metrics.timed_run(doc, handler()))
    await asyncio.sleep(0)
    assert metrics.sample(registry, "tasklight_tasks_running") >= 1
    gate.set()
    assert await running == "done"

    assert metrics.sample(registry, "tasklight_tasks_started_total", labels) == started
    assert metrics.sample(registry, "tasklight_task_run_seconds_count", labels) == runs + 1
    ran = metrics.sample(registry, "tasklight_task_run_seconds_sum", labels) - run_sum
    assert 0.05 <= ran < 5.0


async def test_a_handler_that_raises_is_still_timed_and_no_longer_running() -> None:
    registry = metrics.WORKER_REGISTRY
    labels = {"task_type": "unit.raise"}
    runs = metrics.sample(registry, "tasklight_task_run_seconds_count", labels)
    running = metrics.sample(registry, "tasklight_tasks_running")

    async def handler() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await metrics.timed_run(stored_task(name="unit.raise"), handler())

    assert metrics.sample(registry, "tasklight_task_run_seconds_count", labels) == runs + 1
    assert metrics.sample(registry, "tasklight_tasks_running") == running


def test_the_queue_wait_of_a_later_run_counts_from_the_release_after_its_retry_delay() -> None:
    now = utcnow()
    first = stored_task(created_at=now - timedelta(seconds=30))
    retried = first.model_copy(
        update={
            "attempts": [
                Attempt(outcome="retry", ended_at=now - timedelta(seconds=5), retry_in_s=4.0)
            ]
        }
    )
    unknown = first.model_copy(update={"attempts": [Attempt(outcome="retry")]})
    assert metrics.queue_wait_s(first, now) == pytest.approx(30)
    assert metrics.queue_wait_s(retried, now) == pytest.approx(1)
    assert metrics.queue_wait_s(unknown, now) is None


def test_the_queue_wait_after_an_answer_counts_from_the_answer_not_from_the_question() -> None:
    # The run asked an hour ago; the answer came 2 s ago: the task waited 2 s for a worker.
    now = utcnow()
    asked = Attempt(outcome="asked", ended_at=now - timedelta(hours=1))
    answer = Answer(key="question-1", value="approve", by="dev", at=now - timedelta(seconds=2))
    task = stored_task(attempts=[asked], answers=[answer])
    assert metrics.queue_wait_s(task, now) == pytest.approx(2)


def test_finished_retried_and_lost_tasks_are_counted_by_type_and_outcome() -> None:
    registry = metrics.WORKER_REGISTRY
    finished = {"task_type": "unit.end", "outcome": "failed"}
    retried = {"task_type": "unit.end"}
    lost = {"task_type": "unit.end", "action": "requeued"}
    before = [
        metrics.sample(registry, "tasklight_tasks_finished_total", finished),
        metrics.sample(registry, "tasklight_task_retries_total", retried),
        metrics.sample(registry, "tasklight_tasks_worker_lost_total", lost),
    ]

    metrics.finished("unit.end", "failed")
    metrics.requeued("unit.end", "retry")
    metrics.requeued("unit.end", "hand_back")  # a shutdown, not a retry
    metrics.worker_lost("unit.end", "requeued")

    assert [
        metrics.sample(registry, "tasklight_tasks_finished_total", finished),
        metrics.sample(registry, "tasklight_task_retries_total", retried),
        metrics.sample(registry, "tasklight_tasks_worker_lost_total", lost),
    ] == [before[0] + 1, before[1] + 1, before[2] + 1]


def test_pushes_are_plain_counts_served_as_a_counter_by_result() -> None:
    registry = metrics.NOTIFIER_REGISTRY
    name = "tasklight_ws_pushes_total"
    before = metrics.sample(registry, name, {"result": "coalesced"})

    for _ in range(3):
        metrics.WS_PUSHES.add("coalesced")

    assert metrics.sample(registry, name, {"result": "coalesced"}) == before + 3
    parsed = list(metrics.parse_exposition(metrics.exposition(registry).decode()))
    assert (name, {"result": "coalesced"}, before + 3) in parsed
