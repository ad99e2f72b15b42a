"""Where a waiting page goes when its task ends: the `ui` hints by default, or the type's hook."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.api.demo import register_outcomes
from shared.lifecycle import TaskState
from shared.task import Task
from shared.waiting_page import Flash, FlashLevel, Outcome, OutcomeHooks, default_outcome

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TASK_ID = "0190c2a8-0000-7000-8000-000000000001"


def task(state: str, *, name: str = "test.count", **fields: Any) -> Task:
    return Task(
        id=TASK_ID,
        name=name,
        state=TaskState(state),
        created_at=NOW,
        updated_at=NOW,
        owner="dev",
        version=3,
        **fields,
    )


UI = {
    "next_url": "/providers",
    "success_message": "Provider added.",
    "failure_message": "Could not add the provider",
}


def test_a_completed_task_goes_to_its_next_url_with_its_success_message() -> None:
    outcome = default_outcome(task("completed", ui=UI))

    assert outcome.ready
    assert outcome.next_url == "/providers"
    assert outcome.flash == Flash(level=FlashLevel.SUCCESS, message="Provider added.")


def test_a_failed_task_gets_its_failure_message_with_its_error() -> None:
    failed = task("failed", ui=UI, error={"type": "failed", "message": "bad password"})

    outcome = default_outcome(failed)

    assert outcome.flash == Flash(
        level=FlashLevel.ERROR, message="Could not add the provider: bad password"
    )


def test_without_hints_a_task_goes_to_its_detail_page() -> None:
    outcome = default_outcome(task("canceled"))

    assert outcome.next_url == f"/tasks/{TASK_ID}"
    assert outcome.flash is not None
    assert outcome.flash.level is FlashLevel.WARNING


async def test_a_pending_task_has_no_outcome_yet() -> None:
    outcome = await OutcomeHooks().outcome(task("running", ui=UI))

    assert outcome == Outcome(ready=False, state=TaskState.RUNNING)


async def test_a_hook_decides_for_its_type_and_may_be_async_or_defer() -> None:
    hooks = OutcomeHooks()

    @hooks.on_ready("test.count")
    async def counted(finished: Task) -> Outcome | None:
        if finished.state is TaskState.COMPLETED:
            return Outcome(ready=True, state=finished.state, next_url="/counted")
        return None

    assert (await hooks.outcome(task("completed", ui=UI))).next_url == "/counted"
    assert (await hooks.outcome(task("failed", ui=UI))).next_url == "/providers"


def test_a_type_gets_one_hook() -> None:
    hooks = OutcomeHooks()
    register_outcomes(hooks)

    with pytest.raises(ValueError, match="already registered"):
        register_outcomes(hooks)


async def test_the_vm_hook_names_the_vm_and_links_back_to_it() -> None:
    hooks = OutcomeHooks()
    register_outcomes(hooks)
    done = task("completed", name="demo.vm_power_off", args={"vm": "vm-db-01"})

    outcome = await hooks.outcome(done)

    assert outcome.next_url == "/#vm-db-01"
    assert outcome.flash == Flash(level=FlashLevel.SUCCESS, message="VM db-01 is powered off.")


@pytest.mark.parametrize(
    "next_url", ["https://evil.example/", "//evil.example/", "javascript:alert(1)", "/\\evil"]
)
def test_a_next_url_off_this_site_is_not_followed(next_url: str) -> None:
    outcome = default_outcome(task("completed", ui={**UI, "next_url": next_url}))

    assert outcome.next_url == f"/tasks/{TASK_ID}"


@pytest.mark.parametrize("next_url", ["/\t/evil.example", "/\n/evil.example", " //evil.example"])
def test_a_next_url_a_browser_reads_as_another_site_is_not_followed(next_url: str) -> None:
    outcome = default_outcome(task("completed", ui={**UI, "next_url": next_url}))

    assert outcome.next_url == f"/tasks/{TASK_ID}"


async def test_a_hook_is_held_to_the_same_rule_as_the_hints() -> None:
    """A hook may build its URL from the task's arguments, which a user chose."""
    hooks = OutcomeHooks()

    @hooks.on_ready("test.count")
    def from_args(done: Task) -> Outcome:
        return Outcome(ready=True, state=done.state, next_url=str(done.args["back"]))

    off_site = await hooks.outcome(task("completed", args={"back": "/\t/evil.example"}))
    assert off_site.next_url == f"/tasks/{TASK_ID}"
    local = await hooks.outcome(task("completed", args={"back": "/reports/\n7"}))
    assert local.next_url == "/reports/7"
