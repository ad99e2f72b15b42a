"""OpenTelemetry tracing, off unless configured, and what crosses the broker with a command.

On when `TASKLIGHT_OTEL_ENABLED=true` or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, unless `OTEL_SDK_DISABLED=true`. Spans are then
exported over OTLP/HTTP as the standard `OTEL_*` variables say (the SDK and exporter come with
the `otel` extra); the service is named by `OTEL_SERVICE_NAME`, else `tasklight-<service>`.

The spans: the API request (server), the command's publish (producer, its context injected into
the message's headers as W3C `traceparent`), the worker's handling of a command (consumer, a
child of the publish), and the store's writes (client). Off, every helper here is a check of
one module variable: no span objects, no header parsing beyond the correlation id.

Whether on or off, a command carries the correlation id of the request that queued it
(`x-correlation-id`), so the worker's lines about the task carry the same id as the api's.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared import logs

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from shared.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger(__name__)

#: The message header that carries the correlation id of the request that queued a command.
CORRELATION_HEADER = "x-correlation-id"

_propagator = TraceContextTextMapPropagator()
#: The tracer while tracing is on; None while off (the only thing the hot paths look at).
_tracer: Tracer | None = None
_provider: TracerProvider | None = None


def enabled() -> bool:
    """Whether spans are being recorded."""
    return _tracer is not None


def wanted(settings: Settings) -> bool:
    """Whether the settings and the standard OTel variables ask for tracing."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return settings.otel_enabled or any(
        os.environ.get(name)
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup_tracing(service: str, settings: Settings) -> bool:
    """Turn tracing on for this process if configured; whether it is on. Without the `otel`
    extra installed it says so in the log and stays off (the service runs untraced)."""
    if not wanted(settings):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.error("tracing is configured but the `otel` extra is not installed (%s); off", exc)
        return False
    name = os.environ.get("OTEL_SERVICE_NAME") or f"tasklight-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(provider)
    atexit.register(provider.shutdown)  # sends the spans still batched
    log.info("tracing on: service %s, OTLP over HTTP", name)
    return True


def install(provider: TracerProvider) -> None:
    """Record spans with `provider` (tests pass one with an in-memory exporter)."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("tasklight")
    logs.extra_fields = _trace_fields


def uninstall() -> None:
    """Stop recording spans."""
    global _tracer, _provider
    _tracer = None
    _provider = None
    logs.extra_fields = None


def _trace_fields() -> dict[str, str]:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


@contextmanager
def _span(
    name: str,
    kind: SpanKind,
    attributes: Mapping[str, str | int | bool] | None = None,
    parent: Context | None = None,
) -> Iterator[Span | None]:
    tracer = _tracer
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes
    ) as span:
        yield span


# --- the API ---------------------------------------------------------------------------------


@contextmanager
def server_span(method: str, path: str, headers: Mapping[str, str]) -> Iterator[Span | None]:
    """The span of one API request; its parent is the caller's `traceparent`, if any."""
    if _tracer is None:
        yield None
        return
    parent = _propagator.extract(headers)
    attributes = {"http.request.method": method, "url.path": path}
    # Named by the method alone until the route template is known (paths hold ids).
    with _span(method, SpanKind.SERVER, attributes, parent) as span:
        yield span


def end_server_span(span: Span | None, method: str, route: str | None, status: int) -> None:
    """Name the request's span after its route template and record its status."""
    if span is None:
        return
    if route is not None:
        span.set_attribute("http.route", route)
        span.update_name(f"{method} {route}")
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


# --- commands over the broker ----------------------------------------------------------------


@contextmanager
def publishing(destination: str, command: str, message_id: str) -> Iterator[dict[str, Any] | None]:
    """Around a command's publish: the headers to send with it (None when there are none), in
    a producer span whose context they carry."""
    correlation_id = logs.correlation_id_var.get()
    if _tracer is None:
        yield None if correlation_id is None else {CORRELATION_HEADER: correlation_id}
        return
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation.name": "publish",
        "messaging.destination.name": destination,
        "messaging.message.id": message_id,
        "tasklight.command": command,
    }
    with _span(f"publish {destination}", SpanKind.PRODUCER, attributes):
        headers: dict[str, Any] = {}
        if correlation_id is not None:
            headers[CORRELATION_HEADER] = correlation_id
        _propagator.inject(headers)
        yield headers


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


@contextmanager
def handling(
    headers: Mapping[str, Any] | None,
    *,
    task_id: str,
    task_type: str,
    worker: str,
    source: str,
) -> Iterator[None]:
    """Around a worker's handling of a task's command: every line logged inside carries the
    task, the worker and the command's correlation id; while tracing, a consumer span continues
    the trace of the publish."""
    headers = headers or {}
    correlation_id = _text(headers.get(CORRELATION_HEADER))
    with logs.bound(task_id=task_id, worker=worker, correlation_id=correlation_id):
        if _tracer is None:
            yield
            return
        carrier = {k: text for k, v in headers.items() if (text := _text(v)) is not None}
        attributes = {
            "messaging.system": "rabbitmq",
            "messaging.operation.name": "process",
            "messaging.destination.name": source,
            "tasklight.task_id": task_id,
            "tasklight.task_type": task_type,
        }
        parent = _propagator.extract(carrier)
        with _span(f"process {task_type}", SpanKind.CONSUMER, attributes, parent):
            yield


# --- the database ----------------------------------------------------------------------------


def db_write(
    operation: str, collection: str = "tasks"
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Decorate a store method that writes: while tracing, each call is a client span
    `<operation> <collection>`; while not, the call goes straight through."""

    def decorate(
        method: Callable[P, Coroutine[Any, Any, R]],
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        attributes = {
            "db.system.name": "mongodb",
            "db.collection.name": collection,
            "db.operation.name": operation,
            "code.function.name": method.__qualname__,
        }
        name = f"{operation} {collection}"

        @functools.wraps(method)
        async def traced(*args: P.args, **kwargs: P.kwargs) -> R:
            if _tracer is None:
                return await method(*args, **kwargs)
            with _span(name, SpanKind.CLIENT, attributes):
                return await method(*args, **kwargs)

        return traced

    return decorate
