"""The task detail page in a real browser: everything about a task, its family and its history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.support import eventually
from tests.support.browser import Stack

pytestmark = pytest.mark.e2e


async def test_the_detail_page_shows_progress_worker_children_and_history_live(
    page: Page, stack: Stack, artifacts_dir: Path
) -> None:
    # Given a task that starts two child tasks
    # (long enough to be seen running on a busy machine)
    parent = await stack.submit("test.spawn", {"children": 2, "rounds": 4, "round_s": 1.5})

    # When its detail page is open while it runs
    await page.goto(f"/tasks/{parent['id']}")
    await page.evaluate("window.__notReloaded = true")
    detail = page.locator("#detail")
    await expect(detail.locator("h1")).to_contain_text("Spawn children")  # its type's title
    await expect(detail).to_contain_text("test.spawn")
    await expect(detail.locator(".children li")).to_have_count(2)
    # Its handler returned once it started them: no worker holds it while the children run
    facts = detail.locator(".facts")
    await expect(facts).to_contain_text("ends when its child tasks have")
    await expect(facts).to_contain_text(f"last run on {stack.settings.worker_name}")
    await expect(facts).not_to_contain_text("under a lease")
    await expect(facts).not_to_contain_text("alive")

    # Then it follows the task to the end, with no reload, and shows its history
    await expect(detail.locator("h1 .chip")).to_have_text("Completed", timeout=30_000)
    await expect(detail.locator(".children .chip")).to_have_text(["Completed", "Completed"])
    history = detail.locator("table.history tbody tr")
    await expect(history).to_have_count(3)
    await expect(history.last).to_contain_text("Completed")
    await expect(detail.locator(".reports li")).to_have_count(1)
    await expect(detail).to_contain_text('"children": 2')
    # The worker as it was when the task ended: no live hold any more
    await expect(detail.locator(".facts")).to_contain_text("ran it until it ended")
    await expect(detail.locator(".facts")).not_to_contain_text("under a lease")
    await expect(detail.locator(".facts")).not_to_contain_text("alive")
    assert await page.evaluate("window.__notReloaded === true")
    await page.screenshot(path=str(artifacts_dir / "task-detail.png"), full_page=True)

    # And a child links back to its parent
    await detail.locator(".children a").first.click()
    await expect(page.locator("#detail")).to_contain_text("Parent")
    await page.locator("#detail a", has_text=parent["id"]).click()
    await expect(page).to_have_url(f"{stack.base_url}/tasks/{parent['id']}")


async def test_a_failed_task_shows_its_error(page: Page, stack: Stack) -> None:
    task = await stack.submit("test.fail", {"after_s": 0, "message": "disk full"})
    await stack.wait_final(task["id"])

    await page.goto(f"/tasks/{task['id']}")

    await expect(page.locator(".error-text")).to_contain_text("disk full")
    await expect(page.locator("table.history tbody tr")).to_have_count(3)


async def test_an_unknown_task_gets_a_not_found_page(page: Page, stack: Stack) -> None:
    response = await page.goto("/tasks/0190c2a8-0000-7000-8000-000000000000")
    assert response is not None
    assert response.status == 404
    await expect(page.locator("h1")).to_have_text("No such task")


async def test_a_retried_task_shows_each_run_with_its_reason_and_worker(
    page: Page, stack: Stack
) -> None:
    task = await stack.submit("test.flaky", {"failures": 1})
    done = await stack.wait_final(task["id"])
    assert (done["state"], done["runs"], len(done["attempts"])) == ("completed", 2, 1)

    await page.goto(f"/tasks/{task['id']}")

    runs = page.locator(".runs .run")
    await expect(runs).to_have_count(2)
    await expect(runs.first).to_contain_text("Run 1 failed, retried on")
    await expect(runs.first).to_contain_text(stack.settings.worker_name)
    await expect(runs.first).to_contain_text("attempt 1 fails on purpose")
    await expect(runs.last).to_contain_text("Run 2 ended completed on")
    await expect(page.locator(".facts")).to_contain_text("2 runs")


@pytest.mark.parametrize("width", [1440, 1280, 390])
async def test_every_card_of_the_detail_page_holds_its_content(
    page: Page, stack: Stack, width: int
) -> None:
    task = await stack.submit("test.count", {"rounds": 1, "round_s": 0})
    await stack.wait_final(task["id"])
    await page.set_viewport_size({"width": width, "height": 900})

    await page.goto(f"/tasks/{task['id']}")

    line = page.locator(".report-line")
    await expect(line).to_contain_text("1/1 round · Completed")  # one round, not "1 rounds"
    spills = await page.evaluate(
        """() => [...document.querySelectorAll('#detail .card')].flatMap((card) => {
          const box = card.getBoundingClientRect();
          return [...card.querySelectorAll('*')]
            .filter((el) => el.getClientRects().length && !el.closest('pre, table'))
            .filter((el) => {
              const r = el.getBoundingClientRect();
              return r.right > box.right + 0.5 || r.left < box.left - 0.5;
            })
            .map((el) => `${card.querySelector('h2')?.textContent}: ${el.textContent.trim()}`);
        })"""
    )
    assert spills == []
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


#: The text of the Summary's Worker field.
WORKER_FIELD = "#detail .facts dd.worker"


async def task_in_phase(stack: Stack, task_id: str, phase: str) -> dict[str, Any]:
    """The task once it is in `phase` (read over REST: this sets the scene)."""

    async def read() -> dict[str, Any]:
        body: dict[str, Any] = (await stack.api.get(f"/api/v1/tasks/{task_id}")).json()
        return body

    return await eventually(read, lambda t: t["phase"] == phase, timeout_s=30)


async def test_a_held_task_shows_its_worker_holding_it_and_how_long_ago_it_took_it(
    page: Page, stack: Stack
) -> None:
    # Given a task held by a run that reports once and then does not change for 10 s
    task = await stack.submit("test.count", {"rounds": 1, "round_s": 10})

    async def read() -> dict[str, Any]:
        body: dict[str, Any] = (await stack.api.get(f"/api/v1/tasks/{task['id']}")).json()
        return body

    await eventually(read, lambda t: t["phase"] == "held" and t["progress_reports"], timeout_s=30)

    await page.goto(f"/tasks/{task['id']}")

    worker = page.locator(WORKER_FIELD)
    await expect(page.locator("#detail h1")).to_contain_text("Count")  # the titles are in
    await expect(worker).to_contain_text(stack.settings.worker_name)
    await expect(worker).to_contain_text("alive")
    await expect(worker).to_contain_text("holds it under a lease")
    # "took it N ago" keeps counting in the element shown, not only when a push re-renders it
    await worker.locator("[data-ago]").evaluate("(el) => { el.dataset.seen = el.textContent; }")
    await page.wait_for_function(
        """() => {
          const el = document.querySelector('[data-ago][data-seen]');
          if (el === null) return false;  // replaced by a re-render: only a change in place counts
          return el.textContent !== el.dataset.seen && el.textContent.endsWith(' ago');
        }"""
    )


async def test_a_task_awaiting_its_owners_answer_is_held_by_no_worker(
    page: Page, stack: Stack
) -> None:
    task = await stack.submit("test.ask", {"questions": 1})
    await task_in_phase(stack, task["id"], "awaiting_answer")

    await page.goto(f"/tasks/{task['id']}")

    worker = page.locator(WORKER_FIELD)
    await expect(worker).to_contain_text(
        "No worker holds it while it waits for its owner's answer."
    )
    await expect(worker).to_contain_text(f"last run on {stack.settings.worker_name}")
    await expect(worker).not_to_contain_text("under a lease")
    await expect(worker).not_to_contain_text("alive")

    # Once answered, a run holds it again and ends it; the page follows with the push
    answered = await stack.api.post(
        f"/api/v1/tasks/{task['id']}/answer", json={"answer": "approve", "question": "question-1"}
    )
    assert answered.status_code == 202, answered.text
    await expect(worker).to_contain_text("ran it until it ended")


async def test_a_task_released_for_a_retry_says_no_worker_holds_it_and_why(
    page: Page, stack: Stack
) -> None:
    # Given a task that fails three times, each time retried after a delay (0.5-1 s, 1-2 s, 2-4 s)
    task = await stack.submit("test.flaky", {"failures": 3})

    # When its page is open through its runs, every text the Worker field shows is recorded
    # with the phase the page was rendering
    await page.goto(f"/tasks/{task['id']}")
    await page.evaluate(
        """(selector) => {
          window.__workerTexts = [];
          const record = () => {
            const field = document.querySelector(selector);
            const phase = document.body.dataset.taskPhase;
            if (field) window.__workerTexts.push([phase, field.textContent]);
          };
          record();
          new MutationObserver(record).observe(document.getElementById('detail'),
            { childList: true, subtree: true, characterData: true });
        }""",
        WORKER_FIELD,
    )
    await expect(page.locator("#detail h1 .chip")).to_have_text("Completed", timeout=40_000)
    seen: list[list[str]] = await page.evaluate("window.__workerTexts")

    # Then while released it said that no worker held it, and why; while held, that one did
    released = [text for phase, text in seen if phase == "released"]
    assert released, f"the page never showed the task released: {seen}"
    for text in released:
        assert "No worker holds it: it waits to be run again" in text, text
        assert "its last run failed and is retried" in text, text
        assert "under a lease" not in text, text
        assert "alive" not in text, text
    held = [text for phase, text in seen if phase == "held"]
    assert all("holds it under a lease" in text for text in held), held


async def test_canceling_from_the_detail_page_asks_first_and_keeping_it_sends_nothing(
    page: Page, stack: Stack
) -> None:
    task = await stack.submit("test.count", {"rounds": 60, "round_s": 0.5})
    await task_in_phase(stack, task["id"], "held")
    cancels: list[str] = []
    page.on("request", lambda r: cancels.append(r.url) if r.url.endswith("/cancel") else None)
    await page.goto(f"/tasks/{task['id']}")
    button = page.get_by_role("button", name="Cancel task")
    confirm = page.locator("#confirm-dialog")

    # When Cancel is pressed, the confirmation names the task and says what canceling does
    await button.click()
    await expect(confirm).to_be_visible()
    await expect(confirm.locator("h2")).to_have_text("Cancel “Count”?")
    await expect(confirm).to_contain_text("This task is running")
    await expect(confirm).to_contain_text("listed under Failed, as canceled")
    # And "Keep it" leaves it running
    await confirm.get_by_role("button", name="Keep it").click()
    await expect(confirm).to_be_hidden()
    await expect(page.locator("#detail h1 .chip")).to_have_text("Running")

    # When it is confirmed, the task is canceled, and the page follows it by push
    await button.click()
    await confirm.get_by_role("button", name="Cancel task").click()
    await expect(page.locator("#detail h1 .chip")).to_have_text("Canceled")
    assert (await stack.wait_final(task["id"]))["state"] == "canceled"
    assert len(cancels) == 1, cancels  # only the confirmed one was sent


async def test_deleting_from_the_detail_page_asks_first_then_goes_back_to_the_overview(
    page: Page, stack: Stack
) -> None:
    task = await stack.submit("test.count", {"rounds": 1, "round_s": 0})
    await stack.wait_final(task["id"])
    deletes: list[str] = []
    page.on("request", lambda r: deletes.append(r.url) if r.method == "DELETE" else None)
    await page.goto(f"/tasks/{task['id']}")
    button = page.get_by_role("button", name="Delete")
    confirm = page.locator("#confirm-dialog")

    # When Delete is pressed, the confirmation names the task and says it cannot be undone
    await button.click()
    await expect(confirm.locator("h2")).to_have_text("Delete “Count”?")
    await expect(confirm).to_contain_text("cannot be undone")
    # And "Keep it" keeps it
    await confirm.get_by_role("button", name="Keep it").click()
    await expect(confirm).to_be_hidden()
    await expect(page).to_have_url(f"{stack.base_url}/tasks/{task['id']}")

    # When it is confirmed, the task is gone and the overview says so
    await button.click()
    await confirm.get_by_role("button", name="Delete").click()
    await expect(page).to_have_url(f"{stack.base_url}/")
    await expect(page.locator(".flash")).to_contain_text("“Count” deleted.")
    assert (await stack.api.get(f"/api/v1/tasks/{task['id']}")).status_code == 404
    assert deletes == [f"{stack.base_url}/api/v1/tasks/{task['id']}"]  # only the confirmed one
