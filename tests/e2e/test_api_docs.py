"""The interactive API docs render in Chromium with no network beyond the api itself: Swagger UI
and ReDoc come from the application, not from a CDN."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, expect

from tests.support.browser import EXPECT_TIMEOUT_MS

pytestmark = pytest.mark.e2e

REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture
async def offline_page(
    browser: Browser, api: httpx.AsyncClient
) -> AsyncIterator[tuple[Page, list[str]]]:
    """A tab that reaches the api's origin and nothing else; the refused addresses."""
    origin = urlsplit(str(api.base_url)).netloc
    refused: list[str] = []
    context = await browser.new_context(base_url=str(api.base_url))
    context.set_default_timeout(EXPECT_TIMEOUT_MS)

    async def only_the_api(route: Route) -> None:
        if urlsplit(route.request.url).netloc == origin:
            await route.continue_()
        else:
            refused.append(route.request.url)
            await route.abort("internetdisconnected")

    await context.route("**/*", only_the_api)
    page = await context.new_page()
    yield page, refused
    await context.close()


async def test_swagger_ui_renders_the_operations_offline(
    offline_page: tuple[Page, list[str]],
) -> None:
    page, refused = offline_page
    await page.goto("/docs")

    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("tasklight")
    await expect(
        page.locator(".opblock-summary-path", has_text="/api/v1/tasks").first
    ).to_be_visible()
    assert refused == []


async def test_redoc_renders_the_operations_offline(offline_page: tuple[Page, list[str]]) -> None:
    page, refused = offline_page
    await page.goto("/redoc")

    await expect(page.locator("h1", has_text="tasklight")).to_be_visible()
    await expect(page.get_by_text("/api/v1/tasks/{task_id}").first).to_be_attached()
    # The only address outside: ReDoc's own footer logo, which its bundle leaves out when it does
    # not load (no broken image).
    assert set(refused) <= {REDOC_LOGO}
    await expect(page.locator('img[alt="redocly logo"]')).to_have_count(0)
