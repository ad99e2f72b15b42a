"""Submitting tasks: validate, store as `waiting` with the outbox mark, queue the command.

A submission may also name resources (the task waits, `blocked`, until it holds them), a time to
run at (it waits, `scheduled`, until then; the relay queues it) and a priority."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from shared import metrics
from shared.clock import utcnow
from shared.commands import Commands
from shared.ids import new_task_id
from shared.jsonlimits import violations
from shared.lifecycle import Phase
from shared.rate_limit import RateLimiter
from shared.records import StoredTask, new_task
from shared.registry import Registry
from shared.reservations import InvalidResource, LatelyTaken, Mode, Reservation, reservations
from shared.runs import Runs
from shared.settings import Settings
from shared.store import IdempotencyKeys, KeyRecord, ResourcesTaken, TaskStore
from shared.store.rates import NO_COUNTERS
from shared.task import UiHints

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


class ScheduledTooFar(ValueError):
    """The time to run at is further ahead than `max_schedule_ahead_s` allows."""

    def __init__(self, ahead_s: float, limit_s: float) -> None:
        super().__init__(
            f"a task may be scheduled at most {limit_s:.0f} s ({limit_s / 86400:g} days) ahead,"
            f" not {ahead_s:.0f} s"
        )
        self.limit_s = limit_s


#: The priorities a submission may ask for: 0 (normal) and 1 (high).
PRIORITIES = (0, 1)


@dataclass(frozen=True)
class Options:
    """What a submission may ask besides its type and arguments: the resources it takes
    (besides those its task type derives), when it runs, and its priority."""

    exclusive_resources: tuple[str, ...] = ()
    shared_resources: tuple[str, ...] = ()
    #: Run at this time (a past one: at once)...
    run_at: datetime | None = None
    #: ... or this many seconds from now.
    delay_s: float | None = None
    priority: int = 0

    def digest_part(self) -> dict[str, Any]:
        """What of it identifies a request body."""
        return {
            "exclusive": sorted(self.exclusive_resources),
            "shared": sorted(self.shared_resources),
            "run_at": self.run_at and self.run_at.isoformat(),
            "delay_s": self.delay_s,
            "priority": self.priority,
        }


NO_OPTIONS = Options()


class BrokerUnavailable(RuntimeError):
    """The broker did not take the command; nothing was left behind, try again later."""


class IdempotencyKeyReused(ValueError):
    """The Idempotency-Key was used before with another request body."""


class IdempotencyKeyInFlight(RuntimeError):
    """A request with the same Idempotency-Key is being processed right now."""


def submission_digest(
    name: str,
    args: dict[str, Any],
    ui: UiHints | None,
    metadata: dict[str, Any] | None,
    options: Options = NO_OPTIONS,
) -> str:
    """What identifies a request body under an Idempotency-Key."""
    body: dict[str, Any] = {
        "name": name,
        "args": args,
        "ui": ui and ui.model_dump(),
        "metadata": metadata,
    }
    if options != NO_OPTIONS:
        body["options"] = options.digest_part()
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class NewTask:
    """One task of a batch submission."""

    name: str
    args: dict[str, Any]
    ui: UiHints | None = None
    metadata: dict[str, Any] | None = None
    options: Options = NO_OPTIONS


@dataclass
class Submitted:
    """A submission's task, and whether it is the answer to an earlier identical request."""

    task: StoredTask
    replayed: bool = False


def _placed(task: StoredTask) -> bool:
    """Whether `Submissions._place` stores the task (it has resources or a time), rather than
    the plain insert that all other new tasks share."""
    return bool(task.reservations) or task.run_at is not None


