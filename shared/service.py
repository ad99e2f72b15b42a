"""Submitting and canceling tasks: the one place both the API and the workers do it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from faststream.rabbit import RabbitBroker
from pydantic import ValidationError

from shared.broker import control_exchange, publish_command, tasks_exchange
from shared.ids import new_task_id
from shared.lifecycle import FINAL_STATES, TaskState, utcnow
from shared.messages import CancelTask, RunTask
from shared.registry import Registry
from shared.settings import Settings
from shared.store import Doc, TaskStore
from shared.task import UiHints, new_task_doc
from shared.topology import RUN_KEY, Topology

log = logging.getLogger(__name__)


class InvalidSubmission(ValueError):
    """The task type is unknown or its arguments do not validate; `errors` says where."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid task submission")
        self.errors = errors


class BrokerUnavailable(RuntimeError):
    """The broker did not take the command; nothing was left behind, try again later."""


class AlreadyFinished(RuntimeError):
    """The task is already in a final state."""

    def __init__(self, doc: Doc) -> None:
        super().__init__(f"task {doc['_id']} already {doc['state']}")
        self.doc = doc


@dataclass
class TaskService:
    """Submit and cancel tasks against one store and one broker."""

    store: TaskStore
    broker: RabbitBroker
    registry: Registry
    settings: Settings

    @property
    def topology(self) -> Topology:
        """Broker names of this deployment."""
        return Topology(self.settings.namespace)

    def validate(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """The validated arguments for task type `name`, in their stored (JSON) form."""
        if name not in self.registry:
            known = ", ".join(t.name for t in self.registry)
            raise InvalidSubmission(
                [{"loc": ["name"], "msg": f"unknown task type {name!r}; known: {known}"}]
            )
        try:
            model = self.registry.get(name).args_model.model_validate(args)
        except ValidationError as exc:
            raise InvalidSubmission(
                [
                    {"loc": ["args", *err["loc"]], "msg": err["msg"], "type": err["type"]}
                    for err in exc.errors(include_url=False, include_context=False)
                ]
            ) from None
        return model.model_dump(mode="json")

    async def submit(
        self,
        name: str,
        args: dict[str, Any],
        *,
        owner: str,
        ui: UiHints | None = None,
        metadata: dict[str, Any] | None = None,
        parent_id: str | None = None,
    ) -> Doc:
        """Store a task as `waiting` and queue its command; return the stored task.

        If the broker does not confirm the command, the task is removed again and
        `BrokerUnavailable` raised: a caller that got a task back can count on it running.
        """
        valid_args = self.validate(name, args)
        task_id = new_task_id()
        doc = new_task_doc(
            task_id=task_id,
            name=name,
            args=valid_args,
            owner=owner,
            at=utcnow(),
            ui=ui,
            metadata=metadata,
            parent_id=parent_id,
        )
        await self.store.insert(doc, parent_id=parent_id)
        command = RunTask(task_id=task_id, name=name)
        try:
            await publish_command(
                self.broker,
                tasks_exchange(self.topology),
                command,
                routing_key=RUN_KEY,
                timeout_s=self.settings.publish_timeout_s,
                message_id=task_id,
            )
        except Exception as exc:
            log.warning("publish of task %s failed: %r; removing it", task_id, exc)
            await self.store.discard_unqueued(task_id, parent_id=parent_id)
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc
        return doc

    async def cancel(self, task_id: str) -> Doc | None:
        """Cancel a task: `waiting` ends `canceled` now; `running` becomes `canceling`.

        Returns the task after the change (or as it is, if already `canceling`), None if it
        does not exist; raises AlreadyFinished for a finished task.
        """
        # Each step is a compare-and-set; losing one means the state moved on, so look again.
        for _ in range(5):
            doc = await self.store.transition(
                task_id, [TaskState.WAITING], TaskState.CANCELED, reason="canceled before it ran"
            )
            if doc is not None:
                return doc
            doc = await self.store.transition(
                task_id, [TaskState.RUNNING], TaskState.CANCELING, reason="cancel requested"
            )
            if doc is not None:
                await self._broadcast_cancel(task_id)
                return doc
            current = await self.store.get(task_id)
            if current is None:
                return None
            if current["state"] in FINAL_STATES:
                raise AlreadyFinished(current)
            if current["state"] == TaskState.CANCELING:
                return current
        raise RuntimeError(f"cancel of task {task_id} kept losing races")

    async def _broadcast_cancel(self, task_id: str) -> None:
        # Best effort: the worker also learns of `canceling` from its next write to the task.
        try:
            command = CancelTask(task_id=task_id)
            await publish_command(
                self.broker,
                control_exchange(self.topology),
                command,
                timeout_s=self.settings.publish_timeout_s,
                message_id=command.message_id,
            )
        except Exception as exc:
            log.warning("cancel broadcast for task %s failed: %r", task_id, exc)
