"""The worker's composition root: settings → store, broker → subscribers and heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitMessage, RabbitQueue
from pydantic import ValidationError

from services.worker.heartbeat import heartbeat_forever
from services.worker.runner import Runner
from shared.broker import (
    control_exchange,
    declare_topology,
    make_broker,
    tasks_exchange,
    tasks_queue,
)
from shared.messages import CancelTask, RunTask
from shared.registry import Registry, load_registry
from shared.service import TaskService
from shared.settings import Settings
from shared.store import open_store
from shared.topology import Topology

log = logging.getLogger(__name__)


class Worker:
    """One worker process's parts; `start()` begins consuming, `stop()` ends it."""

    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry or load_registry(settings.task_modules)
        self.topology = Topology(settings.namespace)
        self.store = open_store(settings)
        self.broker = make_broker(settings, logger=None)
        self.service = TaskService(self.store, self.broker, self.registry, settings)
        self.runner = Runner(self.service, self.registry, settings.worker_name)
        self._heartbeat: asyncio.Task[None] | None = None
        self._subscribe()

    def _subscribe(self) -> None:
        @self.broker.subscriber(
            tasks_queue(self.topology, self.settings),
            tasks_exchange(self.topology),
            channel=Channel(prefetch_count=self.settings.worker_concurrency),
            ack_policy=AckPolicy.MANUAL,
        )
        async def on_run(message: RabbitMessage) -> None:
            try:
                command = RunTask.model_validate_json(message.body)
            except ValidationError as exc:
                log.error("undecodable command %r: %s; dead-lettering it", message.message_id, exc)
                await message.reject(requeue=False)
                return
            try:
                await self.runner.handle(command)
            except Exception:
                # The outcome could not be stored: give the command back for another try.
                log.exception("task %s could not be recorded; requeueing", command.task_id)
                await message.nack(requeue=True)
                return
            await message.ack()

        control_queue = RabbitQueue(
            f"{self.topology.control_exchange}.{self.settings.worker_name}",
            exclusive=True,
            auto_delete=True,
        )

        @self.broker.subscriber(control_queue, control_exchange(self.topology))
        async def on_control(command: CancelTask) -> None:
            await self.runner.request_cancel(command.task_id)

    async def start(self) -> None:
        """Connect, declare the topology, start consuming and heartbeating."""
        await self.store.ensure_indexes()
        await self.broker.connect()
        await declare_topology(self.broker, self.topology, self.settings)
        await self.broker.start()
        self._heartbeat = asyncio.create_task(
            heartbeat_forever(
                self.store,
                self.settings.worker_name,
                interval_s=self.settings.heartbeat_s,
                concurrency=self.settings.worker_concurrency,
                current_tasks=lambda: sorted(self.runner.running),
            )
        )
        log.info(
            "worker %s consuming %s with concurrency %d",
            self.settings.worker_name,
            self.topology.tasks_queue,
            self.settings.worker_concurrency,
        )

    async def stop(self) -> None:
        """Stop consuming and heartbeating, and close the connections."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self.broker.stop()
        await self.store.close()
