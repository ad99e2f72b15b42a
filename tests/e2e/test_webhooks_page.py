"""The webhooks page in a real browser: an endpoint added with its secret shown once, its
deliveries and attempts, a replay, a rotation, disabling, enabling and removing it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Page, expect
from standardwebhooks.webhooks import Webhook

from services.webhooks.app import Sender
from shared.settings import Settings
from tests.support import eventually
from tests.support.browser import Stack
from tests.support.webhook_receiver import Received, Receiver

pytestmark = pytest.mark.e2e


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test's settings, webhooks allowed to the receiver on 127.0.0.1, retried quickly."""
    return settings.model_copy(
        update={
            "webhook_allow_loopback": True,
            "webhook_retry_base_s": 0.2,
            "webhook_poll_s": 0.1,
            "webhooks_port": 0,
        }
    )


@pytest.fixture
async def sender(settings: Settings) -> AsyncIterator[Sender]:
    """A running webhook sender."""
    running = Sender(settings)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real HTTP receiver on 127.0.0.1."""
    async with Receiver() as running:
        yield running


async def test_a_user_manages_an_endpoint_and_watches_its_deliveries(
    page: Page, stack: Stack, sender: Sender, receiver: Receiver, artifacts_dir: Path
) -> None:
    # Given the webhooks page, reached from the top bar
    await page.goto("/")
    await page.get_by_role("link", name="Webhooks").click()
    await expect(page.locator("h1")).to_have_text("Webhooks")
    await expect(page.locator("#endpoint-list")).to_contain_text("No endpoints yet")

    # When the user adds an endpoint for every ending and the start of tasks
    await page.fill("#webhook-url", receiver.url("/ui"))
    await page.check('input[value="task.started"]')
    await page.fill("#webhook-description", "my CI")
    await page.get_by_role("button", name="Add endpoint").click()

    # Then its secret is shown once, and the endpoint is listed, enabled
    secret_box = page.locator("#secret-value")
    await expect(secret_box).to_contain_text("whsec_")
    secret = (await secret_box.text_content()) or ""
    row = page.locator(".endpoint")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text(receiver.url("/ui"))
    await expect(row.locator(".chip")).to_have_text("Enabled")
    await page.get_by_role("button", name="I have stored it").click()
    await expect(page.locator("#secret-panel")).to_be_hidden()
    await page.reload()
    await expect(page.locator(".endpoint")).to_have_count(1)
    assert secret not in await page.content()

    # And a task's start and end reach the receiver, signed with that secret
    await eventually(_stream_open(sender), bool)
    task = await stack.submit("test.noop", {})
    await stack.wait_final(task["id"])
    got = await _arrived(receiver, "/ui", 2)
    kinds = sorted(Webhook(secret).verify(r.body, r.headers)["type"] for r in got)
    assert kinds == ["task.completed", "task.started"]

    # And the deliveries are listed with their attempts
    row = page.locator(".endpoint")
    await row.get_by_role("button", name="Deliveries").click()
    deliveries = row.locator("table.deliveries tbody tr")
    await expect(deliveries).to_have_count(2)
    completed = deliveries.filter(has_text="task.completed")
    await expect(completed).to_contain_text("succeeded")
    await expect(completed).to_contain_text("HTTP 204")
    await page.screenshot(path=str(artifacts_dir / "webhooks.png"), full_page=True)

    # When one is replayed, it is sent again with the same webhook-id
    completed_id = await completed.get_attribute("data-id")
    await completed.get_by_role("button", name="Replay").click()
    again = await _arrived(receiver, "/ui", 3)
    assert again[-1].webhook_id == completed_id
    await expect(completed.locator(".attempts li")).to_have_count(2)

    # When the secret is rotated, a new one is shown and the old one signs beside it
    await row.get_by_role("button", name="Rotate secret").click()
    await page.locator("#confirm-dialog").get_by_role("button", name="Rotate").click()
    await expect(page.locator("#secret-value")).not_to_have_text(secret)
    await expect(page.locator("#secret-note")).to_contain_text("previous secret signs too")
    await expect(page.locator(".endpoint")).to_contain_text("Previous secret signs until")

    # When it is disabled, it says so and why; enabled again, it is back
    await page.locator(".endpoint").get_by_role("button", name="Disable").click()
    await expect(page.locator(".endpoint .chip")).to_have_text("Disabled")
    await expect(page.locator(".endpoint-why")).to_have_text("disabled by dev")
    await page.locator(".endpoint").get_by_role("button", name="Enable").click()
    await expect(page.locator(".endpoint .chip")).to_have_text("Enabled")

    # When it is removed, after a confirmation, it is gone
    await page.locator(".endpoint").get_by_role("button", name="Remove").click()
    await page.locator("#confirm-dialog").get_by_role("button", name="Remove").click()
    await expect(page.locator("#endpoint-list")).to_contain_text("No endpoints yet")


async def test_a_refused_destination_is_explained_on_the_form(page: Page, stack: Stack) -> None:
    await page.goto("/webhooks")
    await page.fill("#webhook-url", "http://169.254.169.254/latest/meta-data/")
    await page.get_by_role("button", name="Add endpoint").click()
    await expect(page.locator("#webhook-error")).to_contain_text("not a public address")
    await expect(page.locator("#endpoint-list")).to_contain_text("No endpoints yet")


def _stream_open(sender: Sender) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return sender.recorder.streams_opened > 0

    return probe


async def _arrived(receiver: Receiver, path: str, count: int) -> list[Received]:
    async def probe() -> list[Received]:
        return receiver.at(path)

    return await eventually(probe, lambda got: len(got) >= count, timeout_s=30)
