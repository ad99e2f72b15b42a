"""`tasklight` (the client's CLI) and `tasklight-server` (the server's) against the api, worker and
notifier running as processes."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from services.stack import ROOT, stop_processes
from shared.auth import DEV_TOKEN
from shared.settings import Settings
from tests.support import eventually
from tests.support.processes import service_env, start_stack

pytestmark = pytest.mark.e2e


@dataclass
class Stack:
    """The services as processes, and the environment the CLI needs to reach them."""

    settings: Settings
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]]

    async def cli(
        self,
        *args: str,
        timeout_s: float = 60,
        stdin: str = "",
        env: dict[str, str] | None = None,
        module: str = "tasklight.cli",
    ) -> tuple[int, str, str]:
        """Run `tasklight ARGS` (or another `module`); returns (exit status, stdout, stderr)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            env={**self.env, **(env or {})},
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(timeout_s):
            out, err = await process.communicate(stdin.encode())
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def server_cli(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        """Run `tasklight-server ARGS`; returns (exit status, stdout, stderr)."""
        return await self.cli(*args, stdin=stdin, module="shared.server_cli")


@pytest.fixture
async def stack(settings: Settings, tmp_path: Path) -> AsyncIterator[Stack]:
    """api, worker and notifier as `python -m services.<name>` processes."""
    env = service_env(settings)
    processes = await start_stack(env, settings, tmp_path)
    try:
        yield Stack(settings, env, processes)
    finally:
        await asyncio.to_thread(stop_processes, processes.values())


async def test_submit_then_wait_exits_0_when_completed_and_1_with_the_error_when_failed(
    stack: Stack,
) -> None:
    status, out, _ = await stack.cli(
        "--json", "submit", "test.count", "--arg", "rounds=2", "--arg", "round_s=0.1"
    )
    assert status == 0
    counted = json.loads(out)
    status, failing_out, _ = await stack.cli(
        "submit", "test.fail", "--args-json", '{"message": "boom", "after_s": 0.1}'
    )
    assert status == 0
    failing_id = failing_out.split()[1]

    status, out, err = await stack.cli("wait", counted["id"], "--timeout", "30")
    assert (status, err) == (0, "")
    assert out.strip() == f'{counted["id"]} completed: {{"counted": 2}}'

    status, out, err = await stack.cli("wait", failing_id, "--timeout", "30")
    assert status == 1
    assert "failed: boom" in err
    assert "Traceback" not in err


async def test_wait_all_returns_when_the_queue_drains(stack: Stack) -> None:
    for _ in range(3):
        status, _, _ = await stack.cli("submit", "test.count", "--args-json", '{"rounds": 2}')
        assert status == 0

    status, out, err = await stack.cli("wait", "--all", "--timeout", "60")

    assert (status, out.strip(), err) == (0, "no task is pending", "")
    status, out, _ = await stack.cli("--json", "list", "--group", "pending")
    assert (status, json.loads(out)) == (0, [])


async def test_wait_all_fails_on_timeout_naming_the_pending_tasks(stack: Stack) -> None:
    status, out, _ = await stack.cli(
        "--json", "submit", "test.count", "--arg", "rounds=100", "--arg", "round_s=0.2"
    )
    assert status == 0
    long_id = json.loads(out)["id"]

    status, out, err = await stack.cli("wait", "--all", "--timeout", "1.5")

    assert status == 5
    assert long_id in err
    assert "still pending after 1.5 s" in err
    assert "Traceback" not in err
    status, out, _ = await stack.cli("cancel", long_id)
    assert status == 0


async def test_show_names_the_question_a_task_waits_on_and_answer_answers_it(
    stack: Stack,
) -> None:
    status, out, _ = await stack.cli("--json", "submit", "test.ask")
    assert status == 0
    task_id = json.loads(out)["id"]

    async def shown() -> tuple[int, str, str]:
        return await stack.cli("show", task_id)

    status, out, _ = await eventually(shown, lambda s: "waits for an answer" in s[1])
    assert "question-1: Question 1 of 1 (approve | deny; by " in out

    status, _, err = await stack.cli("answer", task_id, "maybe")
    assert status == 2
    assert "must be one of ['approve', 'deny']" in err
    status, out, _ = await stack.cli("answer", task_id, "approve", "--question", "question-1")
    assert (status, out.strip()) == (0, f"{task_id} answered; it goes on (released)")
    status, out, _ = await stack.cli("wait", task_id, "--timeout", "30")
    assert out.strip() == f'{task_id} completed: {{"answers": ["approve"]}}'
    status, _, err = await stack.cli("answer", task_id, "approve")
    assert status == 2
    assert "HTTP 409" in err


async def test_expected_failures_are_one_line_messages(stack: Stack) -> None:
    missing = "01900000-0000-7000-8000-000000000000"
    status, _, err = await stack.cli("show", missing)
    assert status == 4
    assert err.strip() == f"tasklight: no task {missing}"

    status, _, err = await stack.cli("submit", "no.such.type")
    assert status == 2
    assert "unknown task type" in err

    status, _, err = await stack.cli("--api-url", "http://127.0.0.1:9", "list")
    assert status == 3
    assert "did not answer" in err


async def test_sigterm_closes_notifier_connections_with_1001(stack: Stack) -> None:
    url = f"ws://127.0.0.1:{stack.settings.notifier_port}/ws"
    headers = {"Authorization": f"Bearer {DEV_TOKEN}"}
    async with connect(url, additional_headers=headers) as ws:
        await ws.send('{"type": "ping"}')
        assert json.loads(await ws.recv()) == {"type": "pong"}
        stack.processes["notifier"].send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert await asyncio.to_thread(stack.processes["notifier"].wait, 10) == 0


async def test_users_are_managed_with_the_cli_and_their_tokens_act_as_them(stack: Stack) -> None:
    status, out, err = await stack.server_cli(
        "users", "create", "carol", "--password-stdin", stdin="carol-password\n"
    )
    assert (status, out.strip(), err) == (0, "created user carol", "")
    status, _, err = await stack.server_cli("users", "create", "carol")
    assert status == 2
    assert err.strip() == "tasklight-server: user carol exists already"
    status, _, _ = await stack.server_cli("users", "create", "root", "--admin")
    assert status == 0
    status, token, _ = await stack.server_cli("users", "token", "carol", "--label", "test")
    assert status == 0
    token = token.strip()
    assert token.startswith("tl_")
    status, out, _ = await stack.server_cli("users", "list")
    rows = [line.split() for line in out.strip().splitlines()]
    assert rows == [["carol", "user", "1", "tokens"], ["root", "admin", "0", "tokens"]]

    as_carol = {"TASKLIGHT_TOKEN": token}
    status, out, _ = await stack.cli(
        "--json", "submit", "test.count", "--args-json", '{"rounds": 1}', env=as_carol
    )
    assert status == 0
    assert json.loads(out)["owner"] == "carol"
    # The development user (the stack runs in development mode) does not see carol's task.
    status, _, _ = await stack.cli("show", json.loads(out)["id"])
    assert status == 4

    status, _, _ = await stack.server_cli("users", "revoke", "carol")
    assert status == 0
    status, _, err = await stack.cli("list", env=as_carol)
    assert status == 6
    assert "not valid" in err
    status, _, err = await stack.cli("list", env={"TASKLIGHT_TOKEN": ""})
    assert status == 6
    assert "TASKLIGHT_TOKEN" in err
