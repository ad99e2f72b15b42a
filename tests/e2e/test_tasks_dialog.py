"""The background-tasks dialog in a real browser: live rows, tabs, cancel and delete."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.support import eventually
from tests.support.browser import Stack

pytestmark = pytest.mark.e2e


def row(page: Page, task_id: str) -> str:
    """The selector of a task's row in the dialog."""
    return f'#tasks-panel .task-row[data-task-id="{task_id}"]'


async def mark_page(page: Page) -> None:
    """Tag the document, so that a reload (which would drop the tag) is detected."""
    await page.evaluate("window.__notReloaded = true")


async def assert_not_reloaded(page: Page) -> None:
    assert await page.evaluate("window.__notReloaded === true"), "the page was reloaded"


async def test_a_five_round_task_moves_from_pending_to_finished_in_the_open_dialog(
    page: Page, stack: Stack, artifacts_dir: Path
) -> None:
    # Given the overview, live, with its dialog open on Pending
    await page.goto("/")
    await expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    await mark_page(page)
    await page.fill("#count-rounds", "5")
    await page.fill("#count-round-s", "1")

    # When a 5-round test task is queued from the form
    await page.click('#count-form button[data-mode="queue"]')
    await expect(page.locator(".flash")).to_contain_text("Task queued")
    await expect(page.locator("#tasks-badge")).to_have_text("1")
    await page.click("#tasks-button")
    dialog = page.locator("#tasks-dialog")
    await expect(dialog).to_be_visible()
    await expect(page.locator("#tab-pending")).to_have_attribute("aria-selected", "true")
    task_id = await page.locator("#tasks-panel .task-row").first.get_attribute("data-task-id")
    assert task_id
    running = page.locator(row(page, task_id))

    # Then it counts in Pending, its progress bar filling, without a reload
    await expect(running).to_have_attribute("data-state", "running")
    await expect(running.locator(".task-message")).to_contain_text(re.compile(r"[1-4]/5 rounds"))
    await expect(running.locator(".progress")).to_have_attribute(
        "aria-valuenow", re.compile(r"^[1-9]\d$")
    )
    await page.screenshot(path=str(artifacts_dir / "dialog-pending.png"))
    # ... and leaves Pending when it completes, to show under Finished
    await expect(running).to_have_count(0)
    await expect(page.locator("#tasks-badge")).to_have_text("0")
    await page.click("#tab-finished")
    finished = page.locator(row(page, task_id))
    await expect(finished).to_have_attribute("data-state", "completed")
    await expect(finished.locator(".progress")).to_have_attribute("aria-valuenow", "100")
    await assert_not_reloaded(page)


async def test_canceling_a_running_task_warns_first_then_shows_it_under_failed(
    page: Page, stack: Stack
) -> None:
    # Given a long task, running
    task = await stack.submit("test.count", {"rounds": 200, "round_s": 0.3})
    await page.goto("/")
    await mark_page(page)
    await page.click("#tasks-button")
    pending_row = page.locator(row(page, task["id"]))
    await expect(pending_row).to_have_attribute("data-state", "running")

    # When its delete button is pressed, a confirmation explains what canceling does
    await pending_row.locator(".delete-button").click()
    confirm = page.locator("#confirm-dialog")
    await expect(confirm).to_be_visible()
    await expect(confirm.locator("h2")).to_have_text("Cancel “Count”?")  # its title, not test.count
    await expect(confirm).to_contain_text("not stopped at once")
    await expect(confirm).to_contain_text("No further steps run")
    await expect(confirm).to_contain_text("Failed")
    await confirm.locator('[data-answer="yes"]').click()

    # Then the task leaves Pending and shows under Failed as canceled
    await expect(pending_row).to_have_count(0)
    await page.click("#tab-failed")
    failed_row = page.locator(row(page, task["id"]))
    await expect(failed_row).to_have_attribute("data-state", "canceled")
    await assert_not_reloaded(page)

    # And deleting it from Failed removes it without asking, offering Undo until it is gone
    await failed_row.locator(".delete-button").click()
    await expect(failed_row).to_have_count(0)
    await expect(page.locator("#tasks-undo .undo-notice")).to_contain_text("“Count” deleted.")

    async def status() -> int:
        return (await stack.api.get(f"/api/v1/tasks/{task['id']}")).status_code

    assert await eventually(status, lambda code: code == 404) == 404
    await expect(page.locator("#tasks-undo .undo-notice")).to_have_count(0)


async def test_deleting_a_finished_task_can_be_undone(page: Page, stack: Stack) -> None:
    # Given a finished task in the Finished tab
    task = await stack.submit("test.count", {"rounds": 1, "round_s": 0})
    await stack.wait_final(task["id"])
    await page.goto("/")
    await page.click("#tasks-button")
    await page.click("#tab-finished")
    finished_row = page.locator(row(page, task["id"]))
    await expect(finished_row).to_have_attribute("data-state", "completed")

    # When it is deleted and Undo is pressed
    await finished_row.locator(".delete-button").click()
    await expect(finished_row).to_have_count(0)
    undo = page.locator("#tasks-undo .undo-button")
    await expect(undo).to_be_focused()
    deadline_ms = await undo.evaluate("b => Number(b.closest('.undo-notice').dataset.deleteAt)")
    await undo.click()

    # Then it is back, and still there once its deletion would have been sent
    await expect(finished_row).to_have_attribute("data-state", "completed")
    # (a function, not a string: the page's CSP forbids evaluating strings)
    await page.wait_for_function("(deadline) => Date.now() > deadline", arg=deadline_ms + 500)
    assert (await stack.api.get(f"/api/v1/tasks/{task['id']}")).status_code == 200
    await expect(finished_row).to_have_count(1)


async def test_keeping_a_task_in_the_confirmation_leaves_it_running(
    page: Page, stack: Stack
) -> None:
    task = await stack.submit("test.count", {"rounds": 200, "round_s": 0.3})
    await page.goto("/")
    await page.click("#tasks-button")
    pending_row = page.locator(row(page, task["id"]))
    await pending_row.locator(".delete-button").click()
    await expect(page.locator("#confirm-dialog")).to_be_visible()

    await page.keyboard.press("Escape")

    await expect(page.locator("#confirm-dialog")).to_be_hidden()
    await expect(page.locator("#tasks-dialog")).to_be_visible()
    await expect(pending_row).to_have_attribute("data-state", "running")
    assert (await stack.api.get(f"/api/v1/tasks/{task['id']}")).json()["state"] == "running"


async def test_the_dialog_is_keyboard_usable_and_closes_with_escape(
    page: Page, stack: Stack
) -> None:
    await page.goto("/")
    await page.focus("#tasks-button")
    await page.keyboard.press("Enter")
    await expect(page.locator("#tasks-dialog")).to_be_visible()
    await expect(page.locator("#tab-pending")).to_be_focused()

    await page.keyboard.press("ArrowRight")
    await expect(page.locator("#tab-failed")).to_have_attribute("aria-selected", "true")
    for _ in range(6):  # Tab cycles inside the dialog, never out of it
        await page.keyboard.press("Tab")
        inside = await page.evaluate(
            "document.getElementById('tasks-dialog').contains(document.activeElement)"
        )
        assert inside

    await page.keyboard.press("Escape")
    await expect(page.locator("#tasks-dialog")).to_be_hidden()
    await expect(page.locator("#tasks-button")).to_be_focused()
