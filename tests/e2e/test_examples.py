"""The examples of using tasklight from a project, against the services as processes:

- examples/reports: a team's own task type, loaded by the api and the worker from
  `TASKLIGHT_TASK_MODULES` on `PYTHONPATH` (README, *Adding a task type*);
- examples/backend_submit.py: a backend calling the API (docs/backend.md);
- examples/acme_webapp.py: a web app on another origin that submits on behalf of its user, and
  its page following the task with tasklight.js and tickets (docs/tasklight-js.md).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, expect

from services.api.app import open_auth
from services.stack import ROOT, free_port, stop_processes
from shared.auth import Role
from shared.settings import Settings
from shared.store import Store
from tests.support import FINAL, eventually
from tests.support.browser import EXPECT_TIMEOUT_MS
from tests.support.processes import service_env, start_stack
from tests.support.servers import DEV_AUTH, ServerThread

pytestmark = pytest.mark.e2e

EXAMPLES = ROOT / "examples"


def load_example(name: str) -> ModuleType:
    """A module of examples/ by file name (examples/ is not a package: each file stands alone)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


@dataclass
class TeamStack:
    """tasklight's services with the team's task package, and where its web app will listen."""

    settings: Settings
    env: dict[str, str]
    api: httpx.AsyncClient
    reports_dir: Path
    webapp_port: int


@pytest.fixture
async def team(settings: Settings, tmp_path: Path) -> AsyncIterator[TeamStack]:
    """api, worker and notifier as processes, configured as README tells a team to."""
    webapp_port = free_port()
    reports_dir = tmp_path / "reports"
    env = {
        **service_env(settings),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(EXAMPLES / "reports"), os.environ.get("PYTHONPATH")])
        ),
        "TASKLIGHT_TASK_MODULES": "acme_reports.tasks",
        "ACME_REPORTS_DIR": str(reports_dir),
        # The team's page is served from its own app, on another origin than tasklight's.
        "TASKLIGHT_ALLOWED_ORIGINS": f"http://localhost:{webapp_port}",
    }
    processes = await start_stack(env, settings, tmp_path)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.api_port}", headers=DEV_AUTH, timeout=30
        ) as api:
            yield TeamStack(settings, env, api, reports_dir, webapp_port)
    finally:
        await asyncio.to_thread(stop_processes, processes.values())


async def until_final(api: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """The task once it has ended (read over REST)."""

    async def read() -> dict[str, Any]:
        task: dict[str, Any] = (await api.get(f"/api/v1/tasks/{task_id}")).json()
        return task

    return await eventually(read, lambda t: t["state"] in FINAL, timeout_s=30)


async def test_a_task_type_from_a_package_named_in_task_modules_runs_with_progress(
    team: TeamStack,
) -> None:
    types = {t["name"]: t for t in (await team.api.get("/api/v1/task-types")).json()}
    assert types["reports.render"]["args_schema"]["required"] == ["title", "sections"]
    refused = await team.api.post(
        "/api/v1/tasks", json={"name": "reports.render", "args": {"title": "Q3", "sections": []}}
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["body", "args", "sections"]

    args = {"title": "Q3 sales", "sections": ["North", "South"], "section_s": 0.1}
    answer = await team.api.post("/api/v1/tasks", json={"name": "reports.render", "args": args})
    assert answer.status_code == 202, answer.text
    task = await until_final(team.api, answer.json()["id"])

    assert task["state"] == "completed", task["error"]
    assert task["result"]["file"] == f"{task['id']}.html"
    assert task["result"]["sections"] == 2
    document = (team.reports_dir / task["result"]["file"]).read_text()
    assert "<h1>Q3 sales</h1>" in document
    assert [(r["code"], r["done"], r["total"], r["state"]) for r in task["progress_reports"]] == [
        ("reports.gather", 2, 2, "completed"),
        ("reports.store", 1, 1, "completed"),
    ]
    # The package's on-ready hook, loaded by the api from the same setting.
    outcome = (await team.api.get(f"/api/v1/tasks/{task['id']}/outcome")).json()
    assert outcome["next_url"] == f"/tasks/{task['id']}"
    assert outcome["flash"] == {
        "level": "success",
        "message": "Report “Q3 sales” is ready (2 sections).",
    }


async def test_the_backend_example_submits_waits_cancels_and_polls(team: TeamStack) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(EXAMPLES / "backend_submit.py")],
        env=team.env,  # TASKLIGHT_API_URL, TASKLIGHT_WS_URL, TASKLIGHT_TOKEN
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith(" completed")
    # `canceled` if the worker had not claimed it yet, else `canceling` until its checkpoint.
    assert lines[1] in {
        "client: cancel answered canceled, ended canceled",
        "client: cancel answered canceling, ended canceled",
    }
    assert lines[2].startswith("client: refused with urn:tasklight:problem:invalid-task at ")
    assert "'rounds'" in lines[2]
    assert lines[3].endswith(" completed {'counted': 2}")


async def test_a_page_of_another_origin_follows_the_task_its_backend_submitted_for_its_user(
    team: TeamStack, store: Store, browser: Browser
) -> None:
    auth = open_auth(store, team.settings)
    await auth.create_user("alice", Role.USER)
    token = await auth.issue_token("alice", label="acme-webapp")
    webapp = load_example("acme_webapp")
    config = webapp.TasklightConfig(
        api_url=f"http://127.0.0.1:{team.settings.api_port}",
        notifier_url=f"ws://127.0.0.1:{team.settings.notifier_port}/ws",
        tokens={"alice": token},
    )
    origin = f"http://localhost:{team.webapp_port}"  # another site than tasklight's 127.0.0.1
    async with ServerThread(webapp.create_app(config), team.webapp_port):
        context = await browser.new_context(base_url=origin)
        context.set_default_timeout(EXPECT_TIMEOUT_MS)
        try:
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # A module the page cannot load (a 404 for one `tasklight.js` imports) is no page
            # error: it shows only as the script's failed response.
            page.on(
                "response",
                lambda r: (
                    errors.append(f"{r.status} {r.url}")
                    if r.status >= 400 and r.request.resource_type == "script"
                    else None
                ),
            )
            await page.goto("/?user=alice")
            await page.get_by_role("button", name="Render").click()
            assert errors == []

            await expect(page.locator("#state")).to_have_text("completed")
            await expect(page.locator("#progress")).to_have_text("3/3 sections")
            await expect(page.locator("#result")).to_contain_text(".html, ")
            await expect(page.locator("#connection")).to_have_text("live")
            assert errors == []
        finally:
            await context.close()

    # The task is alice's: her token sees it, the development user does not.
    as_alice = {"Authorization": f"Bearer {token}"}
    mine = (await team.api.get("/api/v1/tasks", headers=as_alice)).json()["results"]
    assert [(t["name"], t["owner"], t["state"]) for t in mine] == [
        ("reports.render", "alice", "completed")
    ]
    assert (await team.api.get(f"/api/v1/tasks/{mine[0]['id']}")).status_code == 404
