"""The worker's composition root: settings → store, broker → subscribers, heartbeat, janitor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Annotated, Any

from faststream import AckPolicy
from faststream._internal.context import Context
from faststream.rabbit import Channel, RabbitMessage, RabbitQueue
from faststream.rabbit.message import RabbitMessage as RabbitMessageClass
from pydantic import ValidationError

from services.worker.dead_letters import DeadLetter, DeadLetters, Settle
from services.worker.heartbeat import heartbeat_forever
from services.worker.janitor import Janitor
from services.worker.lease import LeaseClock
from services.worker.runner import Fenced, NotTaken, Runner
from shared import tracing
from shared.broker import (
    control_exchange,
    dead_queue,
    declare_topology,
    make_broker,
    parked_queue,
    tasks_exchange,
    tasks_queue,
)
from shared.commands import Commands
from shared.logs import bound
from shared.messages import CancelTask, RunTask
from shared.probes import ProbeServer
from shared.registry import Registry, load_registry
from shared.runs import Runs
from shared.settings import Settings
from shared.store import open_store
from shared.submission import Submissions
from shared.topology import Topology

log = logging.getLogger(__name__)


class MessageContext(Context):
    """FastStream's `Context`, resolved on the event loop. fast_depends runs a resolver that is
    a plain function in a worker thread: for `RabbitMessage`, a thread hop on every delivery
    (measured: about a tenth of the worker's CPU)."""

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """What `Context.use` gives, without the thread."""
        return super().use(**kwargs)


#: The delivered message, as a handler's parameter.
Delivered = Annotated[RabbitMessageClass, MessageContext("message")]


class Delivery:
    """One delivered command, settled exactly once (ack, or nack for another try)."""

    def __init__(self, message: RabbitMessage) -> None:
        self.message = message
        self.settled = False

    async def ack(self) -> None:
        """Acknowledge, unless already settled."""
        if not self.settled:
            self.settled = True
            await self.message.ack()

    async def nack(self) -> None:
        """Give the command back to the queue, unless already settled."""
        if not self.settled:
            self.settled = True
            await self.message.nack(requeue=True)


class Worker:
    """One worker process's parts; `start()` begins consuming, `stop()` ends it gracefully."""

    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry or load_registry(
            settings.task_modules, builtin_tasks=settings.builtin_tasks
        )
        self.topology = Topology(settings.namespace)
        self.store = open_store(settings)
        self.broker = make_broker(
            settings, logger=None, graceful_timeout=settings.shutdown_grace_s + 5
        )
        self.commands = Commands(
            self.broker, self.store.tasks, self.topology, timeout_s=settings.publish_timeout_s
        )
        self.runs = Runs(self.store.tasks, self.commands, outbox_grace_s=settings.outbox_grace_s)
        self.submissions = Submissions(
            self.store.tasks, self.store.idempotency, self.commands, self.registry, settings
        )
        self.runner = Runner(
            self.runs,
            self.submissions,
            self.registry,
            settings.worker_name,
            cancel_grace_s=settings.cancel_grace_s,
            ack_deadline_s=settings.ack_deadline_s,
            concurrency=settings.worker_concurrency,
        )
        self.janitor = Janitor(self.store, self.runs, self.commands, self.registry, settings)
        self.lease = LeaseClock(settings.lease_s, settings.lease_renew_s)
        self.runner.lease = self.lease
        self.runner.take_over = lambda task_id, ours_unrun: self.janitor.take_over(
            task_id, ours_unrun=ours_unrun
        )
        self.dead_letters = DeadLetters(
            self.runs,
            park=self._park,
            until_database_answers=self._until_database_answers,
            attempts=settings.dead_letter_attempts,
            backoff_s=settings.dead_letter_backoff_s,
        )
        self.janitor.adopt = self.runner.adopt
        self.janitor.in_hand = self.runner.has_in_hand
        self.runner.give_up = self.janitor.give_up
        self.probes = ProbeServer(
            settings.worker_host,
            settings.worker_port,
            {"database": self.store.ping, "broker": self._broker_answers},
        )
        self._background: list[asyncio.Task[None]] = []
        self._subscribe()

    def _subscribe(self) -> None:
        self.tasks_subscriber = self.broker.subscriber(
            tasks_queue(self.topology, self.settings),
            tasks_exchange(self.topology),
            channel=Channel(prefetch_count=self.settings.prefetch()),
            ack_policy=AckPolicy.MANUAL,
        )
        # High-priority commands: a queue and a channel of their own, so that one is delivered
        # however many normal ones wait; the runner's slots then take it first.
        self.high_tasks_subscriber = self.broker.subscriber(
            tasks_queue(self.topology, self.settings, high=True),
            tasks_exchange(self.topology),
            channel=Channel(prefetch_count=self.settings.prefetch()),
            ack_policy=AckPolicy.MANUAL,
        )

        @self.high_tasks_subscriber
        @self.tasks_subscriber
        async def on_run(message: Delivered) -> None:
            delivery = Delivery(message)
            try:
                command = RunTask.model_validate_json(message.body)
            except ValidationError as exc:
                log.error("undecodable command %r: %s; dead-lettering it", message.message_id, exc)
                await message.reject(requeue=False)
                return
            with tracing.handling(
                message.headers,
                task_id=command.task_id,
                task_type=command.name,
                worker=self.settings.worker_name,
                source=self.topology.tasks_queue,
            ):
                try:
                    await self.runner.handle(command, delivery.ack)
                except NotTaken:
                    await delivery.nack()
                    return
                except Fenced:
                    # Nothing written; the task's command is queued again by whoever takes it.
                    await delivery.ack()
                    return
                except Exception:
                    # The outcome could not be stored: give the command back for another try,
                    # once the database answers (each requeue counts towards the delivery limit).
                    log.exception("task %s could not be recorded; requeueing", command.task_id)
                    await self._until_database_answers()
                    await delivery.nack()
                    return
            await delivery.ack()

        @self.broker.subscriber(
            dead_queue(self.topology, self.settings), ack_policy=AckPolicy.MANUAL
        )
        async def on_dead(message: Delivered) -> None:
            with bound(worker=self.settings.worker_name):
                letter = DeadLetter(message.body, message.message_id, message.headers or {})
                if await self.dead_letters.settle(letter) is Settle.REQUEUE:
                    await message.nack(requeue=True)
                else:
                    await message.ack()

        control_queue = RabbitQueue(
            f"{self.topology.control_exchange}.{self.settings.worker_name}",
            exclusive=True,
            auto_delete=True,
        )

        @self.broker.subscriber(control_queue, control_exchange(self.topology))
        async def on_control(command: CancelTask) -> None:
            await self.runner.request_cancel(command.task_id)

    async def _until_database_answers(self, limit_s: float = 60.0) -> None:
        """Wait, with backoff, until the database answers a ping (at most `limit_s`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        delay_s = 0.1
        while loop.time() < deadline:
            try:
                await self.store.ping()
                return
            except Exception:
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    async def _park(self, letter: DeadLetter, why: str) -> None:
        """Publish a dead letter to the parked queue, with why it was parked."""
        headers = {**letter.headers, "x-tasklight-parked-because": why}
        await self.broker.publish(
            letter.body,
            queue=parked_queue(self.topology, self.settings),
            persist=True,
            mandatory=True,
            message_id=letter.message_id,
            headers=headers,
            timeout=self.settings.publish_timeout_s,
        )

    async def start(self) -> None:
        """Connect, declare the topology, start consuming, heartbeating and sweeping."""
        await self._start_probes()
        await self.store.require_schema()
        await self.janitor.reclaim_own()
        await self.broker.connect()
        # Subscribers first: FastStream keeps the first declaration of a queue and consumes on
        # its channel. Declared by `declare_topology` first, the tasks queue would be consumed on
        # the default channel, which has no prefetch limit: `worker_concurrency` would not hold,
        # and one worker could take every queued command while the others idle.
        await self.broker.start()
        await declare_topology(self.broker, self.topology, self.settings)
        with bound(worker=self.settings.worker_name):  # the lines they log name this worker
            self._background = [
                asyncio.create_task(
                    heartbeat_forever(
                        self.store,
                        self.settings.worker_name,
                        lease=self.lease,
                        concurrency=self.settings.worker_concurrency,
                        current_tasks=lambda: sorted(self.runner.running),
                        answered=self.janitor.database_answered,
                    )
                ),
                asyncio.create_task(self.janitor.run_forever()),
                asyncio.create_task(self.janitor.wake_forever()),
                asyncio.create_task(self.runner.fence_forever(self.settings.lease_renew_s / 4)),
            ]
        log.info(
            "worker %s (pid %d on %s) consuming %s with concurrency %d",
            self.settings.worker_name,
            os.getpid(),
            socket.gethostname(),
            self.topology.tasks_queue,
            self.settings.worker_concurrency,
        )

    async def _start_probes(self) -> None:
        # Not fatal: a worker without probes still runs tasks (and an orchestrator that probes
        # it restarts it, which shows); several workers on one host need port 0 or a port each.
        try:
            await self.probes.start()
        except OSError as exc:
            log.error(
                "worker probes not served: cannot listen on %s:%d (%s); set TASKLIGHT_WORKER_PORT",
                self.settings.worker_host,
                self.settings.worker_port,
                exc,
            )

    async def _broker_answers(self) -> bool:
        return await self.broker.ping(timeout=2.0)

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop taking commands, let running tasks finish within the grace time, hand the rest
        back to the queue, then close. Nothing is acknowledged without its outcome stored."""
        grace_s = self.settings.shutdown_grace_s if grace_s is None else grace_s
        # FastStream's stop first refuses new deliveries (they stay unacknowledged, and go back
        # to the queue when the channel closes), then waits for those in progress; meanwhile
        # the runner gives them the grace time and hands back what is still running.
        unsubscribing = asyncio.gather(
            self.tasks_subscriber.stop(), self.high_tasks_subscriber.stop()
        )
        await self.runner.shutdown(grace_s)
        await unsubscribing
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.store.workers.remove(self.settings.worker_name)
        await self.broker.stop()
        await self.store.close()
        await self.probes.stop()
