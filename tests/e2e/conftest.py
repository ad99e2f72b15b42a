"""Browser fixtures: Debian's headless Chromium, driven by Playwright, against the services.

Playwright's own browser downloads are never used: the browser is the system's `chromium`
(`TASKLIGHT_CHROMIUM` overrides the path). Without it, the browser tests skip on a laptop and
fail under CI.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from services.notifier.app import Notifier
from services.worker.app import Worker
from shared.settings import Settings
from tests.support.browser import CHROMIUM_ARGS, EXPECT_TIMEOUT_MS, Stack, chromium_path, sign_in

expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the session."""
    executable = chromium_path()
    if executable is None:
        message = "no chromium installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, timeout=60_000
        )
        yield launched
        await launched.close()


@pytest.fixture
async def stack(
    settings: Settings, api: httpx.AsyncClient, worker: Worker, notifier: Notifier
) -> AsyncIterator[Stack]:
    """api, worker and notifier, all running on the test's database and queues."""
    yield Stack(base_url=f"http://127.0.0.1:{settings.api_port}", api=api, settings=settings)
    # Long tasks a test left running would hold up the worker's shutdown.
    pending = await api.get("/api/v1/tasks", params={"group": "pending", "limit": 500})
    for task in pending.json()["results"]:
        await api.post(f"/api/v1/tasks/{task['id']}/cancel")


@pytest.fixture
async def page(browser: Browser, stack: Stack) -> AsyncIterator[Page]:
    """A fresh browser tab (its own cookies and storage) with the stack as its base URL."""
    context = await browser.new_context(
        base_url=stack.base_url, viewport={"width": 1280, "height": 860}
    )
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    await sign_in(context)
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
async def module_page(browser: Browser, api: httpx.AsyncClient) -> AsyncIterator[Page]:
    """A tab on the API's origin (no worker or notifier) for testing `tasklight.js` by itself."""
    context = await browser.new_context(base_url=str(api.base_url))
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    await sign_in(context)
    tab = await context.new_page()
    await tab.goto("/static/favicon.svg")
    yield tab
    await context.close()