@dataclass
class Submissions:
    """Validates submissions, stores them as waiting tasks and queues their commands."""

    tasks: TaskStore
    idempotency: IdempotencyKeys
    commands: Commands
    registry: Registry
    settings: Settings
    #: The per-minute allowance of each user (the api's; a worker starting children has none).
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(NO_COUNTERS, 0))

    def __post_init__(self) -> None:
        #: The verbs: a task waiting for a resource takes its turn through them.
        self.runs = Runs(self.tasks, self.commands, outbox_grace_s=self.settings.outbox_grace_s)
        #: Where new tasks lately met others: they skip the take by key (`_place`).
        self._lately_taken = LatelyTaken()

    async def close(self) -> None:
        """Add the counts not yet shared with other api replicas."""
        await self.limiter.close()

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

    @contextlib.asynccontextmanager
    async def counted(self, owner: str, count: int = 1) -> AsyncIterator[None]:
        """Count `count` submissions of `owner` against their per-minute allowance for the
        block (raising `RateLimited` if it is used up); a block that raises gives them back.

        Child tasks are not counted: a parent's spawns are the worker's doing, not the user's.
        """
        await self.limiter.take(owner, count)
        try:
            yield
        except BaseException:
            self.limiter.give_back(owner, count)
            raise

    def _new(
        self,
        name: str,
        args: dict[str, Any],
        *,
        owner: str,
        ui: UiHints | None,
        metadata: dict[str, Any] | None,
        parent_id: str | None = None,
        options: Options = NO_OPTIONS,
    ) -> StoredTask:
        """A valid submission as a new task; raises `InvalidSubmission`, `ArgsTooLarge` or
        `ScheduledTooFar`."""
        valid_args = self.validate(name, args)
        errors = violations(valid_args, ["args"]) + violations(metadata, ["metadata"])
        if errors:
            raise InvalidSubmission(errors)
        if options.priority not in PRIORITIES:
            raise InvalidSubmission(
                [{"loc": ["priority"], "msg": f"priority is one of {list(PRIORITIES)}"}]
            )
        at = utcnow()
        return new_task(
            reservations=self._reservations(name, valid_args, options),
            run_at=self._run_at(options, at),
            priority=options.priority,
            task_id=new_task_id(),
            name=name,
            args=valid_args,
            owner=owner,
            at=at,
            ui=ui,
            metadata=metadata,
            parent_id=parent_id,
        )

    def _reservations(self, name: str, args: dict[str, Any], options: Options) -> list[Reservation]:
        exclusive, shared = list(options.exclusive_resources), list(options.shared_resources)
        derive = self.registry.get(name).resources
        if derive is not None:
            derived = derive(self.registry.get(name).args_model.model_validate(args))
            exclusive += derived.exclusive
            shared += derived.shared
        try:
            return reservations(exclusive, shared)
        except InvalidResource as exc:
            raise InvalidSubmission([{"loc": ["exclusive_resources"], "msg": str(exc)}]) from None

    def _run_at(self, options: Options, now: datetime) -> datetime | None:
        if options.run_at is not None and options.delay_s is not None:
            raise InvalidSubmission(
                [{"loc": ["delay_s"], "msg": "give run_at or delay_s, not both"}]
            )
        if options.run_at is not None:
            if options.run_at.tzinfo is None:
                raise InvalidSubmission([{"loc": ["run_at"], "msg": "run_at needs a time zone"}])
            at = options.run_at
        elif options.delay_s is not None:
            # Refused before it becomes a time: a delay of 1e306 s is no `timedelta`.
            if options.delay_s > self.settings.max_schedule_ahead_s:
                raise ScheduledTooFar(options.delay_s, self.settings.max_schedule_ahead_s)
            at = now + timedelta(seconds=max(options.delay_s, 0))
        else:
            return None
        ahead_s = (at - now).total_seconds()
        if ahead_s > self.settings.max_schedule_ahead_s:
            raise ScheduledTooFar(ahead_s, self.settings.max_schedule_ahead_s)
        return at

    async def _place(self, task: StoredTask) -> StoredTask | None:
        """Store a task scheduled for later or with resources: the task as stored if it must
        wait (its command is not to be published now), None if it holds its resources and its
        command is to be published now (its outbox mark is set).

        A task whose resources are all exclusive takes them by key with its insert (the usual
        case: nothing else holds them, and it costs no further write); one that finds one taken,
        or that shares one, queues for them (`shared/store/reservations.py`)."""
        if task.run_at is not None and task.run_at > utcnow():
            scheduled = task.model_copy(update={"phase": Phase.SCHEDULED})
            await self.tasks.insert(scheduled, dispatch_due_at=task.run_at)
            return scheduled
        if not task.reservations:  # a time already past: it runs at once
            await self.tasks.insert(task, dispatch_due_at=self._due())
            return None
        names = [r.resource for r in task.reservations]
        if (
            task.parent_id is None
            and all(r.mode is Mode.EXCLUSIVE for r in task.reservations)
            and not self._lately_taken.any_of(names, time.monotonic())
        ):
            try:
                await self.tasks.insert_holding(task, dispatch_due_at=self._due())
            except ResourcesTaken as exc:
                log.debug("task %s queues: %s", task.id, exc)
            else:
                behind = await self.runs.hold_by_key(task)
                if behind is not None:
                    self._lately_taken.taken(names, time.monotonic())
                return behind
        waiting = await self.runs.enter_queues(task.id, task.reservations, fresh=True)
        if waiting is None:
            # First in its queues: it holds them by its entries, not by key, so a task after it
            # meets it there: the hint stays as it is (`taken` below, or expiring).
            await self.tasks.insert(task, dispatch_due_at=self._due())
            return None
        self._lately_taken.taken(names, time.monotonic())
        blocked = task.model_copy(update={"phase": Phase.BLOCKED, "waiting_for": waiting})
        await self.tasks.insert(blocked)
        # Its holder may have ended before it was stored, when nobody could give it its turn.
        await self.runs.take_turn(blocked)
        return blocked

    async def _discard(self, tasks: list[StoredTask], parent_id: str | None = None) -> None:
        await self.tasks.discard_unqueued([task.id for task in tasks], parent_id=parent_id)
        for task in tasks:
            if task.reservations:
                await self.runs.release_resources(task.id, task.reservations)

    def _due(self) -> Any:
        return utcnow() + timedelta(seconds=self.settings.outbox_grace_s)

    async def submit(
        self,
        name: str,
        args: dict[str, Any],
        *,
        owner: str,
        ui: UiHints | None = None,
        metadata: dict[str, Any] | None = None,
        parent_id: str | None = None,
        options: Options = NO_OPTIONS,
    ) -> StoredTask:
        """Store a task as `waiting` and queue its command; return the stored task.

        One scheduled for later is stored `waiting/scheduled`, its outbox mark due at its time;
        one whose resource another task holds is stored `waiting/blocked`, with no command
        (the holder's end gives it its turn).

        The task is stored with its outbox mark (`dispatch_due_at`). If the broker confirms the
        command, the mark is removed; if it refuses it, the task is removed again and
        `BrokerUnavailable` raised; if this process dies in between, the relay publishes the
        command later. So a caller that got a task back can count on it reaching a final state.
        """
        task = self._new(
            name, args, owner=owner, ui=ui, metadata=metadata, parent_id=parent_id, options=options
        )
        if _placed(task):
            placed = await self._place(task)
            if placed is not None:
                metrics.submitted([name])
                return placed
        else:
            await self.tasks.insert(task, dispatch_due_at=self._due())
        try:
            await self.commands.run(task.id, name, snapshot=task.snapshot(), priority=task.priority)
        except Exception as exc:
            log.warning("publish of task %s failed: %r; removing it", task.id, exc)
            await self._discard([task], parent_id=parent_id)
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc
        metrics.submitted([name])
        return task

    async def submit_many(self, items: list[NewTask], *, owner: str) -> list[StoredTask]:
        """Store several top-level tasks in one write and queue their commands together.

        All are validated first: one invalid item refuses the whole batch (`InvalidSubmission`,
        each error's `loc` starting with the item's index). If the broker confirms none of the
        commands, nothing is kept and `BrokerUnavailable` is raised; commands it did confirm
        are never taken back, so when only some fail, every task is kept and the relay
        publishes the rest after `outbox_grace_s`: a batch is accepted whole or not at all.
        """
        tasks: list[StoredTask] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                tasks.append(
                    self._new(
                        item.name,
                        item.args,
                        owner=owner,
                        ui=item.ui,
                        metadata=item.metadata,
                        options=item.options,
                    )
                )
            except InvalidSubmission as exc:
                errors += [{**err, "loc": [index, *err["loc"]]} for err in exc.errors]
        if errors:
            raise InvalidSubmission(errors)
        # Those with resources or a time are stored one by one, in the batch's order (their
        # places in the resources' queues are in that order); the others together.
        placed: dict[str, StoredTask] = {}
        for task in tasks:
            if _placed(task) and (waiting := await self._place(task)) is not None:
                placed[task.id] = waiting
        stored = tasks
        tasks = [task for task in tasks if task.id not in placed]
        if not tasks:
            metrics.submitted(task.name for task in stored)
            return [placed[task.id] for task in stored]
        await self.tasks.insert_many(
            [task for task in tasks if not _placed(task)], dispatch_due_at=self._due()
        )
        outcomes = await asyncio.gather(
            *(
                self.commands.run(
                    task.id, task.name, snapshot=task.snapshot(), priority=task.priority
                )
                for task in tasks
            ),
            return_exceptions=True,
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures and len(failures) == len(tasks) and not placed:
            log.warning("publish of a batch of %d failed: %r; removing it", len(tasks), failures[0])
            await self._discard(tasks)
            raise BrokerUnavailable(str(failures[0]) or type(failures[0]).__name__)
        if failures:
            log.warning(
                "%d of %d commands not confirmed; the relay will", len(failures), len(tasks)
            )
        metrics.submitted(task.name for task in stored)
        return [placed.get(task.id, task) for task in stored]

    async def submit_once(
        self,
        key: str,
        name: str,
        args: dict[str, Any],
        *,
        owner: str,
        ui: UiHints | None = None,
        metadata: dict[str, Any] | None = None,
        options: Options = NO_OPTIONS,
    ) -> Submitted:
        """`submit` under an Idempotency-Key: the same key and body give the same task."""
        self.validate(name, args)
        digest = submission_digest(name, args, ui, metadata, options)
        now = utcnow()
        record = KeyRecord(owner=owner, key=key, digest=digest, created_at=now)
        existing = await self.idempotency.reserve(record)
        if existing is not None:
            if existing.digest != digest:
                raise IdempotencyKeyReused(key)
            if existing.task_id is not None:
                done = await self.tasks.get(existing.task_id)
                if done is not None:
                    return Submitted(done, replayed=True)
            age_s = (now - existing.created_at).total_seconds()
            if existing.task_id is None and age_s < ABANDONED_KEY_S:
                raise IdempotencyKeyInFlight(key)
            # The first request died half-way (or its task was purged): take the key over.
            if not await self.idempotency.take_over(existing, record):
                raise IdempotencyKeyInFlight(key)
        try:
            task = await self.submit(
                name, args, owner=owner, ui=ui, metadata=metadata, options=options
            )
        except BaseException:
            await self.idempotency.release(record)
            raise
        await self.idempotency.complete(record, task.id)
        return Submitted(task)
