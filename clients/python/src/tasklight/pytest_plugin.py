"""pytest fixtures for suites that drive a tasklight deployment: a client, and "wait for all".

Installed with the package (entry point `pytest11`), so a suite only uses the fixtures:

    def test_counting(tasklight_client, tasklight_wait_all):
        task = tasklight_client.submit("test.count", {"rounds": 3, "round_s": 0.1})
        tasklight_wait_all()  # returns once none of this user's tasks is pending
        assert tasklight_client.get(task["id"])["state"] == "completed"  # now check what it did

This is the "wait for all tasks" step that Galaxy's test suite takes after every change it makes,
but pushed by the notifier instead of polled. Where the deployment is comes from the options
(`--tasklight-api-url`, `--tasklight-ws-url`, `--tasklight-token`, `--tasklight-wait-timeout`)
or the same environment variables the CLI reads (`TASKLIGHT_API_URL`, `TASKLIGHT_WS_URL`,
`TASKLIGHT_TOKEN`). A wait that runs out of time fails the test naming the pending tasks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Protocol

import pytest

from tasklight.errors import WaitTimeout
from tasklight.sync import SyncTasklightClient

DEFAULT_API_URL = "http://127.0.0.1:8000"
DEFAULT_WS_URL = "ws://127.0.0.1:8001/ws"
#: Seconds `tasklight_wait_all()` waits unless told otherwise.
DEFAULT_WAIT_TIMEOUT_S = 60.0


class WaitAll(Protocol):
    """`tasklight_wait_all`: wait until none of the user's tasks is pending."""

    def __call__(self, timeout_s: float | None = None) -> None:
        """Return when nothing is pending; fail the test after `timeout_s`."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """The plugin's options, each defaulting to its environment variable."""
    group = parser.getgroup("tasklight", "tasklight deployment under test")
    group.addoption("--tasklight-api-url", default=None, help="env TASKLIGHT_API_URL")
    group.addoption("--tasklight-ws-url", default=None, help="env TASKLIGHT_WS_URL")
    group.addoption("--tasklight-token", default=None, help="env TASKLIGHT_TOKEN")
    group.addoption(
        "--tasklight-wait-timeout",
        type=float,
        default=DEFAULT_WAIT_TIMEOUT_S,
        help="seconds tasklight_wait_all() waits (default %(default)s)",
    )


def _option(config: pytest.Config, name: str, env: str, default: str | None) -> str | None:
    value = config.getoption(name)
    if value:
        return str(value)
    return os.environ.get(env) or default


@pytest.fixture(scope="session")
def tasklight_client(pytestconfig: pytest.Config) -> Iterator[SyncTasklightClient]:
    """A blocking client of the deployment under test, shared by the session."""
    client = SyncTasklightClient(
        _option(pytestconfig, "tasklight_api_url", "TASKLIGHT_API_URL", DEFAULT_API_URL) or "",
        _option(pytestconfig, "tasklight_ws_url", "TASKLIGHT_WS_URL", DEFAULT_WS_URL) or "",
        token=_option(pytestconfig, "tasklight_token", "TASKLIGHT_TOKEN", None),
    )
    yield client
    client.close()


@pytest.fixture
def tasklight_wait_all(
    tasklight_client: SyncTasklightClient, pytestconfig: pytest.Config
) -> WaitAll:
    """A function that returns once none of the user's tasks is pending (see the module)."""
    default_s = float(pytestconfig.getoption("tasklight_wait_timeout"))

    def wait_all(timeout_s: float | None = None) -> None:
        try:
            tasklight_client.wait_all(default_s if timeout_s is None else timeout_s)
        except WaitTimeout as exc:
            pytest.fail(f"tasklight: {exc}", pytrace=False)

    return wait_all
