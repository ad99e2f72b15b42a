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
Each run (`one_run`) has a fresh database server, worker, queue and database; bench/throughput.py
alternates them with tasklight's. Every process, the queue and the database are gone after,
failed or not.
"""

from __future__ import annotations

import os
import signal
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
from bench.meter import Meter
from bench.wire import WireCounter, counting
from services.stack import ROOT, EmbeddedMongo

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


def describe() -> dict[str, Any]:
    """What the peer is: Celery's version, pool and settings."""
    return {
        "celery": celery.__version__,
        "pool": f"{POOL} (Celery's default)",
        "concurrency": os.cpu_count() or 1,
        "settings": {
            "task_acks_late": True,
            "task_track_started": True,
            "worker_prefetch_multiplier": DEFAULTS["worker_prefetch_multiplier"],
            "result_backend": "mongodb (embedded SecantusDB, --sync-on-commit)",
            "broker": "RabbitMQ (classic queue, Celery's default)",
        },
    }


def broker_url() -> str:
    """The broker both ends use."""
    return os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)


def one_run(broker: str, concurrency: int, tasks: int, count: bool = False) -> dict[str, Any]:
    """One run on a fresh database server, worker, queue and database; its figures: the rate,
    the CPU per task of the Celery worker (its pool's children included), of this process (the
    client) and of the database server, by process id, and the idle cores meanwhile; with
    `count`, the database commands per task by kind too, counted through a proxy
    (bench/wire.py; such a run is not timed fairly).

    Fresh for every run, so the runs are alike: a SecantusDB server's cost per command grows
    with the commands it has served since it started (about threefold past ~10,000 on this
    machine, with or without --sync-on-commit; a restart resets it).
    """
    tag = uuid.uuid4().hex[:12]
    queue = f"bench-celery-{tag}"
    database = f"bench_celery_{tag}"
    with tempfile.TemporaryDirectory(prefix="tasklight-bench-celery-") as tmp_dir:
        tmp = Path(tmp_dir)
        with embedded_mongo(tmp) as mongo, counted(mongo, count) as wire:
            backend = wire.url() if wire else mongo.url
            app = create_app(broker=broker, backend=backend, database=database, queue=queue)
            brought: list[str] = []
            try:
                # The exchanges every Celery worker declares; the ones this run brings are
                # deleted after it.
                brought = [name for name in CELERY_EXCHANGES if not exchange_exists(app, name)]
                env = {
                    **os.environ,
                    "BENCH_CELERY_BROKER": broker,
                    "BENCH_CELERY_BACKEND": backend,
                    "BENCH_CELERY_DATABASE": database,
                    "BENCH_CELERY_QUEUE": queue,
                }
                log_path = tmp / "celery-worker.log"
                with celery_worker(env, concurrency, f"bench-{tag}@%h", log_path) as worker:
                    try:
                        warm_up(app, worker)
                        assert mongo.process is not None
                        meter = Meter(
                            {"celery worker": [worker.pid], "database": [mongo.process.pid]},
                            {"celery client": os.getpid()},
                        )
                        if wire:
                            wire.reset()
                        meter.start()
                        figures = measure(app, worker, tasks)
                        figures.update(meter.stop().figures(tasks))
                        if wire:
                            figures["database_per_task"] = wire.reset().per_task(tasks)
                        return figures
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
def counted(mongo: EmbeddedMongo, count: bool) -> Iterator[WireCounter | None]:
    """A counting proxy to `mongo` if `count`, else nothing."""
    if not count:
        yield None
        return
    with counting(mongo.port) as wire:
        yield wire


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
