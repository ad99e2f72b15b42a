"""The browser tests' helpers: Debian's Chromium, signing a browser context in, and the running
stack a page test sets its scene with."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Any

import httpx
from playwright.async_api import BrowserContext

from shared.auth import DEV_PASSWORD, DEV_USER
from shared.settings import Settings
from tests.support import FINAL, eventually

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


#: Milliseconds a browser expectation waits; generous for a busy 2-core machine.
EXPECT_TIMEOUT_MS = 20_000


def chromium_path() -> str | None:
    """The system Chromium, if installed."""
    configured = os.environ.get("TASKLIGHT_CHROMIUM")
    if configured:
        return configured
    return shutil.which("chromium") or shutil.which("chromium-browser")


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
