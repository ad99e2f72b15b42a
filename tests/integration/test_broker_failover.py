"""Several broker addresses against the real RabbitMQ: the first that answers, the next on loss.

The addresses are TCP relays (tests/support/relay.py) in front of the one local broker, so that
a test can take one away (sever it, refuse reconnects) or freeze it (a node that stops answering
without closing anything), as the loss of a cluster node would look from a client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import pytest
from faststream import AckPolicy
from faststream.rabbit import RabbitBroker, RabbitMessage

from services.stack import free_port
from shared.broker import (
    declare_topology,
    make_broker,
    publish_command,
    tasks_exchange,
    tasks_queue,
)
from shared.failover import ConfirmLost, FailoverConnection
from shared.messages import RunTask
from shared.settings import Settings
from shared.topology import RUN_KEY, Topology
from tests.support.relay import TcpRelay

pytestmark = pytest.mark.integration


def address(port: int) -> str:
    return f"amqp://guest:guest@127.0.0.1:{port}/"


@pytest.fixture
async def relays(settings: Settings) -> AsyncIterator[list[TcpRelay]]:
    """Two relays to the session's broker."""
    target = urlsplit(settings.amqp_addresses()[0])
    started = [
        await TcpRelay(target.hostname or "127.0.0.1", target.port or 5672).start()
        for _ in range(2)
    ]
    yield started
    for relay in started:
        await relay.stop()


def connection_of(broker: RabbitBroker) -> FailoverConnection:
    connection = broker._connection
    assert isinstance(connection, FailoverConnection), connection
    return connection


async def publish(broker: RabbitBroker, topology: Topology, task_id: str, **kw: float) -> None:
    await publish_command(
        broker,
        tasks_exchange(topology),
        RunTask(task_id=task_id, name="test.noop"),
        routing_key=RUN_KEY,
        timeout_s=kw.get("timeout_s", 5.0),
        message_id=task_id,
    )


async def test_the_broker_connects_to_the_first_address_that_answers(settings: Settings) -> None:
    # Given a first address nothing listens on, then the real broker
    real = settings.amqp_addresses()[0]
    on_two = settings.model_copy(update={"amqp_url": f"{address(free_port())},{real}"})
    broker = make_broker(on_two, logger=None)
    topology = Topology(settings.namespace)
    try:
        # When it connects
        await asyncio.wait_for(broker.connect(), 30)
        await declare_topology(broker, topology, on_two)
        # Then it is connected to the second, and publishes there with a confirm
        assert connection_of(broker).address.port == urlsplit(real).port
        await publish(broker, topology, "first-answering")
    finally:
        await broker.stop()


async def test_connecting_gives_up_once_every_address_was_refused(settings: Settings) -> None:
    # Given two addresses nothing listens on
    nowhere = settings.model_copy(
        update={"amqp_url": f"{address(free_port())},{address(free_port())}"}
    )
    broker = make_broker(nowhere, logger=None)
    started = time.monotonic()
    # When it connects, then it fails, after trying each once (a reconnect pause between)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(broker.connect(), 30)
    assert time.monotonic() - started < 10
    await broker.stop()


async def test_a_lost_connection_moves_to_the_next_address_and_consuming_resumes(
    settings: Settings, relays: list[TcpRelay]
) -> None:
    # Given a broker client on two addresses, consuming the tasks queue through the first
    first, second = relays
    on_two = settings.model_copy(
        update={"amqp_url": f"{address(first.port)},{address(second.port)}"}
    )
    topology = Topology(settings.namespace)
    broker = make_broker(on_two, logger=None)
    received: list[str] = []

    @broker.subscriber(
        tasks_queue(topology, on_two), tasks_exchange(topology), ack_policy=AckPolicy.MANUAL
    )
    async def on_run(message: RabbitMessage) -> None:
        received.append(message.message_id or "")
        await message.ack()

    try:
        await asyncio.wait_for(broker.start(), 30)
        await declare_topology(broker, topology, on_two)
        await publish(broker, topology, "before")
        await until(lambda: "before" in received)
        assert (first.accepted, second.accepted) == (1, 0)

        # When the first address goes away for good (connections cut, reconnects refused)
        await first.stop()

        # Then publishing fails loudly until the client is on the second, and then works
        deadline = time.monotonic() + 20
        while True:
            try:
                await publish(broker, topology, "after")
                break
            except Exception:
                assert time.monotonic() < deadline, "never published through the second address"
                await asyncio.sleep(0.2)
        # And the consumer resumed there
        await until(lambda: "after" in received)
        assert second.accepted == 1
        assert connection_of(broker).address.port == second.port
    finally:
        await broker.stop()


async def test_a_publish_whose_connection_stops_answering_raises_confirm_lost(
    settings: Settings, relays: list[TcpRelay]
) -> None:
    # Given a broker client with quick heartbeats, through a relay
    relay = relays[0]
    quick = settings.model_copy(update={"amqp_url": address(relay.port), "amqp_heartbeat_s": 1})
    topology = Topology(settings.namespace)
    broker = make_broker(quick, logger=None)
    try:
        await broker.connect()
        await declare_topology(broker, topology, quick)
        # When the broker stops answering (nothing closes) while a publish waits for its confirm
        relay.freeze()
        publishing = asyncio.create_task(publish(broker, topology, "frozen", timeout_s=60))
        # Then, once the heartbeat finds the connection dead, the publish fails with an error
        # its caller handles (the api answers 503, the relay publishes again), not a 500
        with pytest.raises(ConfirmLost):
            await asyncio.wait_for(publishing, 30)
    finally:
        relay.thaw()
        await broker.stop()


async def until(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    """Wait until `condition()` holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
