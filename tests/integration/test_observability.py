"""Observability through a real stack: metrics scraped from each service, the correlation id on
the worker's log lines, and one trace from the API request to the worker's database writes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import BaseModel

from services.api.app import create_app
from services.notifier.app import Notifier
from services.worker.app import Worker
from shared import metrics
from shared.logs import JsonFormatter
from shared.registry import Registry, TaskContext, TaskType
from shared.settings import Settings
from tests.support import FINAL, eventually
from tests.support.servers import DEV_AUTH, ServerThread
from tests.support.wsclient import ws_connect

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# --- a task type that logs, to see which fields its lines carry ------------------------------

HANDLER_LOGGER = "tests.observability.handler"


class NoArgs(BaseModel):
    """No arguments."""


async def log_a_line(args: NoArgs, ctx: TaskContext) -> str:
    """Log one line from inside a handler."""
    logging.getLogger(HANDLER_LOGGER).info("handling")
    return "logged"


def register(registry: Registry) -> None:
    """`TASKLIGHT_TASK_MODULES=tests.integration.test_observability` adds `obs.log`."""
    registry.add(TaskType("obs.log", "Log a line", "", NoArgs, log_a_line))


# --- helpers ---------------------------------------------------------------------------------


async def scrape(url: str) -> Samples:
    """Every sample a /metrics answers, by name and labels."""
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (name, frozenset(labels.items())): value
        for name, labels, value in metrics.parse_exposition(response.text)
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def wait_final(api: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    async def get() -> dict[str, Any]:
        body: dict[str, Any] = (await api.get(f"/api/v1/tasks/{task_id}")).json()
        return body

    return await eventually(get, lambda t: t["state"] in FINAL)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every record logged while the test runs, as the services' JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


# --- metrics ---------------------------------------------------------------------------------


async def test_one_task_moves_the_metrics_of_the_api_the_worker_and_the_notifier(
    settings: Settings, api: httpx.AsyncClient, worker: Worker, notifier: Notifier
) -> None:
    api_url = f"http://127.0.0.1:{settings.api_metrics_port}/metrics"
    worker_url = f"http://127.0.0.1:{worker.probes.port}/metrics"
    notifier_url = f"http://127.0.0.1:{settings.notifier_metrics_port}/metrics"
    assert worker.probes.port != 0
    before = {url: await scrape(url) for url in (api_url, worker_url, notifier_url)}
    count = {"task_type": "test.count"}

    async with ws_connect(settings) as ws:
        await ws.subscribe(scope="all")
        connected = await scrape(notifier_url)
        assert value(connected, "tasklight_ws_connections") == (
            value(before[notifier_url], "tasklight_ws_connections") + 1
        )
        response = await api.post(
            "/api/v1/tasks", json={"name": "test.count", "args": {"rounds": 2, "round_s": 0.05}}
        )
        assert response.status_code == 202, response.text
        task_id = response.json()["id"]
        await ws.until(
            lambda m: (
                m["type"] == "task" and m["task"]["id"] == task_id and m["task"]["state"] in FINAL
            )
        )
    task = await wait_final(api, task_id)
    assert task["state"] == "completed"

    api_after = await scrape(api_url)
    api_before = before[api_url]
    assert value(api_after, "tasklight_tasks_submitted_total", **count) == (
        value(api_before, "tasklight_tasks_submitted_total", **count) + 1
    )
    posted = {"method": "POST", "route": "/api/v1/tasks", "status": "202"}
    assert value(api_after, "tasklight_http_requests_total", **posted) == (
        value(api_before, "tasklight_http_requests_total", **posted) + 1
    )
    # The api serves its own families only.
    assert not any(name.startswith("tasklight_ws_") for name, _ in api_after)

    worker_after = await scrape(worker_url)
    worker_before = before[worker_url]
    completed = {**count, "outcome": "completed"}
    for name, labels in (
        ("tasklight_tasks_started_total", count),
        ("tasklight_tasks_finished_total", completed),
        ("tasklight_task_run_seconds_count", count),
        ("tasklight_task_queue_wait_seconds_count", count),
    ):
        assert value(worker_after, name, **labels) == value(worker_before, name, **labels) + 1, name
    ran_s = value(worker_after, "tasklight_task_run_seconds_sum", **count) - value(
        worker_before, "tasklight_task_run_seconds_sum", **count
    )
    assert 0.1 <= ran_s < 10  # two rounds of 0.05 s at least
    assert value(worker_after, "tasklight_tasks_running") == value(
        worker_before, "tasklight_tasks_running"
    )

    notifier_after = await eventually(
        lambda: scrape(notifier_url),
        lambda s: (
            value(s, "tasklight_ws_connections")
            == value(before[notifier_url], "tasklight_ws_connections")
        ),
    )
    queued = value(notifier_after, "tasklight_ws_pushes_total", result="queued") - value(
        before[notifier_url], "tasklight_ws_pushes_total", result="queued"
    )
    assert queued >= 3  # at least waiting, running and completed went out


async def test_the_worker_answers_liveness_and_readiness_probes(worker: Worker) -> None:
    base = f"http://127.0.0.1:{worker.probes.port}"
    async with httpx.AsyncClient(base_url=base) as client:
        alive = await client.get("/healthz")
        ready = await client.get("/readyz")
        missing = await client.get("/nothing")
        posted = await client.post("/healthz")
    assert alive.status_code == 200
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}
    assert missing.status_code == 404
    assert posted.status_code == 405


async def test_a_worker_whose_database_does_not_answer_is_not_ready(settings: Settings) -> None:
    unreachable = settings.model_copy(
        update={
            "mongodb_url": "mongodb://127.0.0.1:9/?directConnection=true&serverSelectionTimeoutMS=200"
        }
    )
    worker = Worker(unreachable)
    await worker.probes.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{worker.probes.port}") as client:
            alive = await client.get("/healthz")
            ready = await client.get("/readyz")
    finally:
        await worker.probes.stop()
        await worker.store.close()
    assert alive.status_code == 200
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["database"].startswith("unavailable")
    assert checks["broker"].startswith("unavailable")  # never connected


# --- correlation id and log context ----------------------------------------------------------


@pytest.fixture
async def logging_stack(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Worker]]:
    """An api and a worker that know `obs.log`."""
    with_type = settings.model_copy(update={"task_modules": __name__})
    running = Worker(with_type)
    base_url = f"http://127.0.0.1:{settings.api_port}"
    async with (
        ServerThread(create_app(with_type), settings.api_port),
        httpx.AsyncClient(base_url=base_url, headers=DEV_AUTH) as client,
    ):
        await running.start()
        try:
            yield client, running
        finally:
            await running.stop()


async def test_the_correlation_id_of_a_request_is_on_the_workers_lines_about_its_task(
    logging_stack: tuple[httpx.AsyncClient, Worker], json_lines: io.StringIO
) -> None:
    api, worker = logging_stack
    response = await api.post(
        "/api/v1/tasks",
        json={"name": "obs.log", "args": {}},
        headers={"X-Correlation-ID": "checkout-1234"},
    )
    assert response.status_code == 202, response.text
    assert response.headers["x-correlation-id"] == "checkout-1234"
    task_id = response.json()["id"]
    assert (await wait_final(api, task_id))["state"] == "completed"

    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    [handled] = [line for line in lines if line["logger"] == HANDLER_LOGGER]
    assert handled["task_id"] == task_id
    assert handled["worker"] == worker.settings.worker_name
    assert handled["correlation_id"] == "checkout-1234"
    # The api's own line about the request (uvicorn's access log) carries it too.
    assert any(
        line["logger"] == "uvicorn.access"
        and "POST /api/v1/tasks" in line["message"]
        and line.get("correlation_id") == "checkout-1234"
        for line in lines
    )


async def test_a_request_without_a_correlation_id_gets_one_back(
    api: httpx.AsyncClient,
) -> None:
    first = await api.get("/healthz")
    second = await api.get("/healthz", headers={"X-Request-ID": "lb-77"})
    assert len(first.headers["x-correlation-id"]) == 32
    assert second.headers["x-correlation-id"] == "lb-77"


# --- tracing ---------------------------------------------------------------------------------


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    """The span's parents, nearest first, as far as they were recorded."""
    chain = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        chain.append(span)
    return chain


