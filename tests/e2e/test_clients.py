"""The client packages' own test suites (clients/python/tests/, clients/js/test/), each run as its
users would run it, against the api, worker and notifier started here as processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.stack import ROOT, stop_processes
from shared.settings import Settings
from tests.support.browser import chromium_path
from tests.support.deployment import required_tool
from tests.support.processes import service_env, start_stack

pytestmark = pytest.mark.e2e

PYTHON_CLIENT = ROOT / "clients" / "python"
JS_CLIENT = ROOT / "clients" / "js"
#: Seconds a client suite may take on a busy machine (it takes about 30 s alone).
SUITE_TIMEOUT_S = 300


@pytest.fixture
async def stack_env(settings: Settings, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """The services as processes; the environment that points a client at them."""
    env = service_env(settings)
    processes = await start_stack(env, settings, tmp_path)
    try:
        yield env
    finally:
        await asyncio.to_thread(stop_processes, processes.values())


async def run(command: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run a suite; (exit status, its output)."""
    done = await asyncio.to_thread(
        subprocess.run,
        command,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=SUITE_TIMEOUT_S,
        check=False,
    )
    return done.returncode, done.stdout


@pytest.mark.timeout(SUITE_TIMEOUT_S + 60)
async def test_the_python_client_suite_passes_against_the_running_services(
    stack_env: dict[str, str],
) -> None:
    status, output = await run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "pyproject.toml"],
        stack_env,
        PYTHON_CLIENT,
    )
    assert status == 0, output
    assert " passed" in output, output
    assert " skipped" not in output, output


@pytest.mark.timeout(SUITE_TIMEOUT_S + 60)
async def test_the_js_client_suite_passes_against_the_running_services(
    stack_env: dict[str, str],
) -> None:
    npm = required_tool("npm", "npm")
    assert (JS_CLIENT / "node_modules").is_dir(), "run `make install` (npm ci in clients/js/)"
    chromium = chromium_path()
    assert chromium is not None, "no chromium installed (apt-get install chromium)"
    env = {**stack_env, "TASKLIGHT_CHROMIUM": chromium}

    status, output = await run([npm, "test", "--silent"], env, JS_CLIENT)

    assert status == 0, output
    assert "# fail 0" in output, output
    assert "# skipped 0" in output, output
