"""Browser fixtures: Debian's headless Chromium, driven by Playwright, against the services.

Playwright's own browser downloads are never used: the browser is the system's `chromium`
(`TASKLIGHT_CHROMIUM` overrides the path). Without it, the browser tests skip on a laptop and
fail under CI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from services.notifier.app import Notifier
from services.worker.app import Worker
from shared.auth import DEV_PASSWORD, DEV_USER
from shared.lifecycle import FINAL_STATES
from shared.settings import Settings
from tests.support import eventually

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FINAL = {state.value for state in FINAL_STATES}
#: Milliseconds a browser expectation waits; generous for a busy 2-core machine.
EXPECT_TIMEOUT_MS = 20_000
expect.set_options(timeout=EXPECT_TIMEOUT_MS)


def chromium_path() -> str | None:
    """The system Chromium, if installed."""
    configured = os.environ.get("TASKLIGHT_CHROMIUM")
    if configured:
        return configured
    return shutil.which("chromium") or shutil.which("chromium-browser")


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


async def sign_in(
    context: BrowserContext, username: str = DEV_USER, password: str = DEV_PASSWORD
) -> None:
    """Sign the browser context in (its request API shares the context's cookies); the sign-in
    page itself is tested in test_sign_in.py."""
    response = await context.request.post(
        "/api/v1/session", data={"username": username, "password": password}
    )
    assert response.ok, await response.text()


@dataclass
class Stack:
    """The running services of one test, and a REST client for setting the scene."""

    base_url: str
    api: httpx.AsyncClient
    settings: Settings

    async def submit(self, name: str, args: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """Submit a task over REST; the submitted task."""
        response = await self.api.post("/api/v1/tasks", json={"name": name, "args": args, **extra})
        assert response.status_code == 202, response.text
        task: dict[str, Any] = response.json()
        return task

    async def wait_final(self, task_id: str) -> dict[str, Any]:
        """The task once it has finished (read over REST: this is the test, not the page)."""

        async def read() -> dict[str, Any]:
            body: dict[str, Any] = (await self.api.get(f"/api/v1/tasks/{task_id}")).json()
            return body

        return await eventually(read, lambda t: t["state"] in FINAL)


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
