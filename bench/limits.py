"""The raw rates of the parts tasklight is built on, on this machine: what no design on top of
them can beat.

Broker (aio-pika on the local RabbitMQ at `AMQP_URL`): persistent messages published with
publisher confirms to a durable quorum queue (as tasklight publishes its commands) and consumed
with a manual ack per message.
- `amqp.end_to_end`: a publisher keeping IN_FLIGHT publishes awaiting their confirms (what a
  tuned client does) and a consumer (prefetch PREFETCH) on a connection of its own, at once in
  this process; messages per second from the first publish to the last ack.
- `amqp.sequential_publish`: one publish at a time, each waiting for its confirm before the next
  (what a request handler publishing one task does): publishes per second, nobody consuming.

Database (PyMongo's AsyncMongoClient on a fresh embedded SecantusDB, --sync-on-commit, so every
commit is an fsync): the writes of a task's life, one insert (waiting) and two compare-and-set
updates (running, then completed), into a collection with only its `_id` index.
- `mongo.bulk`: across tasks, BATCH at a time: an `insert_many`, then a `bulk_write` of the
  running updates, then one of the completed updates; one writer. Tasks per second.
- `mongo.grouped`: the same, but each BATCH's running updates are one `update_many` (one filter
  naming the batch's ids and the expected state, one update), and so are its completed updates:
  the form tasklight's own writes take when tasks are handled together (shared/batching.py).
- `mongo.tasklight_form`: as `mongo.grouped`, but tasklight's own documents and writes into a
  collection with tasklight's indexes (`Store.migrate`): the stored form of a new task with
  its outbox mark, the first claim (`shared.runs.claim_change`) and the known-version end
  (`shared.runs.end_change`), each compiled to its known-version form. The least tasklight's
  data model can cost the database per task, with nothing else running: its ceiling on this server,
  and (`database_cpu_ms_per_task`) the isolated cost of tasklight's own writes that the end-to-end
  database CPU per task is held against.
- `mongo.single`: one document per command, WRITERS concurrent writers each taking the next task
  and doing its three writes in turn. Tasks per second.

Each database figure carries the server's CPU per task, by its process id (bench/meter.py).
Each figure is the median of RUNS runs; each run has a queue, or a database server, of its own,
deleted after.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from bench.env import machine
from bench.meter import Meter
from services.stack import EmbeddedMongo
from shared.clock import utcnow
from shared.lifecycle import FIRST_VERSION, TaskState
from shared.records import new_task
from shared.runs import claim_change, end_change
from shared.store import Store
from shared.store.tasks import document

RESULTS = "latest"
#: Runs of each measurement; the figure is their median.
RUNS = 3
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
#: Messages per end-to-end run.
MESSAGES = 10_000
#: Publishes awaiting their confirm at once, end to end.
IN_FLIGHT = 64
#: Unacked deliveries the consumer may hold.
PREFETCH = 100
#: Messages per sequential publish run.
SEQUENTIAL_MESSAGES = 1_000
#: About the size of a tasklight command.
BODY = b'{"task_id":"' + b"0" * 26 + b'","name":"bench","args":{},"run":1}' + b" " * 120
#: Tasks per bulk run, and how many one command carries.
BULK_TASKS = 5_000
BATCH = 100
#: Tasks per single-document run, and how many write at once.
SINGLE_TASKS = 1_000
WRITERS = 16

Doc = dict[str, Any]


async def run() -> dict[str, Any]:
    """Measure the broker, then the database (never both at once); the figures."""
    amqp_url = os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)
    load_before = round(os.getloadavg()[0], 2)
    figures = {
        "machine": machine(),
        "amqp": await amqp_figures(amqp_url),
        "mongo": await mongo_figures(),
    }
    # Other work on the machine (the 1-minute load average) as the runs began and ended.
    figures["load_1m"] = {"before": load_before, "after": round(os.getloadavg()[0], 2)}
    return figures


def summary(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Each run's figures and the median of `key` over them (and of the database server's CPU
    per task, where measured)."""
    figures: dict[str, Any] = {key: round(statistics.median(r[key] for r in runs), 1)}
    if all("database_cpu_ms_per_task" in r for r in runs):
        figures["database_cpu_ms_per_task"] = round(
            statistics.median(r["database_cpu_ms_per_task"] for r in runs), 2
        )
    return {**figures, "runs": runs}


