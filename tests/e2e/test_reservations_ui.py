"""Reservations and schedules in a real browser: a power-off waiting for another of the same VM
says which task holds it, and starts when that one ends; a scheduled task counts down."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from shared.tasktypes.demo import POWER_OFF
from tests.support.browser import Stack

pytestmark = pytest.mark.e2e


async def test_the_second_power_off_of_a_vm_waits_for_the_first_and_starts_when_it_ends(
    page: Page, stack: Stack, artifacts_dir: Path
) -> None:
    # Given two power-offs of web-01 queued together
    first = await stack.submit(POWER_OFF, {"vm": "vm-web-01", "delay_s": 4})
    second = await stack.submit(POWER_OFF, {"vm": "vm-web-01", "delay_s": 0.5})

    # When the second one's detail page is open
    await page.goto(f"/tasks/{second['id']}")
    await page.evaluate("window.__notReloaded = true")
    detail = page.locator("#detail")

    # Then it shows the VM it takes, and that it waits for the first, with a link to it
    await expect(detail.locator(".reservations")).to_contain_text("vm:web-01")
    await expect(detail.locator(".reservations")).to_contain_text("exclusive")
    waiting = detail.locator(".waiting-for")
    await expect(waiting).to_contain_text("Waiting for vm:web-01, held by")
    await expect(waiting.locator("a")).to_have_attribute("href", f"/tasks/{first['id']}")
    await expect(detail.locator("h1 .chip")).to_have_attribute("data-state", "waiting")
    await page.screenshot(path=str(artifacts_dir / "task-detail-waiting-for.png"), full_page=True)

    # And, by push, it starts once the first one ended, and completes
    await expect(detail.locator("h1 .chip")).to_have_text("Completed", timeout=30_000)
    await expect(detail.locator(".waiting-for")).to_have_count(0)
    assert await page.evaluate("window.__notReloaded === true")
    ended = await stack.api.get(f"/api/v1/tasks/{first['id']}")
    done = await stack.api.get(f"/api/v1/tasks/{second['id']}")
    assert ended.json()["finished_at"] <= done.json()["started_at"]


async def test_a_scheduled_task_shows_scheduled_with_a_countdown_in_the_dialog(
    page: Page, stack: Stack
) -> None:
    # Given a task scheduled an hour ahead
    task = await stack.submit("test.count", {"rounds": 1, "round_s": 0.01}, delay_s=3600)

    # When the dialog is open on Pending
    await page.goto("/")
    await expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    await page.click("#tasks-button")
    row = page.locator(f'#tasks-panel .task-row[data-task-id="{task["id"]}"]')

    # Then its row says it is scheduled, counting down
    scheduled = row.locator(".scheduled")
    await expect(scheduled).to_contain_text("Scheduled")
    countdown = scheduled.locator(".countdown")
    await expect(countdown).to_have_text(re.compile(r"^in (59 min|1 h)"))
    before = await countdown.text_content()
    await expect(countdown).not_to_have_text(before or "", timeout=5_000)

    # And its detail page shows when it is scheduled for
    await page.goto(f"/tasks/{task['id']}")
    await expect(page.locator("#detail .facts")).to_contain_text("Scheduled for")
    await expect(page.locator("#detail .scheduled")).to_contain_text("starts in")