async def test_one_task_is_one_trace_from_the_request_through_the_publish_to_the_workers_writes(
    spans: InMemorySpanExporter, api: httpx.AsyncClient, worker: Worker
) -> None:
    response = await api.post("/api/v1/tasks", json={"name": "test.noop", "args": {}})
    assert response.status_code == 202, response.text
    task_id = response.json()["id"]
    assert (await wait_final(api, task_id))["state"] == "completed"

    def consumer_spans() -> list[ReadableSpan]:
        return [
            s
            for s in spans.get_finished_spans()
            if s.kind is SpanKind.CONSUMER
            and s.attributes is not None
            and s.attributes.get("tasklight.task_id") == task_id
        ]

    async def ended() -> list[ReadableSpan]:
        return consumer_spans()

    [consumer] = await eventually(ended, bool)
    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished if s.context is not None}
    assert consumer.context is not None
    trace_id = consumer.context.trace_id
    in_trace = [s for s in finished if s.context is not None and s.context.trace_id == trace_id]

    chain = ancestors(consumer, by_id)
    kinds = [s.kind for s in chain]
    assert kinds[:2] == [SpanKind.PRODUCER, SpanKind.SERVER], [s.name for s in chain]
    publish, request = chain[0], chain[1]
    assert publish.name.startswith("publish ")
    assert request.name == "POST /api/v1/tasks"
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 202

    writes = [s for s in in_trace if s.kind is SpanKind.CLIENT]
    worker_writes = [w for w in writes if consumer in ancestors(w, by_id)]
    api_writes = [w for w in writes if request in ancestors(w, by_id) and w not in worker_writes]
    assert worker_writes, [s.name for s in in_trace]  # the claim and the end
    assert all(w.name == "update tasks" for w in worker_writes), [w.name for w in worker_writes]
    assert "insert tasks" in [w.name for w in api_writes]