# --- broker -------------------------------------------------------------------------------------


async def amqp_figures(url: str) -> dict[str, Any]:
    """End to end, then sequential publishing, RUNS runs each."""
    end_to_end = [await amqp_end_to_end(url, MESSAGES) for _ in range(RUNS)]
    sequential = [await amqp_sequential(url, SEQUENTIAL_MESSAGES) for _ in range(RUNS)]
    connection = await aio_pika.connect_robust(url)
    try:
        server = connection.transport.connection.server_properties if connection.transport else {}
        version = server.get("version")
    finally:
        await connection.close()
    return {
        "rabbitmq": version.decode() if isinstance(version, bytes) else version,
        "client": f"aio-pika {aio_pika.__version__}",
        "queue": "quorum, durable; messages persistent, publisher confirms, manual ack",
        "message_bytes": len(BODY),
        "end_to_end": {
            "messages": MESSAGES,
            "in_flight": IN_FLIGHT,
            "prefetch": PREFETCH,
            **summary(end_to_end, "messages_per_s"),
        },
        "sequential_publish": {
            "messages": SEQUENTIAL_MESSAGES,
            **summary(sequential, "messages_per_s"),
        },
    }


async def with_queue(
    url: str, body: Callable[[AbstractRobustConnection, str], Awaitable[Doc]]
) -> Doc:
    """Run `body(connection, queue)` on a durable quorum queue of its own, deleted after."""
    name = f"bench-limits-{uuid.uuid4().hex[:12]}"
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        try:
            return await body(connection, name)
        finally:
            cleanup = await connection.channel()
            await cleanup.queue_delete(name)
    finally:
        await connection.close()


