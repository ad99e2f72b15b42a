"""Logging set-up shared by the services: one JSON object per line, or plain text for people.

What a line is about (its task, the worker, the request's correlation id) is held in context
variables, set where a request or a task is taken up (`bound`), so every line logged while
handling it carries them without passing them around: asyncio copies the context into each task
it starts, and tasks started for another request or task get their own.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

#: The task the current code works on.
task_id_var: ContextVar[str | None] = ContextVar("tasklight_task_id", default=None)
#: The worker (its name) the current code runs in.
worker_var: ContextVar[str | None] = ContextVar("tasklight_worker", default=None)
#: The correlation id of the request or command being handled (X-Correlation-ID).
correlation_id_var: ContextVar[str | None] = ContextVar("tasklight_correlation_id", default=None)

#: The context fields, in the order they appear on a line.
_CONTEXT: tuple[tuple[str, ContextVar[str | None]], ...] = (
    ("task_id", task_id_var),
    ("worker", worker_var),
    ("correlation_id", correlation_id_var),
)
#: Attributes every `LogRecord` has; any other was passed in `extra=` and is logged as a field.
#: (uvicorn's `color_message` repeats the message with terminal colours: not for a collector.)
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}

LogFormat = Literal["json", "text"]


@contextmanager
def bound(
    *,
    task_id: str | None = None,
    worker: str | None = None,
    correlation_id: str | None = None,
) -> Iterator[None]:
    """Attach the given fields to every line logged inside the block (and the tasks it starts)."""
    tokens = [
        (var, var.set(value))
        for var, value in (
            (task_id_var, task_id),
            (worker_var, worker),
            (correlation_id_var, correlation_id),
        )
        if value is not None
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def context_fields() -> dict[str, str]:
    """The context fields that are set now."""
    return {name: value for name, var in _CONTEXT if (value := var.get()) is not None}


#: Extra fields for each line (trace and span ids); `shared.tracing` sets it while tracing.
extra_fields: Callable[[], dict[str, str]] | None = None


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, service, logger, message, the context fields,
    any `extra=` fields, and the exception (type, message and traceback) if there is one."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(context_fields())
        if extra_fields is not None:
            line.update(extra_fields())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time service LEVEL logger: message [task_id=… worker=… correlation_id=…]`, for people."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The record as text, its context fields appended in brackets."""
        text = super().format(record)
        fields = context_fields()
        if not fields:
            return text
        context = " ".join(f"{key}={value}" for key, value in fields.items())
        first, newline, rest = text.partition("\n")  # after the message, before a traceback
        return f"{first} [{context}]{newline}{rest}"


def make_formatter(service: str, log_format: LogFormat) -> logging.Formatter:
    """The formatter for `log_format`."""
    return JsonFormatter(service) if log_format == "json" else TextFormatter(service)


def setup_logging(service: str, log_format: LogFormat = "json", level: str = "INFO") -> None:
    """Log to stderr, one line per record, as `log_format` says; replaces earlier handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(service, log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
