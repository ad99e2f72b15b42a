"""The UI cannot be framed by another site's page (clickjacking), in a real Chromium."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.async_api import Browser, ConsoleMessage

from tests.support import eventually
from tests.support.browser import EXPECT_TIMEOUT_MS, Stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def framing_site(stack: Stack) -> Iterator[str]:
    """Another origin whose page frames the UI's sign-in page and its overview."""
    page = (
        f'<!doctype html><iframe id="login" src="{stack.base_url}/login"></iframe>'
        f'<iframe id="home" src="{stack.base_url}/"></iframe>'
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # `localhost`, not 127.0.0.1: another origin than the UI's.
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_another_sites_page_cannot_frame_the_ui(
    browser: Browser, stack: Stack, framing_site: str
) -> None:
    context = await browser.new_context()
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    page = await context.new_page()
    refused: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "frame-ancestors" in message.text:
            refused.append(message.text)

    page.on("console", on_console)
    try:
        await page.goto(framing_site)

        async def both_refused() -> list[str]:
            return refused

        await eventually(both_refused, lambda seen: len(seen) >= 2)
        for frame in page.frames[1:]:
            assert await frame.locator("#login-form").count() == 0
            assert await frame.locator("#main").count() == 0
    finally:
        await context.close()
