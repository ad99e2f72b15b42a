"""Submitting, canceling and ending tasks: the one place the API, workers and janitor do it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from faststream.rabbit import RabbitBroker, RabbitQueue
from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from shared import metrics, tracing
from shared.broker import control_exchange, publish_command, tasks_exchange
from shared.ids import new_task_id
from shared.jsonlimits import violations
from shared.lifecycle import FINAL_STATES, TaskState, utcnow
from shared.messages import CancelTask, RunTask
from shared.registry import Registry
from shared.retries import bucket_for
from shared.settings import Settings
from shared.store import Doc, TaskStore
from shared.task import UiHints, new_task_doc
from shared.topology import RUN_KEY, Topology

log = logging.getLogger(__name__)

#: Seconds after which a pending Idempotency-Key whose request never finished may be reused.
ABANDONED_KEY_S = 60


class InvalidSubmission(ValueError):
    """The task type is unknown or its arguments do not validate; `errors` says where."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid task submission")
        self.errors = errors


class ArgsTooLarge(ValueError):
    """The task's arguments, as JSON, are larger than `max_args_bytes`."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"args: {size} bytes as JSON, more than the {limit} allowed")
        self.size = size
        self.limit = limit


class RateLimited(RuntimeError):
    """The user submitted `submit_rate_per_minute` tasks in the last minute already."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(f"more than {limit} submissions in one minute; retry in {retry_after_s} s")
        self.limit = limit
        self.retry_after_s = retry_after_s


class BrokerUnavailable(RuntimeError):
    """The broker did not take the command; nothing was left behind, try again later."""


class AlreadyFinished(RuntimeError):
    """The task is already in a final state."""

    def __init__(self, doc: Doc) -> None:
        super().__init__(f"task {doc['_id']} already {doc['state']}")
        self.doc = doc


class IdempotencyKeyReused(ValueError):
    """The Idempotency-Key was used before with another request body."""


class IdempotencyKeyInFlight(RuntimeError):
    """A request with the same Idempotency-Key is being processed right now."""


def submission_digest(
    name: str, args: dict[str, Any], ui: UiHints | None, metadata: dict[str, Any] | None
) -> str:
    """What identifies a request body under an Idempotency-Key."""
    body = {"name": name, "args": args, "ui": ui and ui.model_dump(), "metadata": metadata}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class NewTask:
    """One task of a batch submission."""

    name: str
    args: dict[str, Any]
    ui: UiHints | None = None
    metadata: dict[str, Any] | None = None


@dataclass
class Submitted:
    """A submission's task, and whether it is the answer to an earlier identical request."""

    doc: Doc
    replayed: bool = False


