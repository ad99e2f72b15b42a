"""A task that runs longer than RabbitMQ's consumer timeout is neither killed nor run twice."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from services.worker.app import Worker
from shared.settings import Settings
from shared.store import Store
from tests.support import eventually
from tests.support.faults import require_rabbitmqctl
from tests.support.rest import read, submit

pytestmark = pytest.mark.fault

#: RabbitMQ checks consumer timeouts once a minute: a task must outlive one check.
TASK_S = 65


def broker_env(rabbitmqctl: str, expression: str) -> str:
    done = subprocess.run(
        [rabbitmqctl, "eval", expression], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def short_consumer_timeout() -> Iterator[None]:
    """RabbitMQ's consumer_timeout at 2 s for channels opened meanwhile; restored after."""
    rabbitmqctl = require_rabbitmqctl()
    before = broker_env(rabbitmqctl, "application:get_env(rabbit, consumer_timeout).")
    broker_env(rabbitmqctl, "application:set_env(rabbit, consumer_timeout, 2000).")
    try:
        yield
    finally:
        if before.startswith("{ok,"):
            value = before.removeprefix("{ok,").removesuffix("}")
            broker_env(rabbitmqctl, f"application:set_env(rabbit, consumer_timeout, {value}).")
        else:
            broker_env(rabbitmqctl, "application:unset_env(rabbit, consumer_timeout).")


@pytest.mark.timeout(150)
async def test_a_task_longer_than_the_consumer_timeout_runs_once_to_its_end(
    short_consumer_timeout: None,
    api: httpx.AsyncClient,
    settings: Settings,
    store: Store,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a worker that acknowledges a running task's command after 1 s, on a broker that
    # closes a channel whose delivery stays unacknowledged for 2 s
    worker = Worker(settings.model_copy(update={"ack_deadline_s": 1.0}))
    await worker.start()
    caplog.set_level(logging.INFO)
    try:
        # When a task runs past the broker's next consumer-timeout check
        task_id = await submit(api, "test.count", rounds=1, round_s=TASK_S)
        task = await eventually(
            lambda: read(api, task_id),
            lambda t: t["state"] in ("completed", "failed", "canceled"),
            timeout_s=TASK_S + 30,
            interval_s=0.5,
        )
        # A task queued after it has run, and the worker idle again: a copy of the first task's
        # command that the broker still held (returned, it goes ahead of what is queued) was
        # delivered before that task's command, and its handling is over by then.
        after = await submit(api, "test.count", rounds=0)
        await eventually(lambda: read(api, after), lambda t: t["state"] == "completed")
        await eventually(lambda: asyncio.sleep(0, len(worker.runner.handling)), lambda n: n == 0)
    finally:
        await worker.stop(grace_s=0)

    # Then it completed, claimed once, and no second delivery of its command ever arrived
    assert task["state"] == "completed"
    history = [(e.source, e.target) for e in await store.tasks.history(task_id)]
    assert history == [(None, "waiting"), ("waiting", "running"), ("running", "completed")]
    assert task["attempts"] == []
    log = caplog.text
    assert "PRECONDITION_FAILED" not in log
    assert "dropping this copy" not in log
    assert f"task {task_id} already completed; not running it again" not in log
