"""What becomes of a dead-lettered command: its task fails, and a command whose task cannot be
recorded is tried again a bounded number of times, then parked rather than looped.

A try counts only when it reached the database and was refused. One that failed for want of
the database (it did not answer, or not in time: `shared.store.unreachable`) says nothing about
the command, so it is made again once the database answers, in the same delivery, and costs
none of the command's tries: an outage however long parks nothing that could be recorded after
it. Counted tries are RabbitMQ's: the dead queue is a quorum queue, whose `x-delivery-count`
says how often a command was given back (requeued after a refused try, or left unacknowledged
by a worker that stopped).

Parking publishes the command to the parked queue (nothing consumes it; an operator does), with
the last refusal in the header `x-tasklight-parked-because`, counts it and logs it. Before that,
the task gets one last write that fails it by the least a write can say so (`Runs.park`); if the
database refuses even that, the task stays as it was, and the log says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydantic import ValidationError

from shared import metrics
from shared.ids import is_task_id
from shared.messages import RunTask
from shared.runs import Runs
from shared.store import unreachable

log = logging.getLogger(__name__)

#: Longest wait before another counted try at recording a dead-lettered command.
MAX_BACKOFF_S = 30.0
#: Longest pause between tries the database did not answer, once it answers a ping again: a
#: write that keeps timing out while pings answer must not spin, nor the first write after an
#: outage wait long.
MAX_UNANSWERED_PAUSE_S = 5.0
#: Longest text of a refusal kept in the parked command's header.
REASON_CHARS = 500


@dataclass(frozen=True)
class DeadLetter:
    """A dead-lettered command as delivered."""

    body: bytes
    message_id: str | None
    headers: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tries(self) -> int:
        """Which counted try this delivery is: 1, then one more for each time it was given
        back."""
        return 1 + int(self.headers.get("x-delivery-count") or 0)

    @property
    def reason(self) -> str:
        """Why RabbitMQ dead-lettered it (`delivery_limit`, `rejected`, ...)."""
        return str(self.headers.get("x-first-death-reason", "rejected"))

    def task_id(self) -> str | None:
        """The task it is for, or None if it names none."""
        try:
            return RunTask.model_validate_json(self.body).task_id
        except ValidationError:
            # Undecodable; every command is published with its task id as message id.
            return self.message_id if is_task_id(self.message_id or "") else None


class Settle(Enum):
    """What to do with a dead letter once handled."""

    #: Done with: acknowledge it (its task failed, or it was parked, or it names no task).
    ACK = "ack"
    #: Give it back to the dead queue, for another counted try.
    REQUEUE = "requeue"


#: Publishes a dead letter to the parked queue, with why it was parked.
Park = Callable[[DeadLetter, str], Awaitable[None]]


class DeadLetters:
    """The dead queue's handler, on the verbs, a way to the parked queue and a wait for the
    database."""

    def __init__(
        self,
        runs: Runs,
        *,
        park: Park,
        until_database_answers: Callable[[], Awaitable[None]],
        attempts: int,
        backoff_s: float,
    ) -> None:
        self.runs = runs
        self.park = park
        self.until_database_answers = until_database_answers
        self.attempts = attempts
        self.backoff_s = backoff_s

    async def settle(self, letter: DeadLetter) -> Settle:
        """Fail the task of `letter`; what to do with it then. Waits out a database that does
        not answer, and a counted try's backoff, before it returns."""
        task_id = letter.task_id()
        if task_id is None:
            log.error("dead-lettered message %r names no task; dropped", letter.message_id)
            return Settle.ACK
        unanswered = 0
        while True:
            try:
                await self.runs.fail_undeliverable(task_id, letter.reason)
            except Exception as exc:
                if not unreachable(exc):
                    return await self._refused(letter, task_id, exc)
                unanswered += 1
                log.warning(
                    "dead-lettered command %r not recorded, the database did not answer (%r); "
                    "trying again once it does, which spends none of its tries",
                    letter.message_id,
                    exc,
                )
                await self.until_database_answers()
                pause_s = self.backoff_s * 2 ** (unanswered - 1)
                await asyncio.sleep(min(pause_s, MAX_UNANSWERED_PAUSE_S))
                continue
            return Settle.ACK

    async def _refused(self, letter: DeadLetter, task_id: str, exc: Exception) -> Settle:
        """A counted try failed: requeue after its backoff, or park after the last."""
        tries = letter.tries
        if tries < self.attempts:
            log.warning(
                "dead-lettered command %r not recorded (try %d of %d): %r",
                letter.message_id,
                tries,
                self.attempts,
                exc,
            )
            backoff_s = self.backoff_s * 2 ** (tries - 1)
            await asyncio.sleep(min(backoff_s, MAX_BACKOFF_S))
            return Settle.REQUEUE
        why = f"{type(exc).__name__}: {exc}"[:REASON_CHARS]
        await self._fail_parked(letter, task_id)
        await self.park(letter, why)
        metrics.COMMANDS_PARKED.inc()
        log.error("dead-lettered command %r parked: %s", letter.message_id, why)
        return Settle.ACK

    async def _fail_parked(self, letter: DeadLetter, task_id: str) -> None:
        """The one write that fails a parked command's task, if the database takes it."""
        try:
            failed = await self.runs.park(task_id, letter.reason)
        except Exception as exc:
            log.error(
                "task %s of parked command %r could not be failed either, and stays as it was: %r",
                task_id,
                letter.message_id,
                exc,
            )
            return
        if not failed:
            log.info(
                "task %s of parked command %r had ended already, or is not stored",
                task_id,
                letter.message_id,
            )
