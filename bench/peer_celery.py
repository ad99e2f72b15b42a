"""The peer: Celery as a team would run it behind a UI today, on this machine, tasks per second.

Broker: the local RabbitMQ (`AMQP_URL`), on a queue of this run's own, deleted after. Results:
Celery's MongoDB backend on an embedded SecantusDB (--sync-on-commit) of its own, the same server
tasklight uses, in a database of this run's own. Settings (bench/celery_app.py):
`task_acks_late` and `task_track_started` on (what a UI needs: a "running" state, and no task
lost with its worker), everything else Celery's default: the prefork pool with one child per CPU,
prefetch multiplier 4, JSON. So each task costs a publish, a delivery, two result writes
(STARTED, then SUCCESS, each a commit and so an fsync) and an ack.

The task does nothing. The worker is its own process (`celery -A bench.celery_app worker`); this
process submits TASKS tasks with `.delay()`, then waits for every result through the backend
(`ResultSet.join()`, as a UI's poll would read it), timed from the first submit to the last
result seen. A warm-up batch first makes sure the worker consumes and every connection is open.
The figure is the median of RUNS runs, each on a fresh database server, worker, queue and
database. Every process, the queue and the database are gone after, failed or not.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import celery
from amqp.exceptions import ChannelError
from celery.app.defaults import DEFAULTS
from celery.result import ResultSet

from bench.celery_app import NOOP, create_app
from bench.env import machine
from services.stack import ROOT, EmbeddedMongo

RESULTS = "latest"
#: Measured runs; the figure is their median.
RUNS = 3
#: Tasks per run (`BENCH_CELERY_TASKS` overrides, for quick tries).
TASKS = 1000
#: Tasks run before measuring, so the worker is up and every child has its connections.
WARMUP_TASKS = 50
#: Seconds between two reads of a result not ready yet. Celery's default (0.5 s) would add up
#: to half a second to the last result of a run of a few seconds; 50 ms keeps that under ~1 %
#: while reading a pending result at most 20 times a second.
POLL_INTERVAL_S = 0.05
#: The pool a team gets without choosing one: Celery's default ("prefork").
POOL: str = DEFAULTS["worker_pool"]
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
#: Exchanges a Celery worker declares (events, remote control and its replies).
CELERY_EXCHANGES = ("celeryev", "celery.pidbox", "reply.celery.pidbox")


async def run() -> dict[str, Any]:
    """Start the database and the worker, measure RUNS runs, stop everything; the figures."""
    tasks = int(os.environ.get("BENCH_CELERY_TASKS", TASKS))
    return await asyncio.to_thread(measure_all, tasks)


def measure_all(tasks: int) -> dict[str, Any]:
    """What `run` does, in a thread of its own (Celery's client API blocks)."""
    concurrency = os.cpu_count() or 1
    broker = os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)
    load_before = round(os.getloadavg()[0], 2)
    runs = [one_run(broker, concurrency, tasks) for _ in range(RUNS)]
    rates = [r["tasks_per_s"] for r in runs]
    return {
        "machine": machine(),
        # Other work on the machine (the 1-minute load average) as the runs began and ended.
        "load_1m": {"before": load_before, "after": round(os.getloadavg()[0], 2)},
        "celery": celery.__version__,
        "pool": f"{POOL} (Celery's default)",
        "concurrency": concurrency,
        "settings": {
            "task_acks_late": True,
            "task_track_started": True,
            "worker_prefetch_multiplier": DEFAULTS["worker_prefetch_multiplier"],
            "result_backend": "mongodb (embedded SecantusDB, --sync-on-commit)",
            "broker": "RabbitMQ (classic queue, Celery's default)",
        },
        "tasks_per_run": tasks,
        "runs": runs,
        "tasks_per_s": round(statistics.median(rates), 1),
    }