async def amqp_end_to_end(url: str, messages: int) -> Doc:
    """Publish `messages` with IN_FLIGHT confirms outstanding while a consumer acks each; the
    rate from the first publish to the last ack."""

    async def body(publisher: AbstractRobustConnection, queue_name: str) -> Doc:
        consumer = await aio_pika.connect_robust(url)
        try:
            consume_channel = await consumer.channel()
            await consume_channel.set_qos(prefetch_count=PREFETCH)
            queue = await consume_channel.get_queue(queue_name)
            acked = 0
            all_acked = asyncio.Event()

            async def on_message(message: AbstractIncomingMessage) -> None:
                nonlocal acked
                await message.ack()
                acked += 1
                if acked == messages:
                    all_acked.set()

            consumer_tag = await queue.consume(on_message)
            channel = await publisher.channel(publisher_confirms=True)
            exchange = channel.default_exchange
            slots = asyncio.Semaphore(IN_FLIGHT)

            async def publish() -> None:
                try:
                    await exchange.publish(
                        aio_pika.Message(BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=queue_name,
                    )
                finally:
                    slots.release()

            started = time.perf_counter()
            pending = []
            for _ in range(messages):
                await slots.acquire()
                pending.append(asyncio.create_task(publish()))
            await asyncio.gather(*pending)
            published = time.perf_counter()
            await asyncio.wait_for(all_acked.wait(), timeout=max(60.0, messages / 100))
            finished = time.perf_counter()
            await queue.cancel(consumer_tag)
        finally:
            await consumer.close()
        return {
            "messages_per_s": round(messages / (finished - started), 1),
            "published_per_s": round(messages / (published - started), 1),
            "total_s": round(finished - started, 3),
        }

    return await with_queue(url, body)


async def amqp_sequential(url: str, messages: int) -> Doc:
    """Publish `messages` one at a time, each confirmed before the next; publishes per second."""

    async def body(connection: AbstractRobustConnection, queue_name: str) -> Doc:
        channel = await connection.channel(publisher_confirms=True)
        exchange = channel.default_exchange
        started = time.perf_counter()
        for _ in range(messages):
            await exchange.publish(
                aio_pika.Message(BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue_name,
            )
        elapsed = time.perf_counter() - started
        return {
            "messages_per_s": round(messages / elapsed, 1),
            "confirm_ms": round(elapsed / messages * 1000, 3),
        }

    return await with_queue(url, body)


# --- database -----------------------------------------------------------------------------------


async def mongo_figures() -> dict[str, Any]:
    """Bulk, then single-document writes, RUNS runs each, each on a fresh embedded SecantusDB.

    Fresh for every run, so the runs are alike: a SecantusDB server's cost per command grows
    with the commands it has served since it started (about threefold past ~10,000 on this
    machine, with or without --sync-on-commit; a restart resets it).
    """
    bulk = [await on_fresh_server(mongo_bulk, BULK_TASKS) for _ in range(RUNS)]
    grouped = [await on_fresh_server(mongo_grouped, BULK_TASKS) for _ in range(RUNS)]
    own_form = [await on_fresh_server(mongo_tasklight_form, BULK_TASKS) for _ in range(RUNS)]
    single = [await on_fresh_server(mongo_single, SINGLE_TASKS) for _ in range(RUNS)]
    return {
        "server": "SecantusDB (embedded, --sync-on-commit), fresh for each run",
        "writes_per_task": "insert (waiting), update (running), update (completed)",
        "bulk": {"tasks": BULK_TASKS, "batch": BATCH, **summary(bulk, "tasks_per_s")},
        "grouped": {"tasks": BULK_TASKS, "batch": BATCH, **summary(grouped, "tasks_per_s")},
        "tasklight_form": {"tasks": BULK_TASKS, "batch": BATCH, **summary(own_form, "tasks_per_s")},
        "single": {"tasks": SINGLE_TASKS, "writers": WRITERS, **summary(single, "tasks_per_s")},
    }


async def on_fresh_server(
    body: Callable[[AsyncCollection[Doc], list[str]], Awaitable[None]], tasks: int
) -> Doc:
    """`in_database(body, tasks)` on an embedded SecantusDB started for it, stopped after."""
    with tempfile.TemporaryDirectory(prefix="tasklight-bench-limits-") as tmp:
        mongo = EmbeddedMongo(Path(tmp) / "secantus", log_path=Path(tmp) / "secantus.log")
        try:
            await asyncio.to_thread(mongo.start)
            client: AsyncMongoClient[Doc] = AsyncMongoClient(
                mongo.url, tz_aware=True, serverSelectionTimeoutMS=5000
            )
            try:
                assert mongo.process is not None
                return await in_database(client, body, tasks, mongo.process.pid)
            finally:
                await client.close()
        finally:
            await asyncio.to_thread(mongo.stop)


async def in_database(
    client: AsyncMongoClient[Doc],
    body: Callable[[AsyncCollection[Doc], list[str]], Awaitable[None]],
    tasks: int,
    server_pid: int,
) -> Doc:
    """Time `body` writing `tasks` tasks into a database of its own (dropped after), and the
    database server's CPU per task meanwhile (process `server_pid`); check every task ended
    completed."""
    name = f"bench_limits_{uuid.uuid4().hex[:12]}"
    collection = client[name]["tasks"]
    ids = [f"task-{n:08d}" for n in range(tasks)]
    try:
        meter = Meter({"database": [server_pid]})
        meter.start()
        started = time.perf_counter()
        await body(collection, ids)
        elapsed = time.perf_counter() - started
        reading = meter.stop()
        done = await collection.count_documents({"state": "completed", "version": 3})
        if done != tasks:
            raise RuntimeError(f"{done} of {tasks} tasks ended completed")
    finally:
        await client.drop_database(name)
    return {
        "tasks_per_s": round(tasks / elapsed, 1),
        "writes_per_s": round(3 * tasks / elapsed, 1),
        "total_s": round(elapsed, 3),
        "database_cpu_ms_per_task": reading.ms_per(tasks)["database"],
        "idle_cores": round(reading.idle_cores, 2),
    }


def waiting_doc(task_id: str) -> Doc:
    """A new task, about the shape of tasklight's."""
    at = utcnow()
    return {
        "_id": task_id,
        "name": "bench",
        "state": "waiting",
        "created_at": at,
        "updated_at": at,
        "args": {},
        "owner": "bench",
        "version": 1,
    }


def running(task_id: str) -> tuple[Doc, Doc]:
    """The compare-and-set that starts a task."""
    at = utcnow()
    return (
        {"_id": task_id, "state": "waiting"},
        {
            "$set": {"state": "running", "started_at": at, "updated_at": at, "worker": "bench"},
            "$inc": {"version": 1},
        },
    )


def completed(task_id: str) -> tuple[Doc, Doc]:
    """The compare-and-set that ends a task."""
    at = utcnow()
    return (
        {"_id": task_id, "state": "running"},
        {
            "$set": {"state": "completed", "finished_at": at, "updated_at": at, "result": None},
            "$inc": {"version": 1},
        },
    )


async def mongo_bulk(collection: AsyncCollection[Doc], ids: list[str]) -> None:
    """Each BATCH of tasks: one insert_many, one bulk_write of starts, one of ends."""
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        await collection.insert_many([waiting_doc(task_id) for task_id in batch])
        for change in (running, completed):
            result = await collection.bulk_write([UpdateOne(*change(task_id)) for task_id in batch])
            if result.modified_count != len(batch):
                raise RuntimeError(f"{result.modified_count} of {len(batch)} tasks changed")


async def mongo_grouped(collection: AsyncCollection[Doc], ids: list[str]) -> None:
    """Each BATCH of tasks: one insert_many, one update_many of starts, one of ends."""
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        await collection.insert_many([waiting_doc(task_id) for task_id in batch])
        for change in (running, completed):
            query, update = change(batch[0])
            query["_id"] = {"$in": batch}
            result = await collection.update_many(query, update)
            if result.modified_count != len(batch):
                raise RuntimeError(f"{result.modified_count} of {len(batch)} tasks changed")


async def mongo_tasklight_form(collection: AsyncCollection[Doc], ids: list[str]) -> None:
    """`mongo_grouped` with tasklight's documents, writes and indexes."""
    store = Store(collection.database.client, collection.database.name)
    await store.migrate()
    running_at = FIRST_VERSION + 1
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        at = utcnow()
        docs = [
            document(
                new_task(task_id=task_id, name="bench", args={}, owner="bench", at=at),
                dispatch_due_at=at,
            )
            for task_id in batch
        ]
        await store.tasks.collection.insert_many(docs)
        claim = claim_change(TaskState.WAITING, "bench", "r", at)
        end = end_change(TaskState.COMPLETED, "r", {"result": None, "error": None}, "bench")
        writes = (
            (claim.version_filter(FIRST_VERSION), claim.at_version(TaskState.WAITING, 1, at)),
            (end.version_filter(running_at), end.at_version(TaskState.RUNNING, running_at, at)),
        )
        for query, update in writes:
            result = await store.tasks.collection.update_many(
                {"_id": {"$in": batch}, **query}, update
            )
            if result.modified_count != len(batch):
                raise RuntimeError(f"{result.modified_count} of {len(batch)} tasks changed")


async def mongo_single(collection: AsyncCollection[Doc], ids: list[str]) -> None:
    """WRITERS writers, each taking the next task and writing its insert and two updates."""
    queue = iter(ids)

    async def writer() -> None:
        for task_id in queue:
            await collection.insert_one(waiting_doc(task_id))
            for change in (running, completed):
                result = await collection.update_one(*change(task_id))
                if result.modified_count != 1:
                    raise RuntimeError(f"task {task_id} did not change")

    await asyncio.gather(*(writer() for _ in itertools.repeat(None, WRITERS)))
