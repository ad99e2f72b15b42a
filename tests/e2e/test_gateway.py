"""The compose gateway (deploy/gateway/Caddyfile, run by Debian's `caddy`) in front of the real
services: the web UI, the REST API and the WebSocket on one origin, as `docker compose up` serves
them, with the page's session cookie carried through to the notifier."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from services.stack import free_port
from shared.auth import DEV_TOKEN
from shared.settings import Settings
from tests.support import eventually
from tests.support.browser import EXPECT_TIMEOUT_MS, Stack, sign_in
from tests.support.deployment import CADDYFILE, required_tool

pytestmark = pytest.mark.e2e

#: Seconds Caddy gets to stop before it is killed.
STOP_TIMEOUT_S = 10


@pytest.fixture
def gateway_port() -> int:
    """Where the gateway listens (compose publishes 8000; a test takes a free port)."""
    return free_port()


@pytest.fixture
def settings(settings: Settings, gateway_port: int) -> Settings:
    """The test's settings, with the gateway's origin as the one whose pages may open a socket
    (what compose sets in TASKLIGHT_ALLOWED_ORIGINS)."""
    return settings.model_copy(update={"allowed_origins": f"http://127.0.0.1:{gateway_port}"})


@pytest.fixture
async def gateway(
    stack: Stack,
    settings: Settings,
    gateway_port: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[str]:
    """Caddy with the compose Caddyfile, its upstreams pointed at this test's api and notifier;
    the gateway's base URL. The api tells pages `/ws`, as compose configures it."""
    monkeypatch.setenv("TASKLIGHT_NOTIFIER_PUBLIC_URL", "/ws")
    caddy = required_tool("caddy", "caddy")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "GATEWAY_PORT": str(gateway_port),
        "API_UPSTREAM": f"127.0.0.1:{settings.api_port}",
        "NOTIFIER_UPSTREAM": f"127.0.0.1:{settings.notifier_port}",
    }
    log_path = tmp_path / "caddy.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *[caddy, "run", "--adapter", "caddyfile", "--config", str(CADDYFILE)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{gateway_port}"
    try:
        async with httpx.AsyncClient(base_url=base_url) as client:

            async def health() -> int:
                assert process.returncode is None, f"caddy exited: {log_path.read_text()}"
                try:
                    return (await client.get("/healthz")).status_code
                except httpx.TransportError:
                    return 0

            await eventually(health, lambda status: status == 200, timeout_s=30)
        yield base_url
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_a_page_through_the_gateway_goes_live_on_its_own_origin(
    browser: Browser, stack: Stack, gateway: str
) -> None:
    # Given a browser signed in through the gateway (its cookie is the gateway's origin's)
    context = await browser.new_context(base_url=gateway)
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    try:
        await sign_in(context)
        page = await context.new_page()

        # When it opens the overview there
        await page.goto("/")

        # Then the page is told the WebSocket of its own origin, and the socket is live: the
        # notifier accepted the gateway's Origin and the session cookie
        notifier = page.locator('meta[name="tasklight-notifier"]')
        await expect(notifier).to_have_attribute("content", f"{gateway.replace('http', 'ws')}/ws")
        await expect(page.locator("#connection")).to_have_attribute("data-status", "live")

        # And a task's detail page, open while it runs, sees it complete: pushed through the
        # gateway (the page does not poll)
        task = await stack.submit("test.count", {"rounds": 3, "round_s": 1.0})
        await page.goto(f"/tasks/{task['id']}")
        body = page.locator("body")
        await expect(body).to_have_attribute("data-task-state", "running")
        await expect(body).to_have_attribute("data-task-state", "completed")
    finally:
        await context.close()


async def test_the_gateway_passes_websockets_and_the_notifier_still_checks_their_origin(
    stack: Stack, gateway: str
) -> None:
    url = f"{gateway.replace('http', 'ws')}/ws"
    headers = {"Authorization": f"Bearer {DEV_TOKEN}"}

    # A page of the gateway's own origin gets its socket, through the gateway
    async with connect(url, origin=Origin(gateway), additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "ping", "id": "p1"}))
        async with asyncio.timeout(10):
            assert json.loads(await ws.recv()) == {"type": "pong", "id": "p1"}

    # Another site's page is refused, as it would be without the gateway
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, origin=Origin("http://evil.example"), additional_headers=headers):
            pass
    assert refused.value.response.status_code == 403
