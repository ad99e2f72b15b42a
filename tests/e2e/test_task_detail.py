"""The task detail page in a real browser: everything about a task, its family and its history."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


async def test_the_detail_page_shows_progress_worker_children_and_history_live(
    page: Page, stack: Stack, artifacts_dir: Path
) -> None:
    # Given a task that starts two child tasks
    parent = await stack.submit("test.spawn", {"children": 2, "rounds": 3, "round_s": 0.4})

    # When its detail page is open while it runs
    await page.goto(f"/tasks/{parent['id']}")
    await page.evaluate("window.__notReloaded = true")
    detail = page.locator("#detail")
    await expect(detail.locator("h1")).to_contain_text("test.spawn")
    await expect(detail.locator(".children li")).to_have_count(2)
    await expect(detail).to_contain_text(stack.settings.worker_name)
    await expect(detail).to_contain_text("last heartbeat")

    # Then it follows the task to the end, with no reload, and shows its history
    await expect(detail.locator("h1 .chip")).to_have_text("Completed", timeout=30_000)
    await expect(detail.locator(".children .chip")).to_have_text(["Completed", "Completed"])
    history = detail.locator("table.history tbody tr")
    await expect(history).to_have_count(3)
    await expect(history.last).to_contain_text("Completed")
    await expect(detail.locator(".reports li")).to_have_count(1)
    await expect(detail).to_contain_text('"children": 2')
    assert await page.evaluate("window.__notReloaded === true")
    await page.screenshot(path=str(artifacts_dir / "task-detail.png"), full_page=True)

    # And a child links back to its parent
    await detail.locator(".children a").first.click()
    await expect(page.locator("#detail")).to_contain_text("Parent")
    await page.locator("#detail a", has_text=parent["id"]).click()
    await expect(page).to_have_url(f"{stack.base_url}/tasks/{parent['id']}")


async def test_a_failed_task_shows_its_error(page: Page, stack: Stack) -> None:
    task = await stack.submit("test.fail", {"after_s": 0, "message": "disk full"})
    await stack.wait_final(task["id"])

    await page.goto(f"/tasks/{task['id']}")

    await expect(page.locator(".error-text")).to_contain_text("disk full")
    await expect(page.locator("table.history tbody tr")).to_have_count(3)


async def test_an_unknown_task_gets_a_not_found_page(page: Page, stack: Stack) -> None:
    response = await page.goto("/tasks/0190c2a8-0000-7000-8000-000000000000")
    assert response is not None
    assert response.status == 404
    await expect(page.locator("h1")).to_have_text("No such task")
