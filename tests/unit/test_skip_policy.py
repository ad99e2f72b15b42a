"""`make test` never counts a skipped layer as a pass: the skip policy
(tests/support/skip_policy.py) and the system check before it (.ci/prerequisites), each run as
`make test` runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import netns

ROOT = Path(__file__).resolve().parents[2]
#: pytest with the policy alone (none of tests/conftest.py's fixtures or backends).
PYTEST = [
    sys.executable,
    "-m",
    "pytest",
    "-p",
    "tests.support.skip_policy",
    "-p",
    "no:cacheprovider",
]
PYTEST_ARGS = ["-p", "no:asyncio", "-q", "test_layer.py"]
SUITE = """
import pytest

def test_runs():
    pass

def test_needs_a_browser():
    pytest.skip("no chromium installed (apt-get install chromium)")

@pytest.mark.xfail(reason="known")
def test_known_failure():
    assert False
"""


def run_suite(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest with the skip policy on a suite of one pass, one skip and one expected failure."""
    (tmp_path / "test_layer.py").write_text(SUITE)
    environ = {k: v for k, v in os.environ.items() if k != "TASKLIGHT_ALLOW_SKIPS"}
    return subprocess.run(
        [*PYTEST, *PYTEST_ARGS],
        cwd=tmp_path,
        env={**environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_skip_fails_the_run_naming_the_test_and_the_install_command(tmp_path: Path) -> None:
    done = run_suite(tmp_path)

    assert done.returncode == 1, done.stdout
    assert "SKIPPED TESTS FAIL THIS RUN" in done.stdout
    assert "test_needs_a_browser: no chromium installed (apt-get install chromium)" in done.stdout
    assert "TASKLIGHT_ALLOW_SKIPS=1" in done.stdout


def test_the_opt_out_accepts_skips_and_says_so(tmp_path: Path) -> None:
    done = run_suite(tmp_path, TASKLIGHT_ALLOW_SKIPS="1")

    assert done.returncode == 0, done.stdout
    assert "SKIPPED TESTS ACCEPTED" in done.stdout


def test_a_run_without_skips_passes(tmp_path: Path) -> None:
    (tmp_path / "test_layer.py").write_text("def test_runs():\n    pass\n")
    done = subprocess.run(
        [*PYTEST, *PYTEST_ARGS],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout


def prerequisites(
    *args: str, user: list[str] | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """.ci/prerequisites ARGS with Chromium missing, installing nothing, RabbitMQ given by URL
    (`user`: a command prefix that runs it as another user)."""
    environ = {k: v for k, v in os.environ.items() if k != "TASKLIGHT_ALLOW_SKIPS"}
    return subprocess.run(
        [*(user or []), "bash", str(ROOT / ".ci" / "prerequisites"), *args],
        env={
            **environ,
            "TASKLIGHT_CHROMIUM": "/nonexistent/chromium",
            "TASKLIGHT_NO_INSTALL": "1",
            "AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_missing_package_stops_make_test_with_the_exact_command() -> None:
    done = prerequisites()

    assert done.returncode == 1
    assert "    sudo apt-get install -y chromium\n" in done.stderr


def test_the_opt_out_lets_make_test_go_on_and_says_what_it_leaves_out() -> None:
    done = prerequisites(TASKLIGHT_ALLOW_SKIPS="1")

    assert done.returncode == 0
    assert "TASKLIGHT_ALLOW_SKIPS=1: running WITHOUT chromium" in done.stderr
    assert "sudo apt-get install -y chromium" in done.stderr


def as_another_user() -> list[str]:
    """A command prefix that runs a command as a user other than root: `nobody` when this runs
    as root (as CI does), else nothing (this user already is one)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run the check as another user than root"
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_without_root_make_test_stops_at_once_with_the_command_that_has_root() -> None:
    done = prerequisites("--faults", "test", user=as_another_user())

    assert done.returncode == 1
    assert "make test needs what is missing on this machine (chromium, root)" in done.stderr
    assert "    sudo make test    # as root: the worker cut-off fault test" in done.stderr
    assert "TASKLIGHT_ALLOW_SKIPS=1 make test runs without them" in done.stderr


def test_without_root_the_opt_out_says_the_namespace_test_is_left_out() -> None:
    done = prerequisites(
        "--faults", "test-faults", user=as_another_user(), TASKLIGHT_ALLOW_SKIPS="1"
    )

    assert done.returncode == 0
    assert "TASKLIGHT_ALLOW_SKIPS=1: running WITHOUT chromium, root" in done.stderr
    assert "sudo make test-faults    # as root" in done.stderr


def test_the_targets_without_the_fault_tests_do_not_ask_for_root() -> None:
    done = prerequisites(user=as_another_user())

    assert done.returncode == 1  # for Chromium only
    assert "root" not in done.stderr


def test_the_check_agrees_with_the_fault_test_on_this_machine() -> None:
    # Here, as this user: the check asks for what the namespace test would skip without
    done = prerequisites("--faults", TASKLIGHT_CHROMIUM=sys.executable)

    refused = "root" in done.stderr or "network namespaces" in done.stderr
    assert refused == (netns.unavailable() is not None), done.stderr