def one_run(broker: str, concurrency: int, tasks: int) -> dict[str, Any]:
    """One run on a fresh database server, worker, queue and database; its figures.

    Fresh for every run, so the runs are alike: a SecantusDB server's cost per command grows
    with the commands it has served since it started (about threefold past ~10,000 on this
    machine, with or without --sync-on-commit; a restart resets it).
    """
    tag = uuid.uuid4().hex[:12]
    queue = f"bench-celery-{tag}"
    database = f"bench_celery_{tag}"
    with tempfile.TemporaryDirectory(prefix="tasklight-bench-celery-") as tmp_dir:
        tmp = Path(tmp_dir)
        with embedded_mongo(tmp) as mongo:
            app = create_app(broker=broker, backend=mongo.url, database=database, queue=queue)
            brought: list[str] = []
            try:
                # The exchanges every Celery worker declares; the ones this run brings are
                # deleted after it.
                brought = [name for name in CELERY_EXCHANGES if not exchange_exists(app, name)]
                env = {
                    **os.environ,
                    "BENCH_CELERY_BROKER": broker,
                    "BENCH_CELERY_BACKEND": mongo.url,
                    "BENCH_CELERY_DATABASE": database,
                    "BENCH_CELERY_QUEUE": queue,
                }
                log_path = tmp / "celery-worker.log"
                with celery_worker(env, concurrency, f"bench-{tag}@%h", log_path) as worker:
                    try:
                        warm_up(app, worker)
                        return measure(app, worker, tasks)
                    except Exception as exc:
                        raise RuntimeError(f"{exc}; worker log: {tail(log_path)}") from exc
            finally:
                close_app(app, queue, brought)


def measure(app: Any, worker: subprocess.Popen[bytes], tasks: int) -> dict[str, Any]:
    """Submit `tasks` no-op tasks, wait for all their results; the rate, first submit to last
    result."""
    noop = app.tasks[NOOP]
    started = time.perf_counter()
    results = [noop.delay() for _ in range(tasks)]
    submitted = time.perf_counter()
    ResultSet(results, app=app).join(
        timeout=max(120.0, tasks / 10), interval=POLL_INTERVAL_S, propagate=True
    )
    finished = time.perf_counter()
    if worker.poll() is not None:
        raise RuntimeError(f"the Celery worker exited with {worker.returncode}")
    return {
        "tasks_per_s": round(tasks / (finished - started), 1),
        "submit_s": round(submitted - started, 3),
        "total_s": round(finished - started, 3),
    }


def warm_up(app: Any, worker: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """Run WARMUP_TASKS tasks to the end; raise if the worker dies or they take `timeout_s`."""
    noop = app.tasks[NOOP]
    pending = ResultSet([noop.delay() for _ in range(WARMUP_TASKS)], app=app)
    deadline = time.monotonic() + timeout_s
    while not pending.ready():
        if worker.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with {worker.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the warm-up tasks did not finish within {timeout_s} s")
        time.sleep(0.1)
    pending.join(timeout=10, propagate=True)


@contextmanager
def embedded_mongo(tmp: Path) -> Iterator[EmbeddedMongo]:
    """An embedded SecantusDB (--sync-on-commit), stopped on the way out."""
    mongo = EmbeddedMongo(tmp / "secantus", log_path=tmp / "secantus.log")
    try:
        mongo.start()
        yield mongo
    finally:
        mongo.stop()


@contextmanager
def celery_worker(
    env: dict[str, str], concurrency: int, hostname: str, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A `celery worker` process (and its pool children), stopped on the way out."""
    with log_path.open("ab") as log:
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker"),
                f"--pool={POOL}",
                f"--concurrency={concurrency}",
                f"--hostname={hostname}",
                "--loglevel=WARNING",
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group: the pool children are stopped with it.
            start_new_session=True,
        )
    try:
        yield worker
    finally:
        stop_group(worker)


def stop_group(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM the process group `process` leads (Celery's warm shutdown), SIGKILL it if it
    outstays `timeout_s`, and SIGKILL any member left once the leader is gone."""
    group = process.pid
    with suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        process.wait()
    # A group id is not given to a new process while the group has members: these are ours.
    with suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def exchange_exists(app: Any, name: str) -> bool:
    """Whether the broker has exchange `name` (a passive declare, on a channel of its own)."""
    with app.connection_for_write() as connection:
        channel = connection.channel()
        try:
            channel.exchange_declare(name, "fanout", passive=True)
        except ChannelError:
            return False
        with suppress(Exception):
            channel.close()
        return True


def close_app(app: Any, queue: str, exchanges: list[str]) -> None:
    """Delete the run's queue and its exchange, and `exchanges` if nothing else uses them now;
    close the client's broker and database connections."""
    try:
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            channel.queue_delete(queue)
            channel.exchange_delete(queue)
            for name in exchanges:
                channel = connection.channel()
                try:
                    channel.exchange_delete(name, if_unused=True)
                    channel.close()
                except ChannelError:
                    pass  # another Celery uses it: it stays
    finally:
        client = getattr(app.backend, "_connection", None)
        if client is not None:
            client.close()
        app.close()


def tail(path: Path, chars: int = 2000) -> str:
    """The end of a log file."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(none)"
