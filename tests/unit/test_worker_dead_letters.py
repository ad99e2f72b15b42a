"""The dead queue's handler, on fakes of the verbs: a try counts only when the database refused
it; the last counted try parks the command and fails its task by the least write."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import cast

import pytest

from services.worker.dead_letters import DeadLetter, DeadLetters, Settle
from shared import metrics
from shared.messages import RunTask
from shared.runs import Runs
from shared.store import DatabaseRefused, DatabaseTimeout, DatabaseUnreachable
from tests.support import stored_task

ATTEMPTS = 3


@dataclass
class FakeRuns:
    """The two verbs the handler calls: each raises the next of its errors, then succeeds."""

    fail_errors: list[Exception] = field(default_factory=list)
    park_errors: list[Exception] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    parked: list[str] = field(default_factory=list)

    async def fail_undeliverable(self, task_id: str, reason: str) -> bool:
        self.failed.append(task_id)
        if self.fail_errors:
            raise self.fail_errors.pop(0)
        return True

    async def park(self, task_id: str, reason: str) -> bool:
        self.parked.append(task_id)
        if self.park_errors:
            raise self.park_errors.pop(0)
        return True


@dataclass
class Scene:
    """The handler on fake verbs, with what it parked and how often it waited for the
    database."""

    runs: FakeRuns
    parked: list[tuple[DeadLetter, str]] = field(default_factory=list)
    waits: int = 0

    @property
    def handler(self) -> DeadLetters:
        return DeadLetters(
            cast(Runs, self.runs),
            park=self.park,
            until_database_answers=self.until_database_answers,
            attempts=ATTEMPTS,
            backoff_s=0.001,
        )

    async def park(self, letter: DeadLetter, why: str) -> None:
        self.parked.append((letter, why))

    async def until_database_answers(self) -> None:
        self.waits += 1


def letter(tries: int) -> DeadLetter:
    """A dead-lettered command on its `tries`th counted try."""
    task = stored_task(name="test.count")
    body = RunTask(task_id=task.id, name=task.name).model_dump_json().encode()
    headers = {"x-delivery-count": tries - 1, "x-first-death-reason": "delivery_limit"}
    return DeadLetter(body, task.id, headers)


def parked_total() -> float:
    return metrics.sample(metrics.WORKER_REGISTRY, "tasklight_commands_parked_total")


async def test_a_database_that_does_not_answer_spends_none_of_the_tries() -> None:
    """Given a command on its last counted try, when the database does not answer its tries
    (more of them than the command has), then each is made again once it answers, and the task
    fails when the database takes the write: nothing is requeued or parked."""
    outage = [
        DatabaseUnreachable("down"),
        DatabaseUnreachable("slow"),
        DatabaseTimeout("timed out"),
    ]
    runs = FakeRuns(fail_errors=[*outage, DatabaseUnreachable("still down")])
    built = Scene(runs)
    last = letter(tries=ATTEMPTS)
    before = parked_total()
    assert await built.handler.settle(last) is Settle.ACK
    assert runs.failed == [last.task_id()] * 5
    assert built.waits == 4
    assert (built.parked, runs.parked) == ([], [])
    assert parked_total() == before


async def test_a_refused_try_is_counted_and_the_command_requeued() -> None:
    runs = FakeRuns(fail_errors=[DatabaseRefused("refused")])
    built = Scene(runs)
    assert await built.handler.settle(letter(tries=ATTEMPTS - 1)) is Settle.REQUEUE
    assert (built.parked, runs.parked, built.waits) == ([], [], 0)


async def test_the_last_refused_try_fails_the_task_by_the_least_write_and_parks_the_command() -> (
    None
):
    runs = FakeRuns(fail_errors=[DatabaseRefused("history is not an array")])
    built = Scene(runs)
    last = letter(tries=ATTEMPTS)
    before = parked_total()
    assert await built.handler.settle(last) is Settle.ACK
    assert runs.parked == [last.task_id()]
    [(parked, why)] = built.parked
    assert parked is last
    assert why == "OperationFailure: history is not an array"
    assert parked_total() == before + 1


async def test_a_task_even_the_least_write_cannot_fail_stays_and_its_command_is_parked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = FakeRuns(
        fail_errors=[DatabaseRefused("refused")], park_errors=[DatabaseRefused("refused too")]
    )
    built = Scene(runs)
    last = letter(tries=ATTEMPTS)
    with caplog.at_level(logging.ERROR):
        assert await built.handler.settle(last) is Settle.ACK
    assert len(built.parked) == 1
    assert any("could not be failed either" in r.getMessage() for r in caplog.records)


async def test_a_dead_letter_that_names_no_task_is_dropped() -> None:
    runs = FakeRuns()
    built = Scene(runs)
    assert await built.handler.settle(DeadLetter(b"not json", "not-a-task-id")) is Settle.ACK
    assert (runs.failed, built.parked) == ([], [])
