"""The RabbitMQ side of the topology: how the broker is reached and what is declared on it.

Three traps are set deliberately here: commands are published persistent, mandatory and with
publisher confirms that turn a return into an error, so an unroutable or unconfirmed publish raises;
the tasks queue is a durable quorum queue that dead-letters (at least once) a command delivered
`delivery_limit` times, so a command that crashes its worker every time cannot loop forever.

Every queue that outlives a connection is a quorum queue, replicated on `quorum_group_size` nodes
of a cluster (RabbitMQ's default when 0): the loss of one node loses no command, not even a
retry waiting out its delay. The broker is reached at the first of `amqp_url`'s addresses that
answers, and at the next whenever that one is lost (shared/failover.py).
"""

from __future__ import annotations

import contextlib
import logging
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
from faststream.rabbit.schemas.queue import QuorumQueueArgs
from pydantic import BaseModel

from shared import tracing
from shared.failover import FailoverBroker, with_heartbeat
from shared.retries import DELAY_BUCKETS_S
from shared.settings import Settings, parse_amqp_addresses
from shared.topology import HIGH_RUN_KEY, RUN_KEY, Topology

log = logging.getLogger(__name__)


def make_broker(settings: Settings, **kwargs: Any) -> RabbitBroker:
    """A broker client whose publishes wait for confirms and raise on returns, connected to the
    first of the settings' broker addresses that answers, and to the next when it loses one."""
    addresses = [with_heartbeat(a, settings.amqp_heartbeat_s) for a in settings.amqp_addresses()]
    return FailoverBroker(
        addresses,
        default_channel=Channel(publisher_confirms=True, on_return_raises=True),
        timeout=settings.amqp_connect_timeout_s,
        reconnect_interval=settings.amqp_reconnect_s,
        **kwargs,
    )


def with_replicas(arguments: QuorumQueueArgs, settings: Settings) -> QuorumQueueArgs:
    """A quorum queue's `arguments` with its replicas, when the settings name a number."""
    if settings.quorum_group_size:
        arguments["x-quorum-initial-group-size"] = settings.quorum_group_size
    return arguments


def tasks_exchange(topology: Topology) -> RabbitExchange:
    """The direct exchange `RunTask` commands are published to."""
    return RabbitExchange(topology.tasks_exchange, type=ExchangeType.DIRECT, durable=True)


def tasks_queue(topology: Topology, settings: Settings, *, high: bool = False) -> RabbitQueue:
    """The quorum queue workers take `RunTask` from (`high`: the high-priority one, alike in
    everything but its name and routing key)."""
    return RabbitQueue(
        topology.high_tasks_queue if high else topology.tasks_queue,
        queue_type=QueueType.QUORUM,
        durable=True,
        routing_key=HIGH_RUN_KEY if high else RUN_KEY,
        arguments=with_replicas(
            {
                "x-delivery-limit": settings.delivery_limit,
                "x-dead-letter-exchange": topology.dead_exchange,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
            settings,
        ),
    )


def dead_exchange(topology: Topology) -> RabbitExchange:
    """Where the tasks queue sends commands it gives up on."""
    return RabbitExchange(topology.dead_exchange, type=ExchangeType.FANOUT, durable=True)


def dead_queue(topology: Topology, settings: Settings) -> RabbitQueue:
    """Keeps dead-lettered commands; the worker fails their tasks with the reason."""
    return RabbitQueue(
        topology.dead_queue,
        queue_type=QueueType.QUORUM,
        durable=True,
        arguments=with_replicas({}, settings) or None,
    )


def parked_queue(topology: Topology, settings: Settings) -> RabbitQueue:
    """Keeps dead-lettered commands whose task could not be failed (see the worker's dead-letter
    handler); nothing consumes it."""
    return RabbitQueue(
        topology.parked_queue,
        queue_type=QueueType.QUORUM,
        durable=True,
        arguments=with_replicas({}, settings) or None,
    )


def control_exchange(topology: Topology) -> RabbitExchange:
    """Broadcasts to all workers (cancel requests)."""
    return RabbitExchange(topology.control_exchange, type=ExchangeType.FANOUT, durable=True)


def delay_queue(topology: Topology, band_s: int, settings: Settings) -> RabbitQueue:
    """Holds retried commands of one delay band until their expiration sends them back, at
    least once: a command the tasks queue does not confirm stays here until it does."""
    return RabbitQueue(
        topology.delay_queue(band_s),
        queue_type=QueueType.QUORUM,
        durable=True,
        arguments=with_replicas(
            {
                "x-dead-letter-exchange": topology.tasks_exchange,
                "x-dead-letter-routing-key": RUN_KEY,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
            settings,
        ),
    )


async def declare_topology(broker: RabbitBroker, topology: Topology, settings: Settings) -> None:
    """Declare and bind exchanges and queues: a publish is routable before any worker runs."""
    dead_x = await broker.declare_exchange(dead_exchange(topology))
    dead_q = await broker.declare_queue(dead_queue(topology, settings))
    await dead_q.bind(dead_x)
    await broker.declare_queue(parked_queue(topology, settings))
    tasks_x = await broker.declare_exchange(tasks_exchange(topology))
    tasks_q = await broker.declare_queue(tasks_queue(topology, settings))
    await tasks_q.bind(tasks_x, routing_key=RUN_KEY)
    high_q = await broker.declare_queue(tasks_queue(topology, settings, high=True))
    await high_q.bind(tasks_x, routing_key=HIGH_RUN_KEY)
    await broker.declare_exchange(control_exchange(topology))
    for band_s in DELAY_BUCKETS_S:
        await broker.declare_queue(delay_queue(topology, band_s, settings))


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


async def connect_first(
    amqp_url: str, *, timeout_s: float = 10.0
) -> aio_pika.abc.AbstractConnection:
    """A plain (not robust) connection to the first of `amqp_url`'s addresses that answers: for
    one-off administration, tests and benchmarks."""
    failure: Exception | None = None
    for address in parse_amqp_addresses(amqp_url):
        try:
            return await aio_pika.connect(address, timeout=timeout_s)
        except Exception as exc:  # refused, timed out, or a node still booting
            failure = exc
    assert failure is not None
    raise failure


async def delete_topology(amqp_url: str, topology: Topology) -> None:
    """Delete every queue and exchange of a deployment's namespace, with what they hold: for
    tests and benchmarks that made one of their own, or a deployment that is retired."""
    connection = await connect_first(amqp_url)
    async with connection:
        delay_queues = [
            name
            for band_s in DELAY_BUCKETS_S
            for name in (topology.delay_queue(band_s), topology.classic_delay_queue(band_s))
        ]
        queues = (
            topology.tasks_queue,
            topology.high_tasks_queue,
            topology.dead_queue,
            topology.parked_queue,
        )
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
