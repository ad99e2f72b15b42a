"""Sending commands to workers: `RunTask` to the tasks queue (now, or held by a delay queue),
`CancelTask` to every worker. The broker side of every verb that queues a task."""

from __future__ import annotations

import logging
from datetime import timedelta

from faststream.rabbit import RabbitBroker, RabbitQueue

from shared import tracing
from shared.broker import control_exchange, publish_command, tasks_exchange
from shared.lifecycle import FIRST_VERSION
from shared.messages import CancelTask, RunTask, TaskSnapshot
from shared.retries import bucket_for
from shared.store.tasks import TaskStore
from shared.topology import HIGH_RUN_KEY, RUN_KEY, Topology

log = logging.getLogger(__name__)


class Commands:
    """Publishes commands with publisher confirms, and clears a task's outbox mark once its
    `RunTask` is confirmed."""

    def __init__(
        self, broker: RabbitBroker, tasks: TaskStore, topology: Topology, *, timeout_s: float
    ) -> None:
        self.broker = broker
        self.tasks = tasks
        self.topology = topology
        self.timeout_s = timeout_s

    async def run(
        self,
        task_id: str,
        name: str,
        *,
        delay_s: float = 0,
        snapshot: TaskSnapshot | None = None,
        priority: int = 0,
        version: int = FIRST_VERSION,
    ) -> None:
        """Publish the task's `RunTask` (after `delay_s`, held by the broker); raises if the
        broker did not confirm it. Then its outbox mark is cleared. A new task's command carries
        its `snapshot` (of the task at `version`), which spares its worker a read."""
        command = RunTask(
            task_id=task_id, name=name, snapshot=snapshot, priority=priority, version=version
        )
        if delay_s > 0:
            queue = self.topology.delay_queue(bucket_for(delay_s))
            with tracing.publishing(queue, "RunTask", task_id) as headers:
                await self.broker.publish(
                    command,
                    queue=RabbitQueue(queue),
                    persist=True,
                    mandatory=True,
                    expiration=timedelta(seconds=delay_s),
                    timeout=self.timeout_s,
                    message_id=task_id,
                    headers=headers,
                )
        else:
            await publish_command(
                self.broker,
                tasks_exchange(self.topology),
                command,
                routing_key=HIGH_RUN_KEY if priority > 0 else RUN_KEY,
                timeout_s=self.timeout_s,
                message_id=task_id,
            )
        self.tasks.dispatched(task_id)

    async def cancel(self, task_id: str) -> None:
        """Tell every worker to stop `task_id` at its next checkpoint. Best effort: the worker
        also learns of `canceling` from its next write to the task."""
        try:
            command = CancelTask(task_id=task_id)
            await publish_command(
                self.broker,
                control_exchange(self.topology),
                command,
                timeout_s=self.timeout_s,
                message_id=command.message_id,
            )
        except Exception as exc:
            log.warning("cancel broadcast for task %s failed: %r", task_id, exc)
