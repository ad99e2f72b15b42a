"""A page that loses the notifier says so, reconnects by itself, and catches up on changes."""

from __future__ import annotations

import time

import pytest
from playwright.async_api import Page, expect

from services.notifier.app import Notifier
from tests.support import StallingProxy
from tests.support.browser import Stack

pytestmark = pytest.mark.e2e


async def test_the_page_shows_reconnecting_then_resumes_with_the_changes_it_missed(
    page: Page, stack: Stack, notifier: Notifier
) -> None:
    # Given the overview, live, with a task under way in the open dialog
    running = await stack.submit("test.count", {"rounds": 200, "round_s": 0.3})
    await page.goto("/")
    await page.evaluate("window.__notReloaded = true")
    connection = page.locator("#connection")
    await expect(connection).to_have_attribute("data-status", "live")
    await page.click("#tasks-button")
    await expect(page.locator(f'.task-row[data-task-id="{running["id"]}"]')).to_be_visible()

    # When the notifier goes away, and tasks change while it is gone
    await notifier.stop()
    await expect(connection).to_have_attribute("data-status", "reconnecting")
    await expect(connection).to_have_text("reconnecting")
    done = await stack.submit("test.count", {"rounds": 1, "round_s": 0})
    await stack.api.post(f"/api/v1/tasks/{running['id']}/cancel")
    await stack.wait_final(done["id"])
    await stack.wait_final(running["id"])

    # Then, once a notifier is back, the page is live again and shows what it missed
    replacement = Notifier(stack.settings)
    await replacement.start()
    try:
        await expect(connection).to_have_attribute("data-status", "live")
        await expect(page.locator('[data-count-for="pending"]')).to_have_text("0")
        await page.click("#tab-finished")
        await expect(page.locator(f'.task-row[data-task-id="{done["id"]}"]')).to_be_visible()
        await page.click("#tab-failed")
        await expect(page.locator(f'.task-row[data-task-id="{running["id"]}"]')).to_have_attribute(
            "data-state", "canceled"
        )
        assert await page.evaluate("window.__notReloaded === true")
    finally:
        await replacement.stop()


async def test_a_connection_that_goes_silent_shows_reconnecting_within_seconds(
    page: Page, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with StallingProxy(stack.settings.notifier_port) as proxy:
        # Given a page whose WebSocket goes through a network that can vanish without a trace
        monkeypatch.setenv("TASKLIGHT_NOTIFIER_PUBLIC_URL", f"ws://127.0.0.1:{proxy.port}/ws")
        await page.goto("/")
        connection = page.locator("#connection")
        await expect(connection).to_have_attribute("data-status", "live")

        # When nothing gets through any more (no close, no reset)
        proxy.stalled = True
        stalled_at = time.monotonic()

        # Then the pill says so within seconds (a 3 s ping whose pong is due within 2 s),
        # not after the 33 s it took with the notifier's own keepalive
        await expect(connection).to_have_text("reconnecting", timeout=8_000)
        assert time.monotonic() - stalled_at < 8

        # And once the network is back, the page is live again by itself
        proxy.stalled = False
        await expect(connection).to_have_attribute("data-status", "live", timeout=30_000)
