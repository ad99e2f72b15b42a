"""Tracing: off by default and then free, and when on, spans joined across the broker's headers."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared import logs, tracing
from shared.settings import Settings


class Store:
    """A stand-in with one decorated write, to see the decorator alone."""

    def __init__(self) -> None:
        self.calls = 0

    @tracing.db_write("update")
    async def write(self, value: int) -> int:
        self.calls += 1
        return value * 2


def test_tracing_is_wanted_only_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    assert not tracing.wanted(Settings())
    assert tracing.wanted(Settings(otel_enabled=True))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert tracing.wanted(Settings())
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing.wanted(Settings(otel_enabled=True))


def test_setup_does_nothing_when_tracing_is_not_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing.setup_tracing("worker", Settings()) is False
    assert not tracing.enabled()


async def test_off_writes_go_straight_through_and_publishes_carry_only_the_correlation_id() -> None:
    assert not tracing.enabled()
    store = Store()
    assert await store.write(21) == 42
    with tracing.publishing("q", "RunTask", "m1") as headers:
        assert headers is None
    with logs.bound(correlation_id="c-1"), tracing.publishing("q", "RunTask", "m1") as headers:
        assert headers == {tracing.CORRELATION_HEADER: "c-1"}


async def test_on_the_consumer_continues_the_publishers_trace_and_writes_nest_in_it(
    spans: InMemorySpanExporter,
) -> None:
    store = Store()
    with (
        logs.bound(correlation_id="c-7"),
        tracing.server_span("POST", "/api/v1/tasks", {}) as request,
    ):
        tracing.end_server_span(request, "POST", "/api/v1/tasks", 202)
        with tracing.publishing("tasklight.tasks", "RunTask", "t-1") as headers:
            assert headers is not None
            sent = dict(headers)
    assert sent[tracing.CORRELATION_HEADER] == "c-7"
    assert sent["traceparent"].startswith("00-")

    # The worker's side: only the headers cross; AMQP may hand strings back as bytes.
    received = {key: value.encode() for key, value in sent.items()}
    with tracing.handling(
        received, task_id="t-1", task_type="test.noop", worker="w", source="tasklight.tasks"
    ):
        assert logs.context_fields() == {"task_id": "t-1", "worker": "w", "correlation_id": "c-7"}
        assert await store.write(1) == 2

    by_name = {span.name: span for span in spans.get_finished_spans()}
    server = by_name["POST /api/v1/tasks"]
    publish = by_name["publish tasklight.tasks"]
    consume = by_name["process test.noop"]
    write = by_name["update tasks"]
    assert {server.kind, publish.kind, consume.kind, write.kind} == {
        SpanKind.SERVER,
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
        SpanKind.CLIENT,
    }
    assert len({s.context.trace_id for s in (server, publish, consume, write)}) == 1
    assert publish.parent is not None
    assert publish.parent.span_id == server.context.span_id
    assert consume.parent is not None
    assert consume.parent.span_id == publish.context.span_id
    assert write.parent is not None
    assert write.parent.span_id == consume.context.span_id
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/api/v1/tasks"
    assert write.attributes is not None
    assert write.attributes["db.system.name"] == "mongodb"


def test_on_json_log_lines_carry_the_trace_and_span_ids(spans: InMemorySpanExporter) -> None:
    import logging

    record = logging.makeLogRecord({"name": "n", "levelname": "INFO", "msg": "hello"})
    with tracing.server_span("GET", "/x", {}) as span:
        assert span is not None
        line = logs.JsonFormatter("api").format(record)
        trace_id = f"{span.get_span_context().trace_id:032x}"
    assert f'"trace_id": "{trace_id}"' in line
