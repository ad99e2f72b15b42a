"""A task's question answered in a real browser: in the tasks dialog's row, and on the waiting
page in place of the spinner; the push shows the task going on with the answer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.support.browser import Stack

pytestmark = pytest.mark.e2e


def row(task_id: str) -> str:
    return f'#tasks-panel .task-row[data-task-id="{task_id}"]'


async def test_a_question_is_answered_in_the_tasks_dialog_and_the_task_goes_on(
    page: Page, stack: Stack, artifacts_dir: Path
) -> None:
    # Given a task that asks two questions, shown in the open dialog
    task = await stack.submit("test.ask", {"questions": 2})
    await page.goto("/")
    await expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    await page.click("#tasks-button")
    asking = page.locator(row(task["id"]))

    # When its first question arrives, the row shows it with a button per choice
    question = asking.locator("form.question")
    await expect(question).to_have_attribute("data-question-key", "question-1")
    await expect(asking).to_have_attribute("data-phase", "awaiting_answer")
    await expect(question.locator(".question-title")).to_have_text("Question 1 of 2")
    await expect(asking.locator(".task-message")).to_contain_text("Waiting for an answer")
    await page.screenshot(path=str(artifacts_dir / "dialog-question.png"))
    await question.get_by_role("button", name="Approve").click()

    # Then the next question replaces it, pushed, and the second answer ends the task
    await expect(question).to_have_attribute("data-question-key", "question-2")
    await question.get_by_role("button", name="Deny").click()
    await expect(asking).to_have_count(0)
    await page.click("#tab-finished")
    await expect(page.locator(row(task["id"]))).to_have_attribute("data-state", "completed")
    done = await stack.wait_final(task["id"])
    assert done["result"] == {"answers": ["approve", "deny"]}
    assert [a["by"] for a in done["answers"]] == ["dev", "dev"]


async def test_the_waiting_page_shows_the_form_in_place_of_the_spinner_then_goes_on(
    page: Page, stack: Stack, artifacts_dir: Path
) -> None:
    # Given a task that asks with a form, waited for
    task = await stack.submit(
        "test.ask",
        {"form": True},
        ui={"header": "Ordering copies", "next_url": "/?ordered", "success_message": "Ordered."},
    )
    await page.goto(f"/wait/{task['id']}")

    # When the question arrives, it takes the spinner's place, its first field focused
    question = page.locator(".wait-question form.question")
    await expect(question).to_be_visible()
    await expect(page.locator(".wait .spinner")).to_be_hidden()
    await expect(page.locator("#wait-state")).to_contain_text("Waiting for your answer")
    reason = question.get_by_label("Reason")
    await expect(reason).to_be_focused()
    await reason.fill("month end")
    await question.get_by_label("Copies").fill("3")
    await question.get_by_label("Size").select_option("large")
    await question.get_by_label("Tell the team").check()
    await page.screenshot(path=str(artifacts_dir / "waiting-page-question.png"))
    await question.get_by_role("button", name="Send answer").click()

    # Then the task goes on with the answer, and the page on to its next URL
    await page.wait_for_url(f"{stack.base_url}/?ordered")
    await expect(page.locator(".flash")).to_contain_text("Ordered.")
    done = await stack.wait_final(task["id"])
    answer = {"reason": "month end", "copies": 3, "size": "large", "notify": True}
    assert done["result"] == {"answers": [answer]}


async def test_powering_off_the_production_vm_waits_for_approval_on_the_waiting_page(
    page: Page, stack: Stack
) -> None:
    await page.goto("/")
    vm = page.locator('[data-vm="vm-erp-01"]')
    await vm.locator('button[data-action="wait"]').click()

    await page.wait_for_url(re.compile(r"/wait/"))
    question = page.locator(".wait-question form.question")
    await expect(question.locator(".question-title")).to_have_text("Power off erp-01?")
    approve = question.get_by_role("button", name="Power off")
    await expect(approve).to_have_class(re.compile(r"\bdanger\b"))
    await approve.click()

    await page.wait_for_url(f"{stack.base_url}/#vm-erp-01")
    await expect(page.locator(".flash")).to_contain_text("VM erp-01 is powered off.")
    await expect(vm.locator(".chip")).to_have_text("Powered off")