@dataclass
class TaskService:
    """Submit, cancel, requeue and end tasks against one store and one broker."""

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
        size = len(json.dumps(args, separators=(",", ":"), default=str))
        if size > self.settings.max_args_bytes:
            raise ArgsTooLarge(size, self.settings.max_args_bytes)
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

    async def check_rate(self, owner: str, count: int = 1) -> None:
        """Raise `RateLimited` if `count` more submissions would exceed `owner`'s per-minute
        allowance.

        A sliding minute counted from the tasks themselves (their ids are creation times), so
        every api replica sees the same count and a submission costs no extra write. Child tasks
        are not counted: a parent's spawns are the worker's doing, not the user's. Concurrent
        requests may overshoot the limit by as many as are in flight at once.
        """
        limit = self.settings.submit_rate_per_minute
        if limit == 0:
            return
        if count > limit:
            raise RateLimited(limit, 60)
        window_start = utcnow() - timedelta(minutes=1)
        if await self.store.submitted_since(owner, window_start, limit) + count <= limit:
            return
        # Over: the first submission counted leaves the window first (read only now).
        first = await self.store.first_submitted_since(owner, window_start)
        leaves_at = (first or utcnow()) + timedelta(minutes=1)
        raise RateLimited(limit, max(1, math.ceil((leaves_at - utcnow()).total_seconds())))

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

        The task is stored with its outbox mark (`dispatch_due_at`). If the broker confirms the
        command, the mark is removed; if it refuses it, the task is removed again and
        `BrokerUnavailable` raised; if this process dies in between, the relay publishes the
        command later. So a caller that got a task back can count on it reaching a final state.
        """
        valid_args = self.validate(name, args)
        errors = violations(valid_args, ["args"]) + violations(metadata, ["metadata"])
        if errors:
            raise InvalidSubmission(errors)
        task_id = new_task_id()
        now = utcnow()
        doc = new_task_doc(
            task_id=task_id,
            name=name,
            args=valid_args,
            owner=owner,
            at=now,
            ui=ui,
            metadata=metadata,
            parent_id=parent_id,
        )
        due = now + timedelta(seconds=self.settings.outbox_grace_s)
        await self.store.insert(doc, parent_id=parent_id, dispatch_due_at=due)
        try:
            await self.dispatch(task_id, name)
        except Exception as exc:
            log.warning("publish of task %s failed: %r; removing it", task_id, exc)
            await self.store.discard_unqueued(task_id, parent_id=parent_id)
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc
        metrics.submitted([name])
        return doc

    async def submit_many(self, items: list[NewTask], *, owner: str) -> list[Doc]:
        """Store several top-level tasks in one write and queue their commands together.

        All are validated first: one invalid item refuses the whole batch (`InvalidSubmission`,
        each error's `loc` starting with the item's index). If the broker confirms none of the
        commands, nothing is kept and `BrokerUnavailable` is raised; commands it did confirm
        are never taken back, so when only some fail, every task is kept and the relay
        publishes the rest after `outbox_grace_s`: a batch is accepted whole or not at all.
        """
        docs: list[Doc] = []
        errors: list[dict[str, Any]] = []
        now = utcnow()
        due = now + timedelta(seconds=self.settings.outbox_grace_s)
        for index, item in enumerate(items):
            try:
                valid_args = self.validate(item.name, item.args)
                found = violations(valid_args, ["args"]) + violations(item.metadata, ["metadata"])
                if found:
                    raise InvalidSubmission(found)
            except InvalidSubmission as exc:
                errors += [{**err, "loc": [index, *err["loc"]]} for err in exc.errors]
                continue
            doc = new_task_doc(
                task_id=new_task_id(),
                name=item.name,
                args=valid_args,
                owner=owner,
                at=now,
                ui=item.ui,
                metadata=item.metadata,
            )
            docs.append(doc)
        if errors:
            raise InvalidSubmission(errors)
        await self.store.insert_many(docs, dispatch_due_at=due)
        outcomes = await asyncio.gather(
            *(self.dispatch(doc["_id"], doc["name"]) for doc in docs), return_exceptions=True
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures and len(failures) == len(docs):
            log.warning("publish of a batch of %d failed: %r; removing it", len(docs), failures[0])
            await self.store.discard_unqueued_many([doc["_id"] for doc in docs])
            raise BrokerUnavailable(str(failures[0]) or type(failures[0]).__name__)
        if failures:
            log.warning("%d of %d commands not confirmed; the relay will", len(failures), len(docs))
        metrics.submitted(doc["name"] for doc in docs)
        return docs

    async def submit_once(
        self,
        key: str,
        name: str,
        args: dict[str, Any],
        *,
        owner: str,
        ui: UiHints | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Submitted:
        """`submit` under an Idempotency-Key: the same key and body give the same task."""
        self.validate(name, args)
        digest = submission_digest(name, args, ui, metadata)
        key_id = {"owner": owner, "key": key}
        now = utcnow()
        record = {"_id": key_id, "digest": digest, "task_id": None, "created_at": now}
        try:
            await self.store.idempotency.insert_one(record)
        except DuplicateKeyError:
            existing = await self.store.idempotency.find_one({"_id": key_id})
            if existing is None:  # expired in between: a fresh start is right
                return await self.submit_once(
                    key, name, args, owner=owner, ui=ui, metadata=metadata
                )
            if existing["digest"] != digest:
                raise IdempotencyKeyReused(key) from None
            if existing["task_id"] is not None:
                done = await self.store.get(existing["task_id"])
                if done is not None:
                    return Submitted(done, replayed=True)
            age_s = (now - existing["created_at"]).total_seconds()
            if existing["task_id"] is None and age_s < ABANDONED_KEY_S:
                raise IdempotencyKeyInFlight(key) from None
            # The first request died half-way (or its task was purged): take the key over.
            taken = await self.store.idempotency.find_one_and_replace(
                {"_id": key_id, "created_at": existing["created_at"]}, record
            )
            if taken is None:
                raise IdempotencyKeyInFlight(key) from None
        try:
            doc = await self.submit(name, args, owner=owner, ui=ui, metadata=metadata)
        except BaseException:
            await self.store.idempotency.delete_one({"_id": key_id, "created_at": now})
            raise
        await self.store.idempotency.update_one({"_id": key_id}, {"$set": {"task_id": doc["_id"]}})
        return Submitted(doc)

    async def dispatch(self, task_id: str, name: str, *, delay_s: float = 0) -> None:
        """Publish the task's command (after `delay_s`, held by the broker); then clear its
        outbox mark."""
        command = RunTask(task_id=task_id, name=name)
        if delay_s > 0:
            band = bucket_for(delay_s)
            queue = self.topology.delay_queue(band)
            with tracing.publishing(queue, "RunTask", task_id) as headers:
                await self.broker.publish(
                    command,
                    queue=RabbitQueue(queue),
                    persist=True,
                    mandatory=True,
                    expiration=timedelta(seconds=delay_s),
                    timeout=self.settings.publish_timeout_s,
                    message_id=task_id,
                    headers=headers,
                )
        else:
            await publish_command(
                self.broker,
                tasks_exchange(self.topology),
                command,
                routing_key=RUN_KEY,
                timeout_s=self.settings.publish_timeout_s,
                message_id=task_id,
            )
        self.store.dispatched(task_id)

    async def requeue(
        self, doc: Doc, run_id: str, attempt: Doc, *, delay_s: float = 0
    ) -> Doc | None:
        """Release a running task from its run and queue it again (after `delay_s`)."""
        due = utcnow() + timedelta(seconds=delay_s + self.settings.outbox_grace_s)
        released = await self.store.release(doc["_id"], run_id, attempt, dispatch_due_at=due)
        if released is None:
            return None
        metrics.requeued(doc["name"], attempt["outcome"])
        try:
            await self.dispatch(doc["_id"], doc["name"], delay_s=delay_s)
        except Exception as exc:
            # The outbox mark stays: the relay publishes the command when it is due.
            log.warning("requeue of task %s not confirmed (%r); the relay will", doc["_id"], exc)
        return released

    async def cancel(self, task_id: str) -> Doc | None:
        """Cancel a task and its children: `waiting` ends `canceled` now; `running` becomes
        `canceling` and its worker stops it at the next checkpoint.

        Returns the task after the change (or as it is, if already `canceling`), None if it
        does not exist; raises AlreadyFinished for a finished task.
        """
        doc = await self._cancel_one(task_id)
        if doc is None:
            return None
        for child in await self.store.children(task_id):
            if child["state"] not in FINAL_STATES:
                with contextlib.suppress(AlreadyFinished):
                    await self.cancel(child["_id"])
        if doc["state"] in FINAL_STATES:
            await self.ended(doc)
        else:
            await self.finish_parent(task_id)
        return await self.store.get(task_id) or doc

    async def _cancel_one(self, task_id: str) -> Doc | None:
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
                if doc.get("run", {}).get("id") is None and not doc.get("awaiting_children"):
                    # Released (waiting for a retry or a requeue): nobody runs it to stop it.
                    return await self.end_unheld(doc, reason="canceled while queued again")
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

    async def end_unheld(self, doc: Doc, *, reason: str) -> Doc:
        """End a `canceling` task that no run holds."""
        ended = await self.store.transition(
            doc["_id"],
            [TaskState.CANCELING],
            TaskState.CANCELED,
            fields={"error": {"type": "canceled", "message": reason}},
            guard={"run.id": None},
            reason=reason,
        )
        if ended is None:
            return await self.store.get(doc["_id"]) or doc
        await self.ended(ended)
        return ended

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

    async def ended(self, doc: Doc) -> None:
        """A task reached a final state: its parent may now be able to end too."""
        if doc.get("parent_id"):
            await self.finish_parent(doc["parent_id"])

    async def finish_parent(self, parent_id: str) -> None:
        """End a task that waits for its children, if they have all ended.

        Completed if every child completed; canceled if it was being canceled; else failed.
        Called after each child ends, and by the janitor for parents left behind by a crash.
        """
        parent = await self.store.get(parent_id)
        if parent is None or not parent.get("awaiting_children"):
            return
        if parent["state"] not in (TaskState.RUNNING, TaskState.CANCELING):
            return
        children = await self.store.children(parent_id)
        if any(child["state"] not in FINAL_STATES for child in children):
            return
        not_completed = [c for c in children if c["state"] != TaskState.COMPLETED]
        fields: dict[str, Any]
        if not not_completed:
            target, fields = TaskState.COMPLETED, {"result": parent.get("join_result")}
        elif parent["state"] == TaskState.CANCELING:
            target = TaskState.CANCELED
            fields = {"error": {"type": "canceled", "message": "canceled with its children"}}
        else:
            target = TaskState.FAILED
            message = f"{len(not_completed)} of {len(children)} child tasks did not complete"
            fields = {"error": {"type": "child_failed", "message": message}}
        sources = (
            [TaskState.CANCELING]
            if target is TaskState.CANCELED
            else [TaskState.RUNNING, TaskState.CANCELING]
        )
        ended = await self.store.transition(
            parent_id, sources, target, fields=fields, guard={"awaiting_children": True}
        )
        if ended is not None:
            metrics.finished(parent["name"], target)
            await self.ended(ended)
