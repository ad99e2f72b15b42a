"""The UI at desktop and phone widths: nothing overflows, and the screenshots of docs/ and the
README come from here. Every run leaves them in test-artifacts/; `make screenshots` (which sets
TASKLIGHT_SCREENSHOTS_DIR=docs) writes them into docs/ to commit."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect

from services.stack import ROOT
from tests.support.browser import EXPECT_TIMEOUT_MS, Stack, sign_in

pytestmark = pytest.mark.e2e

#: The widths every page is shot at: a desktop and a phone.
VIEWPORTS: dict[str, ViewportSize] = {
    "desktop": {"width": 1280, "height": 860},
    "phone": {"width": 390, "height": 844},
}


@pytest.fixture
def shots_dir(artifacts_dir: Path) -> Path:
    """Where the screenshots go: docs/ for `make screenshots`, else the test artifacts."""
    configured = os.environ.get("TASKLIGHT_SCREENSHOTS_DIR")
    return (ROOT / configured) if configured else artifacts_dir


async def fits_the_width(page: Page) -> bool:
    """Whether the page has no horizontal scrolling."""
    result: bool = await page.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth + 1"
    )
    return result


async def nothing_spills(page: Page, selector: str) -> list[str]:
    """Visible elements that stick out of the boxes `selector` matches, by their text."""
    spilled: list[str] = await page.evaluate(
        """(selector) => [...document.querySelectorAll(selector)].flatMap((box) => {
          const outer = box.getBoundingClientRect();
          return [...box.querySelectorAll('*')]
            .filter((el) => el.getClientRects().length && !el.closest('pre, table'))
            .filter((el) => {
              const r = el.getBoundingClientRect();
              return r.right > outer.right + 0.5 || r.left < outer.left - 0.5;
            })
            .map((el) => el.textContent.trim().slice(0, 60));
        })""",
        selector,
    )
    return spilled


@pytest.fixture(params=list(VIEWPORTS))
async def device(
    request: pytest.FixtureRequest, browser: Browser, stack: Stack
) -> AsyncIterator[tuple[str, Page]]:
    """A signed-in tab at one of VIEWPORTS, and its name."""
    name = request.param
    phone = name == "phone"
    context = await browser.new_context(
        base_url=stack.base_url,
        viewport=VIEWPORTS[name],
        device_scale_factor=2 if phone else 1,
        is_mobile=phone,
        has_touch=phone,
    )
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    await sign_in(context)
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield name, tab
    await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(shots_dir: Path, page_name: str, device: str) -> str:
    """The file of one screenshot: docs' names are screenshot-<page>[-phone].png."""
    suffix = "" if device == "desktop" else f"-{device}"
    return str(shots_dir / f"screenshot-{page_name}{suffix}.png")


async def test_the_pages_in_every_state_fit_and_are_shot(
    device: tuple[str, Page], stack: Stack, shots_dir: Path
) -> None:
    name, page = device
    # Given tasks in every state: failed, finished after a retry (waited for first, so that
    # the long ones are still running when the pictures are taken), running (one with a title
    # of its own)
    failed = await stack.submit("test.fail", {"after_s": 0, "message": "quota exceeded"})
    retried = await stack.submit("test.flaky", {"failures": 1})
    await stack.wait_final(failed["id"])
    await stack.wait_final(retried["id"])
    counting = await stack.submit("test.count", {"rounds": 60, "round_s": 0.5})
    resizing = await stack.submit(
        "test.count",
        {"rounds": 12, "round_s": 2},
        ui={"header": "Resizing the pool", "message": "Placement groups are being moved."},
    )
    await stack.submit("demo.vm_power_off", {"vm": "vm-batch-07", "delay_s": 30})

    # The overview and the dialog
    await page.goto("/")
    await expect(page.locator('[data-vm="vm-web-01"] .chip')).to_have_text("Running")
    assert await fits_the_width(page)
    await page.click("#tasks-button")
    rows = page.locator("#tasks-panel .task-row")
    await expect(rows).to_have_count(3)
    await expect(page.locator('[data-count-for="failed"]')).to_have_text("1")
    await expect(page.locator('[data-count-for="finished"]')).to_have_text("1")
    await expect(rows.filter(has_text=re.compile(r"\b([1-9]|1[01])/12 rounds"))).to_have_count(1)
    await expect(rows.filter(has_text="Resizing the pool")).to_have_count(1)
    assert await nothing_spills(page, "#tasks-dialog") == []
    assert await fits_the_width(page)
    await page.screenshot(path=shot(shots_dir, "dialog", name))
    await page.keyboard.press("Escape")

    # The waiting page
    await page.goto(f"/wait/{resizing['id']}")
    await expect(page.locator("#wait-progress")).to_contain_text("rounds")
    assert await fits_the_width(page)
    await page.screenshot(path=shot(shots_dir, "waiting", name))

    # The detail page of a task that runs, and of one that was retried
    await page.goto(f"/tasks/{counting['id']}")
    await expect(page.locator("#detail h1")).to_contain_text("Count")
    await expect(page.locator(".report-line")).to_contain_text("rounds · Running")
    assert await nothing_spills(page, "#detail .card") == []
    assert await fits_the_width(page)
    await page.screenshot(path=shot(shots_dir, "detail", name), full_page=True)
    await page.goto(f"/tasks/{retried['id']}")
    await expect(page.locator(".runs .run")).to_have_count(2)
    assert await nothing_spills(page, "#detail .card") == []
    await page.screenshot(path=shot(shots_dir, "detail-retried", name), full_page=True)
