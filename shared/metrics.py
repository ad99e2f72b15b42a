"""Prometheus metrics: what each service counts, and the registry each one serves at /metrics.

The metrics are module-level, one set per process (a deployment runs each service as its own
process); each service serves a registry holding only its own families, plus the process'
CPU and memory. Several services (or several of one) in one process, as in the tests, add up
into the same metrics: read them as differences.

Cheap by design: a counter or histogram update on the hot path, never a database or broker call;
label children the hot path needs are looked up once; per-message push counts are plain integers
turned into a counter only when scraped. No label is per task: task type and outcome only.
"""

from __future__ import annotations

import functools
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from shared.clock import utcnow
from shared.records import StoredTask

T = TypeVar("T")

#: The content type of a scrape's answer.
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Seconds: task run times range from a no-op's milliseconds to the ack deadline's 25 minutes.
RUN_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
#: Seconds: a queue wait is milliseconds when workers keep up, minutes when they do not.
WAIT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Seconds an API request takes.
HTTP_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# --- tasks (the api, and a worker's child tasks) ---------------------------------------------

TASKS_SUBMITTED = Counter(
    "tasklight_tasks_submitted",
    "Tasks stored and queued (a worker counts the child tasks its handlers start).",
    ["task_type"],
    registry=None,
)

# --- the api's requests ----------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "tasklight_http_requests",
    "API requests answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=None,
)
HTTP_DURATION = Histogram(
    "tasklight_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer.",
    ["method", "route"],
    buckets=HTTP_BUCKETS_S,
    registry=None,
)

# --- the worker ------------------------------------------------------------------------------

TASKS_STARTED = Counter(
    "tasklight_tasks_started",
    "Runs started: a task claimed by this worker (a retried or requeued task once per run).",
    ["task_type"],
    registry=None,
)
TASKS_FINISHED = Counter(
    "tasklight_tasks_finished",
    "Tasks this worker ended, by outcome: completed, failed or canceled.",
    ["task_type", "outcome"],
    registry=None,
)
TASKS_RUNNING = Gauge(
    "tasklight_tasks_running",
    "Handlers running in this worker now.",
    registry=None,
)
RUN_SECONDS = Histogram(
    "tasklight_task_run_seconds",
    "Time a handler ran, each run (retries too).",
    ["task_type"],
    buckets=RUN_BUCKETS_S,
    registry=None,
)
QUEUE_WAIT_SECONDS = Histogram(
    "tasklight_task_queue_wait_seconds",
    "Time from a task's submission (or its release for another run) to its claim by a worker.",
    ["task_type"],
    buckets=WAIT_BUCKETS_S,
    registry=None,
)
TASK_RETRIES = Counter(
    "tasklight_task_retries",
    "Runs that ended in a retry (queued again after a delay).",
    ["task_type"],
    registry=None,
)
DEAD_LETTERS = Counter(
    "tasklight_dead_letters",
    "Dead-lettered commands handled (their task failed), by RabbitMQ's reason.",
    ["reason"],
    registry=None,
)
COMMANDS_DECLINED = Counter(
    "tasklight_commands_declined",
    "Delivered commands whose task no run of this worker could claim, by why: the task had "
    "ended, was held by another run, or no longer exists (a duplicate or late copy).",
    ["reason"],
    registry=None,
)
COMMANDS_PARKED = Counter(
    "tasklight_commands_parked",
    "Dead-lettered commands moved to the parked queue: the database refused, try after try, "
    "to record their task as failed.",
    registry=None,
)

WORKERS_MISSING = Counter(
    "tasklight_workers_missing",
    "Workers this worker's janitor found silent past the TTL and marked missing.",
    registry=None,
)
TASKS_WORKER_LOST = Counter(
    "tasklight_tasks_worker_lost",
    "Tasks whose worker went missing, by what the janitor did: requeued, failed or canceled.",
    ["task_type", "action"],
    registry=None,
)

QUESTIONS = Counter(
    "tasklight_questions",
    "Questions handlers asked their task's owner, by how each went: asked, answered, "
    "defaulted (its timeout answered the default) or expired (its task failed: no answer).",
    ["task_type", "outcome"],
    registry=None,
)

# --- the notifier ----------------------------------------------------------------------------

WS_CONNECTIONS = Gauge(
    "tasklight_ws_connections",
    "Authenticated WebSocket connections open now.",
    registry=None,
)


class PushTally(Collector):
    """`tasklight_ws_pushes_total{result}`: messages offered to connections, by what became of
    them: `queued` (to be sent), `coalesced` (replaced an older unsent state of the same task,
    which is never sent), `stale` (dropped: the client has that version or newer), `overflow`
    (the connection fell behind and is closed), `ignored` (its subscription or connection was
    gone), `unrenderable` (a stored task that cannot be shown: skipped, and logged). Plain
    integers on the hot path (a fan-out offers thousands at once)."""

    def __init__(self) -> None:
        self.counts: Tally[str] = Tally()

    def add(self, result: str, count: int = 1) -> None:
        """Count `count` offers (one by default) with the same result."""
        self.counts[result] += count

    def collect(self) -> Iterable[Metric]:
        """The counts as one counter family."""
        family = CounterMetricFamily(
            "tasklight_ws_pushes",
            "Messages offered to WebSocket connections, by what became of them.",
            labels=["result"],
        )
        for result, count in sorted(self.counts.items()):
            family.add_metric([result], count)
        yield family


