"""The waiting page in a real browser: live progress, then on with a flash."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, Request, expect

from tests.support.browser import Stack

pytestmark = pytest.mark.e2e


async def test_the_waiting_page_shows_progress_then_goes_on_with_the_success_flash(
    page: Page, stack: Stack, artifacts_dir: Path
) -> None:
    # Given a counting task queued from the form, to be waited for
    await page.goto("/")
    await page.fill("#count-rounds", "4")
    await page.fill("#count-round-s", "1")
    await page.click('#count-form button[data-mode="wait"]')

    # When the waiting page shows it
    await page.wait_for_url(re.compile(r"/wait/[0-9a-f-]+$"))
    task_id = page.url.rsplit("/", 1)[1]
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    await expect(page.locator("#wait-header")).to_have_text("Counting 4 rounds")
    await expect(page.locator("#wait-message")).to_contain_text("counts one round at a time")
    await expect(page.locator("#wait-progress")).to_contain_text(re.compile(r"[1-3] / 4 rounds"))
    await page.screenshot(path=str(artifacts_dir / "waiting-page.png"))

    # Then, when the task completes, it goes on to ui.next_url with ui.success_message
    await page.wait_for_url(f"{stack.base_url}/")
    flash = page.locator(".flash")
    await expect(flash).to_have_attribute("data-level", "success")
    await expect(flash).to_contain_text("Counted 4 rounds.")

    # And the page learned of the end by push: nothing asked for the task's state over HTTP,
    # and the one request about the task is the outcome, asked once
    api_calls = [r.url for r in requests if "/api/v1/tasks" in r.url]
    assert api_calls == [f"{stack.base_url}/api/v1/tasks/{task_id}/outcome"], api_calls
    assert not [r for r in requests if r.url.endswith(f"/api/v1/tasks/{task_id}")]


async def test_a_failing_task_goes_on_with_the_failure_flash_and_its_error(
    page: Page, stack: Stack
) -> None:
    task = await stack.submit(
        "test.fail",
        {"after_s": 3.0, "message": "the provider said no"},
        ui={
            "header": "Adding the provider",
            "message": "Checking the credentials.",
            "next_url": "/#providers",
            "success_message": "Provider added.",
            "failure_message": "Could not add the provider",
        },
    )

    # The header is in the page as served: on a busy machine the task may end (and the page go
    # on) before an expectation on the live page would look.
    served = await page.goto(f"/wait/{task['id']}")
    assert served is not None
    assert '<h1 id="wait-header">Adding the provider</h1>' in await served.text()

    await page.wait_for_url(f"{stack.base_url}/#providers")
    flash = page.locator(".flash")
    await expect(flash).to_have_attribute("data-level", "error")
    await expect(flash).to_contain_text("Could not add the provider: the provider said no")


async def test_waiting_for_a_task_that_already_finished_goes_on_at_once(
    page: Page, stack: Stack
) -> None:
    task = await stack.submit(
        "test.count",
        {"rounds": 1, "round_s": 0},
        ui={"next_url": "/?done", "success_message": "Already done."},
    )
    await stack.wait_final(task["id"])

    await page.goto(f"/wait/{task['id']}")

    await page.wait_for_url(f"{stack.base_url}/?done")
    await expect(page.locator(".flash")).to_contain_text("Already done.")


async def test_the_on_ready_hook_of_a_task_type_decides_where_to_go_and_what_to_say(
    page: Page, stack: Stack
) -> None:
    # The demo VM type's hook (its on-ready hook) names the VM and links back to it
    await page.goto("/")
    vm = page.locator('[data-vm="vm-db-01"]')
    await vm.locator('button[data-action="wait"]').click()

    await page.wait_for_url(re.compile(r"/wait/"))
    await expect(page.locator("#wait-header")).to_have_text("Powering off db-01")
    await page.wait_for_url(f"{stack.base_url}/#vm-db-01")
    await expect(page.locator(".flash")).to_contain_text("VM db-01 is powered off.")
    await expect(vm.locator(".chip")).to_have_text("Powered off")
