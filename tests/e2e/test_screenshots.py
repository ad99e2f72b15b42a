"""The UI at desktop and phone widths: nothing overflows, and the screenshots of docs/ and the
README come from here. Every run leaves them in test-artifacts/; `make screenshots` (which sets
TASKLIGHT_SCREENSHOTS_DIR=docs) writes them into docs/ to commit.

So that stale screenshots get noticed, each shot's visible text is kept beside the images in
docs/screenshots.txt, with what differs from run to run (ids, times, durations, numbers)
normalised away, and the image's SHA-256. `make screenshots` writes it; every other run fails
when a scene's text no longer matches it: the UI's wording changed, and the pictures in docs/
are to be retaken (tests/unit/test_screenshots_digest.py checks the images are the recorded
ones)."""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect

from services.stack import ROOT
from tests.support import eventually
from tests.support.browser import EXPECT_TIMEOUT_MS, Stack, sign_in
from tests.support.screenshots import DIGEST, normalised, read_digest, write_digest

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


class Scenes:
    """The shots one run takes, with their visible text: recorded into docs/screenshots.txt when
    the shots go to docs/, else compared with it."""

    def __init__(self, shots_dir: Path) -> None:
        self.recording = shots_dir.resolve() == DIGEST.parent.resolve()
        self.taken: dict[str, tuple[str, str]] = {}

    async def shoot(self, page: Page, path: str, *, full_page: bool = False) -> None:
        image = await page.screenshot(path=path, full_page=full_page)
        text: str = await page.evaluate("document.body.innerText")
        self.taken[Path(path).name] = (hashlib.sha256(image).hexdigest(), normalised(text))

    def finish(self) -> None:
        recorded = read_digest()
        if self.recording:
            write_digest({**recorded, **self.taken})
            return
        changed = []
        for name, (_, text) in self.taken.items():
            committed = recorded.get(name, ("", ""))[1]
            if text != committed:
                diff = difflib.unified_diff(
                    committed.splitlines(), text.splitlines(), "docs", "now", lineterm=""
                )
                changed.append(f"{name}:\n" + "\n".join(diff))
        assert changed == [], (
            "the UI's visible text differs from the screenshots in docs/: run `make screenshots` "
            "and commit docs/ (screenshots and screenshots.txt)\n" + "\n".join(changed)
        )


@pytest.fixture
def scenes(shots_dir: Path) -> Scenes:
    return Scenes(shots_dir)


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
        # One locale and time zone: the same text (and pictures) on every machine
        locale="en-US",
        timezone_id="UTC",
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


async def reporting(stack: Stack, task_id: str) -> None:
    """Once the task is held by a run and has reported progress: what its pictures show."""

    async def read() -> dict[str, Any]:
        body: dict[str, Any] = (await stack.api.get(f"/api/v1/tasks/{task_id}")).json()
        return body

    await eventually(read, lambda t: t["phase"] == "held" and t["progress_reports"], timeout_s=30)


async def live(page: Page) -> None:
    """The page is connected for live updates (a picture shows "live", not "connecting")."""
    await expect(page.locator("#connection")).to_have_attribute("data-status", "live")


async def test_the_pages_in_every_state_fit_and_are_shot(
    device: tuple[str, Page], stack: Stack, shots_dir: Path, scenes: Scenes
) -> None:
    name, page = device
    # Given tasks in every state: failed, finished after a retry (waited for first, so that
    # the long ones are still running when the pictures are taken), running (one with a title
    # of its own), each running one held and reporting before its pictures
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
    powering = await stack.submit("demo.vm_power_off", {"vm": "vm-batch-07", "delay_s": 30})
    for task in (counting, resizing, powering):
        await reporting(stack, task["id"])

    # The overview and the dialog
    await page.goto("/")
    await expect(page.locator('[data-vm="vm-web-01"] .chip')).to_have_text("Running")
    await live(page)
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
    await scenes.shoot(page, shot(shots_dir, "dialog", name))
    await page.keyboard.press("Escape")

    # The waiting page
    await page.goto(f"/wait/{resizing['id']}")
    await expect(page.locator("#wait-progress")).to_contain_text("rounds")
    await live(page)
    assert await fits_the_width(page)
    await scenes.shoot(page, shot(shots_dir, "waiting", name))

    # The detail page of a task that runs, and of one that was retried
    await page.goto(f"/tasks/{counting['id']}")
    await expect(page.locator("#detail h1")).to_contain_text("Count")
    await expect(page.locator(".report-line")).to_contain_text("rounds · Running")
    await expect(page.locator("table.history tbody tr")).to_have_count(2)
    await live(page)
    assert await nothing_spills(page, "#detail .card") == []
    assert await fits_the_width(page)
    await scenes.shoot(page, shot(shots_dir, "detail", name), full_page=True)
    await page.goto(f"/tasks/{retried['id']}")
    await expect(page.locator(".runs .run")).to_have_count(2)
    await expect(page.locator("#detail h1")).to_contain_text("Flaky")
    await expect(page.locator("table.history tbody tr")).not_to_have_count(0)
    await live(page)
    assert await nothing_spills(page, "#detail .card") == []
    await scenes.shoot(page, shot(shots_dir, "detail-retried", name), full_page=True)

    # Then the pictures of docs/ show what the UI shows now (or are now retaken)
    scenes.finish()
