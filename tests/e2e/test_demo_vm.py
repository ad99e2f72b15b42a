"""Queue and tell in a real browser: a simulated VM changes state on screen by push."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.support.browser import Stack

pytestmark = pytest.mark.e2e


async def test_powering_off_a_vm_says_queued_then_shows_it_off_without_a_reload(
    page: Page, stack: Stack, artifacts_dir: Path
) -> None:
    # Given the overview with the demo VMs, all running
    await page.goto("/")
    await page.evaluate("window.__notReloaded = true")
    vm = page.locator('[data-vm="vm-web-01"]')
    await expect(vm.locator(".chip")).to_have_text("Running")

    # When the user powers web-01 off
    await vm.locator('button[data-action="queue"]').click()

    # Then the page answers at once that the task is queued, and the VM is busy
    await expect(page.locator(".flash")).to_contain_text("Task queued: power off web-01")
    await expect(vm).to_have_attribute("data-busy", "true")
    await expect(vm.locator(".vm-status")).to_contain_text("Powering off")
    # And when the worker is done, the VM shows powered off, with no reload
    await expect(vm.locator(".chip")).to_have_text("Powered off")
    await expect(vm).to_have_attribute("data-busy", "false")
    assert await page.evaluate("window.__notReloaded === true")
    await page.screenshot(path=str(artifacts_dir / "overview-vm-off.png"))
    # And a fresh page agrees: the state is derived from the completed task
    await page.reload()
    await expect(vm.locator(".chip")).to_have_text("Powered off")
    await expect(page.locator('[data-vm="vm-db-01"] .chip')).to_have_text("Running")
