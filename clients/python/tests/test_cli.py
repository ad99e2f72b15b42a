"""`tasklight`, the client's CLI, as a person runs it against a running tasklight."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import Deployment


def cli(deployment: Deployment, *args: str, timeout_s: float = 90) -> tuple[int, str, str]:
    """Run `tasklight ARGS` as a process; (exit status, stdout, stderr)."""
    env = {
        **os.environ,
        "TASKLIGHT_API_URL": deployment.api_url,
        "TASKLIGHT_WS_URL": deployment.ws_url,
        "TASKLIGHT_TOKEN": deployment.token,
    }
    done = subprocess.run(
        [sys.executable, "-m", "tasklight.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def test_submit_get_wait_and_cancel(deployment: Deployment) -> None:
    status, out, _ = cli(deployment, "--json", "submit", "test.count", "--arg", "rounds=1")
    assert status == 0
    task_id = json.loads(out)["id"]
    status, out, err = cli(deployment, "wait", task_id, "--timeout", "60")
    assert (status, out.strip(), err) == (0, f'{task_id} completed: {{"counted": 1}}', "")
    status, out, _ = cli(deployment, "get", task_id)
    assert status == 0
    assert out.splitlines()[0].split()[:3] == [task_id, "completed", "test.count"]

    status, out, _ = cli(deployment, "--json", "submit", "test.count", "--arg", "rounds=100")
    long_id = json.loads(out)["id"]
    status, out, _ = cli(deployment, "cancel", long_id)
    assert status == 0
    assert out.split()[0] == long_id
    status, _, err = cli(deployment, "wait", long_id, "--timeout", "60")
    assert status == 1
    assert "canceled" in err


def test_submit_names_resources_a_time_and_a_priority(deployment: Deployment) -> None:
    common = ["submit", "test.count", "--arg", "rounds=1", "--exclusive", "vm:web-01"]
    status, out, _ = cli(deployment, "--json", *common, "--in", "3600", "--priority", "1")
    assert status == 0
    task = json.loads(out)
    assert (task["state"], task["phase"], task["priority"]) == ("waiting", "scheduled", 1)
    assert task["reservations"] == [{"resource": "vm:web-01", "mode": "exclusive"}]
    assert task["run_at"] is not None
    status, out, err = cli(
        deployment, *common, "--shared", "provider:ec2", "--at", "2001-01-01T00:00:00Z"
    )
    assert status == 0, err
    assert "(test.count, " in out
    status, out, _ = cli(deployment, "cancel", task["id"])
    assert status == 0


def test_list_says_when_there_is_nothing_to_list(deployment: Deployment) -> None:
    status, out, err = cli(deployment, "list", "--name", "no.such.type")
    assert (status, out.strip(), err) == (0, "no tasks of no.such.type", "")
    status, out, _ = cli(deployment, "list", "--group", "pending", "--name", "no.such.type")
    assert (status, out.strip()) == (0, "no pending tasks of no.such.type")
    status, out, _ = cli(deployment, "--json", "list", "--name", "no.such.type")
    assert (status, json.loads(out)) == (0, [])


def test_wait_all_and_failures_are_one_line_messages(deployment: Deployment) -> None:
    status, _, _ = cli(deployment, "submit", "test.count", "--args-json", '{"rounds": 1}')
    assert status == 0
    status, out, err = cli(deployment, "wait", "--all", "--timeout", "60")
    assert (status, out.strip(), err) == (0, "no task is pending", "")

    missing = "01900000-0000-7000-8000-000000000000"
    status, _, err = cli(deployment, "get", missing)
    assert status == 4
    assert err.strip() == f"tasklight: no task {missing}"
    status, _, err = cli(deployment, "submit", "no.such.type")
    assert status == 2
    assert "unknown task type" in err
    status, _, err = cli(deployment, "--api-url", "http://127.0.0.1:9", "list")
    assert status == 3
    assert "Traceback" not in err
