"""`tasklight webhooks …` against a real api: each command, its output and its exit status."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator

import pytest
from tasklight.cli import main

from services.api.app import create_app
from shared.auth import DEV_TOKEN
from shared.settings import Settings
from tests.support.servers import ServerThread

pytestmark = pytest.mark.integration


@pytest.fixture
async def api_url(settings: Settings) -> AsyncIterator[str]:
    """An api that allows webhooks to loopback, and its address."""
    allowed = settings.model_copy(update={"webhook_allow_loopback": True})
    async with ServerThread(create_app(allowed), allowed.api_port):
        yield f"http://127.0.0.1:{allowed.api_port}"


async def cli(api_url: str, *args: str, token: str | None = DEV_TOKEN) -> tuple[int, str, str]:
    """Run `tasklight --api-url URL [--token T] ARGS` in a thread; (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["--api-url", api_url, *(["--token", token] if token else []), *args]

    def run() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return main(argv)

    status = await asyncio.to_thread(run)
    return status, out.getvalue(), err.getvalue()


async def test_each_webhooks_command_does_what_it_says(api_url: str) -> None:
    status, out, _ = await cli(
        api_url,
        "webhooks",
        "add",
        "http://127.0.0.1:9/hook",
        "--event",
        "task.failed",
        "--task-type",
        "demo.*",
        "--description",
        "pager",
    )
    assert status == 0
    endpoint_id = out.split()[0]
    assert "secret (shown this once): whsec_" in out
    status, out, _ = await cli(api_url, "webhooks", "list")
    assert (status, out.split()[:3]) == (0, [endpoint_id, "enabled", "http://127.0.0.1:9/hook"])
    status, out, _ = await cli(api_url, "webhooks", "show", endpoint_id)
    assert status == 0
    assert "task_types: ['demo.*']" in out
    assert "whsec_" not in out
    status, out, _ = await cli(api_url, "webhooks", "disable", endpoint_id)
    assert (status, out.split()[1]) == (0, "disabled")
    _, out, _ = await cli(api_url, "webhooks", "show", endpoint_id)
    assert "disabled: disabled by dev" in out
    status, out, _ = await cli(api_url, "webhooks", "enable", endpoint_id)
    assert (status, out.split()[1]) == (0, "enabled")
    status, out, _ = await cli(api_url, "webhooks", "rotate", endpoint_id)
    assert status == 0
    assert "secret (shown this once): whsec_" in out
    assert "the previous secret signs too until" in out
    status, out, _ = await cli(api_url, "webhooks", "deliveries", endpoint_id)
    assert (status, out.strip()) == (0, "no deliveries yet")
    status, _, err = await cli(api_url, "webhooks", "replay", endpoint_id, "msg_none")
    assert status == 4
    assert "no delivery msg_none" in err
    status, out, _ = await cli(api_url, "--json", "webhooks", "remove", endpoint_id)
    assert (status, out.strip()) == (0, f'{{"removed": "{endpoint_id}"}}')
    status, _, err = await cli(api_url, "webhooks", "show", endpoint_id)
    assert status == 4


async def test_a_refused_destination_or_a_missing_token_ends_with_its_status(api_url: str) -> None:
    status, _, err = await cli(api_url, "webhooks", "add", "http://10.9.8.7/")
    assert status == 2
    assert "not a public address" in err
    status, _, err = await cli(api_url, "webhooks", "list", token=None)
    assert status == 6
    status, _, err = await cli("http://127.0.0.1:9", "webhooks", "list")
    assert status == 3
    assert "unreachable" in err
