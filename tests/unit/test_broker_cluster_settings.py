"""Broker settings for a cluster: several addresses, heartbeats, and quorum queue replicas."""

from __future__ import annotations

import pytest
from faststream.rabbit import QueueType
from pydantic import ValidationError

from shared.broker import dead_queue, delay_queue, make_broker, parked_queue, tasks_queue
from shared.failover import FailoverBroker, with_heartbeat
from shared.retries import DELAY_BUCKETS_S
from shared.settings import Settings, parse_amqp_addresses
from shared.topology import Topology

NODES = "amqp://u:p@rabbit-1:5672/, amqp://u:p@rabbit-2:5672/ ,amqps://u:p@rabbit-3/"


def test_amqp_url_takes_every_node_in_order() -> None:
    assert parse_amqp_addresses(NODES) == [
        "amqp://u:p@rabbit-1:5672/",
        "amqp://u:p@rabbit-2:5672/",
        "amqps://u:p@rabbit-3/",
    ]
    assert Settings(amqp_url=NODES).amqp_addresses()[1] == "amqp://u:p@rabbit-2:5672/"


@pytest.mark.parametrize("bad", ["", " , ", "rabbit-1:5672", "http://u:secret@rabbit-1/"])
def test_an_amqp_url_that_is_not_a_list_of_amqp_addresses_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(amqp_url=bad)
    assert "secret" not in str(refused.value.errors()[0]["msg"])


def test_every_address_gets_the_heartbeat_unless_it_names_its_own() -> None:
    assert with_heartbeat("amqp://u:p@h:5672/", 2) == "amqp://u:p@h:5672/?heartbeat=2"
    assert with_heartbeat("amqp://u:p@h:5672/?heartbeat=7", 2) == "amqp://u:p@h:5672/?heartbeat=7"


def test_the_broker_is_built_over_every_address() -> None:
    broker = make_broker(Settings(amqp_url=NODES, amqp_heartbeat_s=3), logger=None)
    assert isinstance(broker, FailoverBroker)
    connection_class = broker._connection_kwargs["connection_class"]
    addresses = connection_class.keywords["addresses"]
    assert [a.split("@")[1] for a in addresses] == [
        "rabbit-1:5672/?heartbeat=3",
        "rabbit-2:5672/?heartbeat=3",
        "rabbit-3:5671/?heartbeat=3",
    ]


def quorum_queues(settings: Settings) -> list[dict[str, object]]:
    topology = Topology("t")
    queues = [
        tasks_queue(topology, settings),
        dead_queue(topology, settings),
        parked_queue(topology, settings),
        *(delay_queue(topology, band_s, settings) for band_s in DELAY_BUCKETS_S),
    ]
    arguments = [dict(queue.arguments or {}) for queue in queues]
    assert all(a["x-queue-type"] == QueueType.QUORUM.value for a in arguments)
    return arguments


def test_every_queue_is_a_quorum_queue_with_the_replicas_the_settings_name() -> None:
    for arguments in quorum_queues(Settings(quorum_group_size=3)):
        assert arguments["x-quorum-initial-group-size"] == 3


def test_without_a_replica_count_rabbitmq_chooses() -> None:
    for arguments in quorum_queues(Settings()):
        assert "x-quorum-initial-group-size" not in arguments


def test_a_retry_waits_in_a_quorum_queue_that_dead_letters_it_back_at_least_once() -> None:
    queue = delay_queue(Topology("t"), 4, Settings())
    assert queue.name == "t.retry.4s"
    assert queue.arguments == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "t.tasks",
        "x-dead-letter-routing-key": "run",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
