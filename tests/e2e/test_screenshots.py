"""The UI at desktop and phone widths: nothing overflows, and screenshots are kept as artifacts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.conftest import EXPECT_TIMEOUT_MS, Stack, sign_in

pytestmark = pytest.mark.e2e


async def fits_the_width(page: Page) -> bool:
    """Whether the page has no horizontal scrolling."""
    result: bool = await page.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth + 1"
    )
    return result


async def test_the_dialog_with_tasks_in_every_state(
    page: Page, stack: Stack, artifacts_dir: Path
) -> None:
    await stack.submit("test.count", {"rounds": 30, "round_s": 0.5})
    await stack.submit("test.count", {"rounds": 8, "round_s": 1})
    await stack.submit("demo.vm_power_off", {"vm": "vm-batch-07", "delay_s": 8})
    failed = await stack.submit("test.fail", {"after_s": 0, "message": "quota exceeded"})
    done = await stack.submit("test.count", {"rounds": 2, "round_s": 0})
    await stack.wait_final(failed["id"])
    await stack.wait_final(done["id"])

    await page.goto("/")
    await page.click("#tasks-button")
    rows = page.locator("#tasks-panel .task-row")
    await expect(rows).to_have_count(3)
    await expect(page.locator('[data-count-for="failed"]')).to_have_text("1")
    await expect(page.locator('[data-count-for="finished"]')).to_have_text("1")
    await expect(rows.filter(has_text=re.compile(r"[1-7]/8 rounds"))).to_have_count(1)
    await page.screenshot(path=str(artifacts_dir / "dialog.png"))


async def test_pages_fit_a_phone_screen(
    browser: Browser, stack: Stack, artifacts_dir: Path
) -> None:
    task = await stack.submit(
        "test.count",
        {"rounds": 40, "round_s": 0.5},
        ui={"header": "Resizing the pool", "message": "Placement groups are being moved."},
    )
    context = await browser.new_context(
        base_url=stack.base_url,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    await sign_in(context)
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    phone = await context.new_page()
    try:
        await phone.goto("/")
        await expect(phone.locator('[data-vm="vm-web-01"] .chip')).to_have_text("Running")
        assert await fits_the_width(phone)
        await phone.screenshot(path=str(artifacts_dir / "phone-overview.png"), full_page=True)

        await phone.click("#tasks-button")
        await expect(phone.locator("#tasks-panel .task-row")).to_have_count(1)
        assert await fits_the_width(phone)
        await phone.screenshot(path=str(artifacts_dir / "phone-dialog.png"))
        await phone.keyboard.press("Escape")

        await phone.goto(f"/wait/{task['id']}")
        await expect(phone.locator("#wait-progress")).to_contain_text("rounds")
        assert await fits_the_width(phone)
        await phone.screenshot(path=str(artifacts_dir / "phone-waiting.png"))

        await phone.goto(f"/tasks/{task['id']}")
        await expect(phone.locator("#detail h1")).to_contain_text("test.count")
        assert await fits_the_width(phone)
        await phone.screenshot(path=str(artifacts_dir / "phone-detail.png"), full_page=True)
    finally:
        await context.close()
