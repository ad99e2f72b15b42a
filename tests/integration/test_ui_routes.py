"""The UI's server side over HTTP: pages, client config, task outcomes and the demo VMs."""

from __future__ import annotations

import re

import httpx
import pytest

from services.api.app import create_app
from services.stack import ROOT
from services.worker.app import Worker
from shared.settings import Settings
from tests.support import eventually
from tests.support.servers import DEV_AUTH, ServerThread

pytestmark = pytest.mark.integration


async def submit(
    api: httpx.AsyncClient, name: str, args: dict[str, object], **extra: object
) -> str:
    response = await api.post("/api/v1/tasks", json={"name": name, "args": args, **extra})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["id"]
    return task_id


async def test_the_pages_are_html_naming_the_notifier_of_the_request_host(
    api: httpx.AsyncClient,
) -> None:
    port = api.base_url.port
    response = await api.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    match = re.search(r'name="tasklight-notifier" content="([^"]+)"', response.text)
    assert match is not None
    config = (await api.get("/api/v1/config")).json()
    assert match.group(1) == config["notifier_url"]
    assert config["notifier_url"].startswith("ws://127.0.0.1:")
    assert port is not None


#: What the start page shows of each built-in part: the test tasks' forms, the VM demo.
BUILTIN_PARTS = ("test.count", 'id="count-form"', "test.fail", 'id="fail-queue"', 'id="vm-list"')


async def test_the_start_page_offers_the_builtin_types_where_they_are_registered(
    api: httpx.AsyncClient,
) -> None:
    page = (await api.get("/")).text  # the tests' settings turn the built-in types on

    assert [part for part in BUILTIN_PARTS if part not in page] == []
    assert (await api.get("/api/v1/demo/vms")).status_code == 200


async def test_without_the_builtin_types_the_start_page_offers_none_and_the_demo_is_gone(
    settings: Settings,
) -> None:
    # The deployment default: TASKLIGHT_BUILTIN_TASKS off.
    off = settings.model_copy(update={"builtin_tasks": False})
    app = create_app(off)
    async with (
        ServerThread(app, off.api_port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{off.api_port}", headers=DEV_AUTH) as api,
    ):
        home = await api.get("/")
        vms = await api.get("/api/v1/demo/vms")
        types = {t["name"] for t in (await api.get("/api/v1/task-types")).json()}

    assert home.status_code == 200
    assert [part for part in BUILTIN_PARTS if part in home.text] == []
    assert "Virtual machines" not in home.text
    assert 'href="/docs"' in home.text  # what it offers instead
    assert types == set()  # nothing of what the page left out exists
    assert vms.status_code == 404
    assert not any(path.startswith("/api/v1/demo") for path in app.openapi()["paths"])


async def test_the_api_serves_the_browser_package_itself_and_nothing_else_of_its_folder(
    api: httpx.AsyncClient,
) -> None:
    served = await api.get("/static/tasklight.js")

    assert served.status_code == 200
    assert served.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert served.content == (ROOT / "clients" / "js" / "tasklight.js").read_bytes()
    assert (await api.get("/static/ui/shell.js")).status_code == 200
    for private in ("package.json", "test/tasklight.test.js", "node_modules/x.js", "../js/x.js"):
        assert (await api.get(f"/static/{private}")).status_code == 404, private


async def test_a_waiting_page_embeds_the_task_and_escapes_it(api: httpx.AsyncClient) -> None:
    task_id = await submit(
        api, "test.count", {"rounds": 0}, ui={"header": "</script><b>x</b>", "message": "m"}
    )

    page = await api.get(f"/wait/{task_id}")

    assert page.status_code == 200
    assert "</script><b>" not in page.text
    assert "&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in page.text
    assert (await api.get("/wait/not-a-task")).status_code == 404
    assert (await api.get(f"/tasks/{task_id}")).status_code == 200


async def test_the_outcome_waits_for_the_end_then_follows_the_ui_hints(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    ui = {"next_url": "/done", "success_message": "Counted.", "failure_message": "No."}
    task_id = await submit(api, "test.count", {"rounds": 2, "round_s": 0.3}, ui=ui)

    first = (await api.get(f"/api/v1/tasks/{task_id}/outcome")).json()
    final = await eventually(
        lambda: api.get(f"/api/v1/tasks/{task_id}/outcome"), lambda r: r.json()["ready"]
    )

    assert first["ready"] is False
    assert first["next_url"] is None
    assert final.json() == {
        "ready": True,
        "state": "completed",
        "next_url": "/done",
        "flash": {"level": "success", "message": "Counted."},
    }


async def test_a_vm_shows_busy_while_its_power_task_runs_then_off(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    task_id = await submit(api, "demo.vm_power_off", {"vm": "vm-web-01", "delay_s": 0.5})

    busy = {vm["id"]: vm for vm in (await api.get("/api/v1/demo/vms")).json()}
    assert busy["vm-web-01"]["pending_task"] == task_id
    assert busy["vm-web-01"]["power"] == "on"

    async def web01() -> dict[str, object]:
        vms = (await api.get("/api/v1/demo/vms")).json()
        found: dict[str, object] = next(vm for vm in vms if vm["id"] == "vm-web-01")
        return found

    done = await eventually(web01, lambda vm: vm["power"] == "off")
    assert done["pending_task"] is None
    outcome = (await api.get(f"/api/v1/tasks/{task_id}/outcome")).json()
    assert outcome["next_url"] == "/#vm-web-01"
    assert outcome["flash"]["message"] == "VM web-01 is powered off."
