"""The Celery app of the peer benchmark (bench/peer_celery.py), for its client and its worker.

The worker imports it as `celery -A bench.celery_app worker`, so it is configured from the
environment the benchmark sets:

- `BENCH_CELERY_BROKER`: the AMQP URL of the broker;
- `BENCH_CELERY_BACKEND`: the MongoDB URL of the result backend;
- `BENCH_CELERY_DATABASE`: the database of the results (one per benchmark run);
- `BENCH_CELERY_QUEUE`: the queue of the tasks (one per benchmark run).

The settings are those a team would run behind a UI: results stored in MongoDB (the UI reads a
task's state there), `task_track_started` (so it can show "running"), `task_acks_late` (a task
whose worker dies runs again), and everything else Celery's default.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

#: The name the no-op task is registered and sent under.
NOOP = "bench.noop"


def create_app(*, broker: str, backend: str, database: str, queue: str) -> Any:
    """A Celery app on `broker` with its results in `database` at `backend`, tasks on `queue`."""
    app = Celery("tasklight-bench", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_track_started=True,
        # Both ends use this queue (and its direct exchange of the same name) only.
        task_default_queue=queue,
        mongodb_backend_settings={"database": database},
        # Only silences a deprecation warning: the behaviour stays Celery 5's default.
        broker_connection_retry_on_startup=True,
    )
    app.task(name=NOOP)(noop)
    return app


def noop() -> None:
    """The task: does nothing, so what is measured is what Celery costs per task."""


def app_from_env() -> Any:
    """The app as the environment configures it (defaults that reach the local services)."""
    return create_app(
        broker=os.environ.get("BENCH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672/"),
        backend=os.environ.get(
            "BENCH_CELERY_BACKEND", "mongodb://127.0.0.1:27017/?directConnection=true"
        ),
        database=os.environ.get("BENCH_CELERY_DATABASE", "celery_bench"),
        queue=os.environ.get("BENCH_CELERY_QUEUE", "celery_bench"),
    )


#: What `celery -A bench.celery_app` finds.
app = app_from_env()
