"""The AsyncAPI document of the broker topology, rendered by FastStream from the real objects.

The consuming side is the worker's own broker (`services.worker.app.Worker` builds its subscribers
on it). The publishing side is `shared.service.TaskService`, which publishes with
`broker.publish(...)` rather than FastStream publisher objects, so the publishers are declared
here, from the same exchange and queue factories (`shared.broker`): tests/unit/test_contracts.py
runs TaskService's publishes and checks each lands on a channel of this document.

Two worker subscribers take the raw message (they ack, reject and dead-letter by hand), so
FastStream sees no body type for them; `_consumed` names it, with what each queue is for.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from faststream.rabbit import RabbitBroker, RabbitQueue
from faststream.specification import AsyncAPI
from pydantic import BaseModel

from services.contracts.defaults import default_settings
from services.worker.app import Worker
from shared.broker import control_exchange, delay_queue, tasks_exchange
from shared.messages import CancelTask, RunTask
from shared.registry import Registry
from shared.retries import DELAY_BUCKETS_S
from shared.settings import Settings
from shared.topology import HIGH_RUN_KEY, RUN_KEY, Topology

#: Stands for the worker's name in the names of per-worker queues.
WORKER_NAME = "WORKER_NAME"
#: FastStream's schema for a handler that declares no body.
_NO_BODY = "#/components/schemas/EmptyPayload"

DESCRIPTION = """\
The RabbitMQ topology of tasklight (namespace `tasklight`, the default; every name starts with
`TASKLIGHT_NAMESPACE`). The api publishes a `RunTask` command per submission to the direct
exchange `tasklight.tasks` (persistent, mandatory, publisher-confirmed); workers consume it from
the durable quorum queue `tasklight.tasks`, which dead-letters a command delivered
`TASKLIGHT_DELIVERY_LIMIT` times to the fanout exchange `tasklight.dead`. Retried commands wait
out their delay in the quorum queues `tasklight.retry.<band>s` and expire back (at least once) to
`tasklight.tasks`. Cancel requests
are broadcast on the fanout exchange `tasklight.control` to one exclusive queue per worker.
Every message body is JSON; its `message_id` is the task id for `RunTask`.
"""


def _consumed(topology: Topology, settings: Settings) -> dict[str, tuple[type[BaseModel], str]]:
    """Queue name → (body type, description) of each worker subscriber; the body type stands in
    where the subscriber takes the raw message."""
    return {
        topology.tasks_queue: (
            RunTask,
            "Workers take `RunTask` commands here (prefetch: `TASKLIGHT_WORKER_PREFETCH`) and "
            "acknowledge each only once the task's outcome is stored. A durable quorum queue: a "
            f"command delivered `TASKLIGHT_DELIVERY_LIMIT` times ({settings.delivery_limit}) is "
            f"dead-lettered to `{topology.dead_exchange}`; an undecodable one is rejected there "
            "at once.",
        ),
        topology.high_tasks_queue: (
            RunTask,
            "High-priority (`priority: 1`) `RunTask` commands, bound with routing key "
            f"`{HIGH_RUN_KEY}`: a quorum queue like the tasks queue (RabbitMQ's quorum queues "
            "have no message priorities before 4.0), consumed by every worker on a channel of "
            "its own; a worker's next free slot goes to these first.",
        ),
        topology.dead_queue: (
            RunTask,
            "Commands that could not be run, kept for inspection; a worker fails each one's "
            "task (`error.type: dead_lettered`, with RabbitMQ's `x-first-death-reason`).",
        ),
        f"{topology.control_exchange}.{WORKER_NAME}": (
            CancelTask,
            "One exclusive, auto-deleted queue per worker, bound to the control exchange: "
            "every worker hears every cancel and stops the task if it runs it.",
        ),
    }


def declare_publishers(broker: RabbitBroker, topology: Topology, settings: Settings) -> None:
    """Declare, for the document, the publishes `TaskService` makes."""
    broker.publisher(
        exchange=tasks_exchange(topology),
        routing_key=RUN_KEY,
        persist=True,
        mandatory=True,
        schema=RunTask,
        title=f"{topology.tasks_exchange}:{RUN_KEY}",
        description="Queue a task: one `RunTask` per submission (from the api, the outbox "
        "relay, or a worker starting child tasks or retrying at once).",
    )
    broker.publisher(
        exchange=control_exchange(topology),
        persist=True,
        mandatory=True,
        schema=CancelTask,
        title=topology.control_exchange,
        description="Broadcast a cancel to every worker (best effort: a worker also learns "
        "of `canceling` from its next write to the task).",
    )
    broker.publisher(
        RabbitQueue(topology.parked_queue),
        persist=True,
        mandatory=True,
        schema=RunTask,
        title=topology.parked_queue,
        description="A dead-lettered command whose task the database refused to record as "
        "failed, `TASKLIGHT_DEAD_LETTER_ATTEMPTS` tries in all (a try it did not answer counts "
        "for none), is parked here (with its headers, plus `x-tasklight-parked-because`) for "
        "an operator, its task failed by one smaller write where the database takes that; "
        "nothing consumes it.",
    )
    broker.publisher(
        exchange=tasks_exchange(topology),
        routing_key=HIGH_RUN_KEY,
        persist=True,
        mandatory=True,
        schema=RunTask,
        title=f"{topology.tasks_exchange}:{HIGH_RUN_KEY}",
        description="Queue a high-priority task (`priority: 1`): it goes to the high-priority "
        "queue, which every worker takes from first.",
    )
    for band_s in DELAY_BUCKETS_S:
        queue = delay_queue(topology, band_s, settings)
        broker.publisher(
            RabbitQueue(queue.name),
            persist=True,
            mandatory=True,
            schema=RunTask,
            title=queue.name,
            description=f"A retried command waits here (delays of {band_s} s up to twice "
            f"that) until its per-message expiration dead-letters it back to "
            f"`{topology.tasks_exchange}` with routing key `{RUN_KEY}`.",
        )


def broker_document(settings: Settings | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the worker's subscribers and TaskService's publishes."""
    settings = settings or default_settings(worker_name=WORKER_NAME)
    worker = Worker(settings, Registry())
    topology = worker.topology
    declare_publishers(worker.broker, topology, settings)
    specification = AsyncAPI(
        worker.broker,
        title="tasklight broker topology",
        version="1.0.0",
        description=DESCRIPTION,
        schema_version="3.0.0",
    ).to_specification()
    document: dict[str, Any] = specification.to_jsonable()
    _describe_consumers(document, _consumed(topology, settings))
    return document


def _describe_consumers(
    document: dict[str, Any], consumed: dict[str, tuple[type[BaseModel], str]]
) -> None:
    """Give the raw-message subscribers their body type and description."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for channel in document.get("channels", {}).values():
        queue = channel.get("bindings", {}).get("amqp", {}).get("queue", {}).get("name")
        if queue not in consumed:
            continue
        model, description = consumed[queue]
        channel["description"] = description
        schemas.setdefault(model.__name__, model.model_json_schema())
        for ref in channel.get("messages", {}).values():
            message = components["messages"][unquote(ref["$ref"].rsplit("/", 1)[-1])]
            if message["payload"] == {"$ref": _NO_BODY}:
                message["payload"] = {"$ref": f"#/components/schemas/{model.__name__}"}
    if _NO_BODY not in json.dumps(document):
        schemas.pop(_NO_BODY.rsplit("/", 1)[-1], None)
