"""No open redirect, in a real Chromium: every URL a page follows that a user or a task gave is
judged by one rule (shared/local_path.py, mirrored in static/ui/local-path.js), on the
cases of tests/data/local_paths.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from playwright.async_api import Browser, Page, expect

from shared.auth import DEV_PASSWORD, DEV_USER
from tests.support.browser import EXPECT_TIMEOUT_MS, Stack

pytestmark = pytest.mark.e2e

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "local_paths.json").read_text()
)
#: The cases a browser reads as another site: the family the rule exists for.
OFF_SITE = [c["url"] for c in CASES if c["local"] is None and "evil.example" in c["url"]]


def on_site(url: str, stack: Stack) -> bool:
    return urlsplit(url).netloc == urlsplit(stack.base_url).netloc


async def test_the_page_rule_and_the_server_rule_agree_on_every_case(page: Page) -> None:
    await page.goto("/")
    judged = await page.evaluate(
        """async (urls) => {
            const { localPath } = await import("/static/ui/local-path.js");
            return urls.map((url) => localPath(url));
        }""",
        [c["url"] for c in CASES],
    )
    assert judged == [c["local"] for c in CASES]


async def test_chromium_resolves_every_accepted_path_on_the_site_and_the_family_off_it(
    page: Page,
) -> None:
    """The list is about what a browser does, so ask one: what the rule accepts stays on the
    site, and the tab, newline and slash forms it refuses really are another host."""
    await page.goto("/")
    hosts = await page.evaluate(
        "(urls) => urls.map((url) => new URL(url, location.href).host)",
        [c["url"] for c in CASES],
    )
    own = urlsplit(page.url).netloc
    for case, host in zip(CASES, hosts, strict=True):
        if case["local"] is not None:
            assert host == own, case
    by_url = dict(zip([c["url"] for c in CASES], hosts, strict=True))
    for url in ("/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", " //evil.example"):
        assert by_url[url] == "evil.example", url


async def test_signing_in_goes_on_to_a_local_next_and_never_off_the_site(
    browser: Browser, stack: Stack
) -> None:
    context = await browser.new_context(base_url=stack.base_url)
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    page = await context.new_page()
    try:
        for url in [*OFF_SITE, "/ta\nsks/x?y=1"]:
            await context.clear_cookies()
            await page.goto(f"/login?next={quote(url, safe='')}")
            await page.fill("#login-username", DEV_USER)
            await page.fill("#login-password", DEV_PASSWORD)
            await page.click('#login-form button[type="submit"]')
            await page.wait_for_url(lambda address: urlsplit(address).path != "/login")
            assert on_site(page.url, stack), (url, page.url)
        assert urlsplit(page.url).path == "/tasks/x", page.url
    finally:
        await context.close()


async def test_a_waiting_page_never_follows_a_next_url_off_the_site(
    page: Page, stack: Stack
) -> None:
    for url in ("/\t/evil.example", "/\n/evil.example", "//evil.example", "https://evil.example/"):
        task = await stack.submit("test.count", {"rounds": 0, "round_s": 0}, ui={"next_url": url})
        await stack.wait_final(task["id"])
        await page.goto(f"/wait/{task['id']}")
        await page.wait_for_url(f"{stack.base_url}/tasks/{task['id']}")
        assert on_site(page.url, stack)
        await expect(page.locator("#detail")).to_be_visible()
