"""Signing in and out of the web UI in a real browser, and a ticket-authenticated socket."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from shared.auth import DEV_PASSWORD, DEV_USER
from tests.support.browser import EXPECT_TIMEOUT_MS, Stack

pytestmark = pytest.mark.e2e


@pytest.fixture
async def signed_out(browser: Browser, stack: Stack) -> AsyncIterator[Page]:
    """A tab of a browser that has not signed in."""
    context: BrowserContext = await browser.new_context(base_url=stack.base_url)
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    tab = await context.new_page()
    yield tab
    await context.close()


async def test_a_page_asks_to_sign_in_then_comes_back_live(signed_out: Page, stack: Stack) -> None:
    task = await stack.submit("test.count", {"rounds": 1, "round_s": 0})
    page = signed_out

    # A task's page, without a session, leads to the sign-in page and keeps the address.
    await page.goto(f"/tasks/{task['id']}")
    await page.wait_for_url(re.compile(r"/login\?next="))
    await expect(page.locator(".dev-hint")).to_contain_text("Development mode")

    # A wrong password says so and stays.
    await page.fill("#login-username", DEV_USER)
    await page.fill("#login-password", "not-the-password")
    await page.click('#login-form button[type="submit"]')
    await expect(page.locator("#login-error")).to_have_text("Wrong user name or password.")

    # The right one goes back to the task, signed in, with live updates.
    await page.fill("#login-password", DEV_PASSWORD)
    await page.click('#login-form button[type="submit"]')
    await page.wait_for_url(f"{stack.base_url}/tasks/{task['id']}")
    await expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    await expect(page.locator(".user")).to_have_text(DEV_USER)

    # The session cookie is out of the page's reach.
    cookies = await page.evaluate("document.cookie")
    assert "tasklight_session" not in cookies
    assert "tasklight_csrf" in cookies


async def test_signing_out_ends_the_session_and_returns_to_the_sign_in_page(
    page: Page, stack: Stack
) -> None:
    await page.goto("/")
    await expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    await page.click("#sign-out")
    await page.wait_for_url(re.compile(r"/login$"))
    await page.goto("/")
    await page.wait_for_url(re.compile(r"/login\?next=%2F$"))


async def test_writes_from_the_ui_carry_the_csrf_token(page: Page, stack: Stack) -> None:
    # The form's submission is a cookie-authenticated POST: it is accepted only with the token.
    await page.goto("/")
    await page.fill("#count-rounds", "1")
    await page.fill("#count-round-s", "0")
    async with page.expect_response(
        lambda r: r.url.endswith("/api/v1/tasks") and r.request.method == "POST"
    ) as submitted:
        await page.click('#count-form button[data-mode="queue"]')
    response = await submitted.value
    assert response.status == 202
    assert response.request.headers.get("x-csrf-token")


async def test_tasklight_js_with_tickets_reaches_a_notifier_the_cookie_does_not(
    page: Page, stack: Stack
) -> None:
    task = await stack.submit("test.count", {"rounds": 1, "round_s": 0})
    await page.goto("/static/favicon.svg")
    # The session cookie belongs to 127.0.0.1; `localhost` is another host, which it never
    # reaches: the situation of a notifier on another site.
    other_host = f"ws://localhost:{stack.settings.notifier_port}/ws"
    outcome = await page.evaluate(
        """async ([notifierUrl, id]) => {
          const { TaskLight } = await import("/static/tasklight.js");
          const plain = new TaskLight({ notifierUrl, pingIntervalMs: 0 });
          const refused = new Promise((resolve) => plain.on("unauthorized", resolve));
          plain.subscribe({ tasks: [id] }, {});
          const closed = await refused;
          plain.close();
          const ticketed = new TaskLight({ notifierUrl, tickets: true, pingIntervalMs: 0 });
          const task = await ticketed.waitFor(id, { timeoutMs: 15000 });
          ticketed.close();
          return { refusedWith: closed.code, state: task.state };
        }""",
        [other_host, task["id"]],
    )
    assert outcome == {"refusedWith": 4401, "state": "completed"}