WS_PUSHES = PushTally()


def _registry(*collectors: Collector) -> CollectorRegistry:
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


#: What the api serves.
API_REGISTRY = _registry(TASKS_SUBMITTED, HTTP_REQUESTS, HTTP_DURATION, QUESTIONS)
#: What a worker serves.
WORKER_REGISTRY = _registry(
    TASKS_SUBMITTED,
    TASKS_STARTED,
    TASKS_FINISHED,
    TASKS_RUNNING,
    RUN_SECONDS,
    QUEUE_WAIT_SECONDS,
    TASK_RETRIES,
    DEAD_LETTERS,
    COMMANDS_DECLINED,
    COMMANDS_PARKED,
    WORKERS_MISSING,
    TASKS_WORKER_LOST,
    QUESTIONS,
)
#: What the notifier serves.
NOTIFIER_REGISTRY = _registry(WS_CONNECTIONS, WS_PUSHES)


def exposition(registry: CollectorRegistry) -> bytes:
    """A scrape's answer body (Prometheus text format)."""
    return generate_latest(registry)


# --- the hooks the services call -------------------------------------------------------------


def submitted(names: Iterable[str]) -> None:
    """Tasks of these types were stored and queued."""
    for name, count in Tally(names).items():
        TASKS_SUBMITTED.labels(name).inc(count)


def queue_wait_s(task: StoredTask, now: datetime) -> float | None:
    """Seconds a just-claimed task waited: since its creation, or for a later run since the
    last run ended plus the retry delay it asked for, or since the answer that queued it again.
    None when the task does not say."""
    last = task.attempts[-1] if task.attempts else None
    since = task.created_at if last is None else last.ended_at
    delay = timedelta(seconds=last.retry_in_s if last is not None else 0)
    answer = task.answers[-1] if task.answers else None
    if answer is not None and (since is None or answer.at > since):
        # Queued again by an answer: the wait for a person is not a wait for a worker.
        since, delay = answer.at, timedelta(0)
    if since is None or since.tzinfo is None or now.tzinfo is None:
        return None
    return max(0.0, (now - since - delay).total_seconds())


@functools.cache
def _claim_metrics(name: str) -> tuple[Counter, Histogram]:
    # One labels() look-up per task type and process, not two per claim (task types are few).
    return TASKS_STARTED.labels(name), QUEUE_WAIT_SECONDS.labels(name)


@functools.cache
def _run_seconds(name: str) -> Histogram:
    return RUN_SECONDS.labels(name)


@functools.cache
def _finished(name: str, outcome: str) -> Counter:
    return TASKS_FINISHED.labels(name, outcome)


def claimed(task: StoredTask) -> None:
    """A run of `task` was claimed (`Runs.claim`): count it as started, and the task's wait."""
    started_total, wait_seconds = _claim_metrics(task.name)
    started_total.inc()
    wait_s = queue_wait_s(task, utcnow())
    if wait_s is not None:
        wait_seconds.observe(wait_s)


async def timed_run(task: StoredTask, run: Awaitable[T]) -> T:
    """Await a claimed task's handler run, timing it and counting it among the running
    meanwhile (its claim counted it as started)."""
    run_seconds = _run_seconds(task.name)
    started = time.perf_counter()
    TASKS_RUNNING.inc()
    try:
        return await run
    finally:
        TASKS_RUNNING.dec()
        run_seconds.observe(time.perf_counter() - started)


@functools.cache
def _http_metrics(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    return HTTP_REQUESTS.labels(method, route, str(status)), HTTP_DURATION.labels(method, route)


def answered(method: str, route: str, status: int, seconds: float) -> None:
    """The api answered a request for `route` (a template) with `status` in `seconds`."""
    requests, duration = _http_metrics(method, route, status)
    requests.inc()
    duration.observe(seconds)


def finished(name: str, outcome: str) -> None:
    """A task of type `name` ended in state `outcome`."""
    _finished(name, str(outcome)).inc()


def requeued(name: str, reason: str) -> None:
    """A running task was released to run again; `reason` is its attempt's outcome."""
    if reason == "retry":
        TASK_RETRIES.labels(name).inc()


def worker_lost(name: str, action: str) -> None:
    """A task whose worker went missing was requeued, failed or canceled."""
    TASKS_WORKER_LOST.labels(name, action).inc()


def question(name: str, outcome: str) -> None:
    """A question of a task of type `name` was asked, answered, defaulted or expired."""
    QUESTIONS.labels(name, outcome).inc()


def sample(
    registry: CollectorRegistry, name: str, labels: Mapping[str, str] | None = None
) -> float:
    """The current value of one sample (0 if absent); for tests and diagnostics."""
    value = registry.get_sample_value(name, dict(labels or {}))
    return 0.0 if value is None else value


def parse_exposition(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample in a scrape's text; for tests and tools."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            yield s.name, dict(s.labels), s.value
