"""The RabbitMQ side of the topology: how the broker is reached and what is declared on it.

Three traps are set deliberately here: commands are published persistent, mandatory and with
publisher confirms that turn a return into an error, so an unroutable or unconfirmed publish raises;
the tasks queue is a durable quorum queue that dead-letters (at least once) a command delivered
`delivery_limit` times, so a command that crashes its worker every time cannot loop forever.
"""

from __future__ import annotations

import contextlib
from typing import Any

import aio_pika
from faststream.rabbit import (
    Channel,
    ExchangeType,
    QueueType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
)
from pydantic import BaseModel

from shared import tracing
from shared.retries import DELAY_BUCKETS_S
from shared.settings import Settings
from shared.topology import RUN_KEY, Topology


def make_broker(settings: Settings, **kwargs: Any) -> RabbitBroker:
    """A broker client whose publishes wait for confirms and raise on returns."""
    return RabbitBroker(
        settings.amqp_url,
        default_channel=Channel(publisher_confirms=True, on_return_raises=True),
        **kwargs,
    )


def tasks_exchange(topology: Topology) -> RabbitExchange:
    """The direct exchange `RunTask` commands are published to."""
    return RabbitExchange(topology.tasks_exchange, type=ExchangeType.DIRECT, durable=True)


def tasks_queue(topology: Topology, settings: Settings) -> RabbitQueue:
    """The quorum queue workers take `RunTask` from."""
    return RabbitQueue(
        topology.tasks_queue,
        queue_type=QueueType.QUORUM,
        durable=True,
        routing_key=RUN_KEY,
        arguments={
            "x-delivery-limit": settings.delivery_limit,
            "x-dead-letter-exchange": topology.dead_exchange,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )


def dead_exchange(topology: Topology) -> RabbitExchange:
    """Where the tasks queue sends commands it gives up on."""
    return RabbitExchange(topology.dead_exchange, type=ExchangeType.FANOUT, durable=True)


def dead_queue(topology: Topology) -> RabbitQueue:
    """Keeps dead-lettered commands; the worker fails their tasks with the reason."""
    return RabbitQueue(topology.dead_queue, queue_type=QueueType.QUORUM, durable=True)


def parked_queue(topology: Topology) -> RabbitQueue:
    """Keeps dead-lettered commands whose task could not be failed (see the worker's dead-letter
    handler); nothing consumes it."""
    return RabbitQueue(topology.parked_queue, queue_type=QueueType.QUORUM, durable=True)


def control_exchange(topology: Topology) -> RabbitExchange:
    """Broadcasts to all workers (cancel requests)."""
    return RabbitExchange(topology.control_exchange, type=ExchangeType.FANOUT, durable=True)


def delay_queue(topology: Topology, band_s: int) -> RabbitQueue:
    """Holds retried commands of one delay band until their expiration sends them back."""
    return RabbitQueue(
        topology.delay_queue(band_s),
        durable=True,
        arguments={
            "x-dead-letter-exchange": topology.tasks_exchange,
            "x-dead-letter-routing-key": RUN_KEY,
        },
    )


async def declare_topology(broker: RabbitBroker, topology: Topology, settings: Settings) -> None:
    """Declare and bind exchanges and queues: a publish is routable before any worker runs."""
    dead_x = await broker.declare_exchange(dead_exchange(topology))
    dead_q = await broker.declare_queue(dead_queue(topology))
    await dead_q.bind(dead_x)
    await broker.declare_queue(parked_queue(topology))
    tasks_x = await broker.declare_exchange(tasks_exchange(topology))
    tasks_q = await broker.declare_queue(tasks_queue(topology, settings))
    await tasks_q.bind(tasks_x, routing_key=RUN_KEY)
    await broker.declare_exchange(control_exchange(topology))
    for band_s in DELAY_BUCKETS_S:
        await broker.declare_queue(delay_queue(topology, band_s))


async def publish_command(
    broker: RabbitBroker,
    exchange: RabbitExchange,
    command: BaseModel,
    *,
    routing_key: str = "",
    timeout_s: float,
    message_id: str,
) -> None:
    """Publish a command persistent and mandatory, waiting for the broker's confirm; its
    headers carry the correlation id and, while tracing, the trace context."""
    kind = type(command).__name__
    with tracing.publishing(exchange.name, kind, message_id) as headers:
        await broker.publish(
            command,
            exchange=exchange,
            routing_key=routing_key,
            persist=True,
            mandatory=True,
            timeout=timeout_s,
            message_id=message_id,
            message_type=kind,
            headers=headers,
        )


async def delete_topology(amqp_url: str, topology: Topology) -> None:
    """Delete every queue and exchange of a deployment's namespace, with what they hold: for
    tests and benchmarks that made one of their own, or a deployment that is retired."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        delay_queues = [topology.delay_queue(band_s) for band_s in DELAY_BUCKETS_S]
        queues = (topology.tasks_queue, topology.dead_queue, topology.parked_queue)
        for queue in (*queues, *delay_queues):
            channel = await connection.channel()  # a failed delete closes its channel
            with contextlib.suppress(Exception):
                await channel.queue_delete(queue)
        for exchange in (
            topology.tasks_exchange,
            topology.dead_exchange,
            topology.control_exchange,
        ):
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(exchange)
