"""The pytest plugin, as a suite that installs the package uses it (a pytest run of its own)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import tasklight.pytest_plugin
from conftest import Deployment

SUITE = """
def test_tasks_settle(tasklight_client, tasklight_wait_all):
    for rounds in (1, 2, 3):
        tasklight_client.submit("test.count", {"rounds": rounds, "round_s": 0.05})
    tasklight_wait_all()
    assert tasklight_client.list(group="pending") == []


def test_a_task_that_does_not_settle_fails_the_test(tasklight_client, tasklight_wait_all):
    long = tasklight_client.submit("test.count", {"rounds": 100, "round_s": 0.2})
    print("LONG", long["id"])
    try:
        tasklight_wait_all(timeout_s=1)
    finally:
        tasklight_client.cancel(long["id"])
        tasklight_client.wait(long["id"], timeout_s=60)
"""


PACKAGE = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The README's example of the plugin: the Python block of its *The pytest plugin* part."""
    part = (PACKAGE / "README.md").read_text().split("## The pytest plugin", 1)[1]
    found = re.search(r"```python\n(.*?)```", part.split("\n## ", 1)[0], flags=re.S)
    assert found, "the README's pytest plugin part shows no Python block"
    return found.group(1)


def run_suite(
    tmp_path: Path, deployment: Deployment, *options: str, suite: str = SUITE
) -> subprocess.CompletedProcess[str]:
    """pytest on `suite`, with the plugin found through its entry point (nothing names it)."""
    (tmp_path / "test_suite.py").write_text(suite)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLIGHT_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *options],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_wait_all_fixture_passes_a_settled_test_and_fails_one_naming_the_pending_task(
    tmp_path: Path, deployment: Deployment
) -> None:
    done = run_suite(
        tmp_path,
        deployment,
        f"--tasklight-api-url={deployment.api_url}",
        f"--tasklight-ws-url={deployment.ws_url}",
        f"--tasklight-token={deployment.token}",
    )

    assert "1 failed, 1 passed" in done.stdout, done.stdout + done.stderr
    long_id = next(line.split()[1] for line in done.stdout.splitlines() if "LONG" in line)
    assert f"tasklight: still pending after 1 s: {long_id} (test.count, running)" in done.stdout


def test_the_fixture_reads_the_cli_environment(tmp_path: Path, deployment: Deployment) -> None:
    (tmp_path / "test_env.py").write_text(
        "def test_env(tasklight_client):\n"
        f"    assert tasklight_client.api_url == {deployment.api_url!r}\n"
    )
    env = {**os.environ, "TASKLIGHT_API_URL": deployment.api_url}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_env.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_readme_example_runs_as_written(tmp_path: Path, deployment: Deployment) -> None:
    example = readme_example()
    done = run_suite(
        tmp_path,
        deployment,
        f"--tasklight-api-url={deployment.api_url}",
        f"--tasklight-ws-url={deployment.ws_url}",
        f"--tasklight-token={deployment.token}",
        suite=example,
    )

    assert "1 passed" in done.stdout, done.stdout + done.stderr
    # The module's docstring shows the same example
    assert textwrap.indent(example, "    ") in (tasklight.pytest_plugin.__doc__ or "")
