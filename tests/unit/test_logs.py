"""Log lines: one JSON object per line with the context of the task or request they are about."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from shared.logs import JsonFormatter, TextFormatter, bound, context_fields, setup_logging


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """Whatever the logger `tasklight.test` writes, formatted as the worker's JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("worker"))
    logger = logging.getLogger("tasklight.test")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield stream
    logger.removeHandler(handler)
    logger.propagate = True


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_time_level_service_logger_and_message(
    lines: io.StringIO,
) -> None:
    logging.getLogger("tasklight.test").info("claimed %s of %d", "a task", 3)

    [line] = parsed(lines)
    assert line["level"] == "INFO"
    assert line["service"] == "worker"
    assert line["logger"] == "tasklight.test"
    assert line["message"] == "claimed a task of 3"
    assert line["time"].endswith("+00:00")  # UTC, ISO 8601
    assert "task_id" not in line
    assert "correlation_id" not in line


def test_fields_bound_for_a_block_are_on_every_line_inside_it_and_gone_after(
    lines: io.StringIO,
) -> None:
    log = logging.getLogger("tasklight.test")
    with bound(task_id="t-1", worker="w-1", correlation_id="c-1"):
        log.info("inside")
        with bound(task_id="t-2"):
            log.info("nested")
    log.info("after")

    inside, nested, after = parsed(lines)
    assert (inside["task_id"], inside["worker"], inside["correlation_id"]) == ("t-1", "w-1", "c-1")
    assert (nested["task_id"], nested["correlation_id"]) == ("t-2", "c-1")
    assert "task_id" not in after
    assert "worker" not in after


async def test_tasks_started_inside_a_block_keep_its_fields_and_do_not_leak_to_others(
    lines: io.StringIO,
) -> None:
    log = logging.getLogger("tasklight.test")

    async def handle(task_id: str) -> None:
        with bound(task_id=task_id):
            await asyncio.sleep(0.01)  # the two interleave here
            await asyncio.create_task(asyncio.to_thread(lambda: None))
            log.info("done")

    await asyncio.gather(handle("a"), handle("b"))

    assert sorted(line["task_id"] for line in parsed(lines)) == ["a", "b"]
    assert context_fields() == {}


def test_an_exception_is_logged_with_its_type_and_traceback_in_the_same_object(
    lines: io.StringIO,
) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("tasklight.test").exception("handler raised")

    [line] = parsed(lines)
    assert line["level"] == "ERROR"
    assert line["exc_type"] == "ValueError"
    assert "Traceback" in line["exc_info"]
    assert "boom" in line["exc_info"]


def test_extra_fields_become_fields_and_values_json_cannot_hold_become_text(
    lines: io.StringIO,
) -> None:
    logging.getLogger("tasklight.test").info("x", extra={"queue": "q1", "odd": object()})

    [line] = parsed(lines)
    assert line["queue"] == "q1"
    assert line["odd"].startswith("<object object")


def test_the_text_format_appends_the_bound_fields_for_people() -> None:
    record = logging.makeLogRecord({"name": "n", "levelname": "INFO", "msg": "hello"})
    with bound(task_id="t-9"):
        text = TextFormatter("api").format(record)
    assert text.endswith("api INFO n: hello [task_id=t-9]")


def test_setup_logging_installs_one_handler_with_the_chosen_format() -> None:
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        setup_logging("notifier", "text", "warning")
        setup_logging("notifier", "json", "debug")  # again: replaces, does not add
        assert len(root.handlers) == 1
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.level == logging.DEBUG
    finally:
        root.handlers[:] = before[0]
        root.setLevel(before[1])
