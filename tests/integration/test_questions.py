"""A handler asks its task's owner and waits (`ctx.ask`): answered over REST, timed out, canceled,
and resumed on another worker, on the real database, broker and api."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.worker.app import Worker
from shared.auth import CSRF_COOKIE, DEV_PASSWORD, DEV_USER
from shared.settings import Settings
from tests.support import FINAL, eventually
from tests.support.rest import read, submit

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test's settings with a janitor that looks at timed-out questions often."""
    return settings.model_copy(update={"janitor_interval_s": 0.2})


async def submit_asking(api: httpx.AsyncClient, **args: Any) -> str:
    """A `test.ask` task with `args`."""
    return await submit(api, "test.ask", **args)


async def until_asking(
    api: httpx.AsyncClient, task_id: str, key: str = "question-1"
) -> dict[str, Any]:
    """The task once it waits for an answer to question `key`."""
    return await eventually(
        lambda: read(api, task_id),
        lambda t: t["phase"] == "awaiting_answer" and t["question"]["key"] == key,
    )


async def until_final(api: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    return await eventually(lambda: read(api, task_id), lambda t: t["state"] in FINAL)


async def answer(api: httpx.AsyncClient, task_id: str, value: Any, **body: Any) -> httpx.Response:
    return await api.post(f"/api/v1/tasks/{task_id}/answer", json={"answer": value, **body})


async def test_rest_answers_resume_the_handler_which_goes_on_with_them(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    task_id = await submit_asking(api, questions=2)
    waiting = await until_asking(api, task_id)
    # It waits holding no worker: no run, and its question shown as the API shows the task.
    assert waiting["state"] == "running"
    assert waiting["question"]["title"] == "Question 1 of 2"
    assert [c["value"] for c in waiting["question"]["choices"]] == ["approve", "deny"]
    assert waiting["question"]["deadline"] > waiting["question"]["asked_at"]
    assert waiting["worker"]["name"] == worker.settings.worker_name
    assert task_id not in worker.runner.running

    first = await answer(api, task_id, "approve", question="question-1")
    assert first.status_code == 202, first.text
    assert first.json()["phase"] == "released"
    await until_asking(api, task_id, "question-2")
    assert (await answer(api, task_id, "deny")).status_code == 202

    done = await until_final(api, task_id)
    assert done["state"] == "completed"
    assert done["result"] == {"answers": ["approve", "deny"]}
    # Each answer ran the handler again from its start; each run found the answers so far.
    assert done["runs"] == 3
    assert [(a["key"], a["value"], a["by"]) for a in done["answers"]] == [
        ("question-1", "approve", DEV_USER),
        ("question-2", "deny", DEV_USER),
    ]
    assert [a["outcome"] for a in done["attempts"]] == ["asked", "asked"]
    assert done["question"] is None


async def test_a_second_answer_is_409_and_an_answer_the_question_refuses_is_422(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    task_id = await submit_asking(api, form=True)
    await until_asking(api, task_id)

    refused = await answer(api, task_id, {"reason": "no", "copies": 0, "extra": 1})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"] == "urn:tasklight:problem:invalid-answer"
    assert {tuple(e["loc"]) for e in problem["errors"]} == {
        ("body", "answer"),  # the unexpected property
        ("body", "answer", "copies"),
        ("body", "answer", "reason"),
    }
    not_an_object = await answer(api, task_id, "approve")
    assert not_an_object.status_code == 422
    stale = await answer(api, task_id, {"reason": "why", "copies": 1}, question="question-9")
    assert stale.status_code == 409
    assert stale.json()["type"] == "urn:tasklight:problem:not-asking"

    form = {"reason": "monthly report", "copies": 2, "size": "large", "notify": True}
    assert (await answer(api, task_id, form)).status_code == 202
    again = await answer(api, task_id, form)
    assert again.status_code == 409, again.text
    assert again.json()["type"] == "urn:tasklight:problem:not-asking"
    done = await until_final(api, task_id)
    assert done["result"] == {"answers": [form]}


async def test_an_unanswered_question_fails_its_task_after_its_timeout(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    task_id = await submit_asking(api, timeout_s=0.5)
    done = await until_final(api, task_id)
    assert done["state"] == "failed"
    assert done["error"]["type"] == "no_answer"
    assert done["error"]["message"] == "no answer to 'Question 1 of 1' within 0.5 s"
    late = await answer(api, task_id, "approve")
    assert late.status_code == 409


async def test_a_question_with_a_default_takes_it_when_its_timeout_passes(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    task_id = await submit_asking(api, timeout_s=0.5, default="deny")
    done = await until_final(api, task_id)
    assert done["state"] == "completed"
    assert done["result"] == {"answers": ["deny"]}
    [taken] = done["answers"]
    assert (taken["by"], taken["timed_out"]) == (None, True)


async def test_cancel_while_waiting_for_an_answer_ends_the_task_at_once(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    task_id = await submit_asking(api)
    await until_asking(api, task_id)
    canceled = await api.post(f"/api/v1/tasks/{task_id}/cancel")
    assert canceled.status_code == 202
    # Nobody runs it, so it needs no checkpoint to stop at: canceled in the answer itself.
    assert (canceled.json()["state"], canceled.json()["question"]) == ("canceled", None)
    assert canceled.json()["error"]["message"] == "canceled while waiting for an answer"
    assert (await answer(api, task_id, "approve")).status_code == 409


async def test_a_waiting_task_resumes_on_another_worker_after_its_worker_restarted(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    first = Worker(settings.model_copy(update={"worker_name": "asking-1"}))
    await first.start()
    task_id = await submit_asking(api)
    await until_asking(api, task_id)
    await first.stop()
    second = Worker(settings.model_copy(update={"worker_name": "asking-2"}))
    await second.start()
    try:
        assert (await answer(api, task_id, "approve")).status_code == 202
        done = await until_final(api, task_id)
    finally:
        await second.stop()
    assert (done["state"], done["result"]) == ("completed", {"answers": ["approve"]})
    assert done["worker"]["name"] == "asking-2"


async def test_an_answer_by_cookie_needs_the_csrf_token(
    api: httpx.AsyncClient, worker: Worker, settings: Settings
) -> None:
    task_id = await submit_asking(api)
    await until_asking(api, task_id)
    async with httpx.AsyncClient(base_url=str(api.base_url)) as browser:
        signed_in = await browser.post(
            "/api/v1/session", json={"username": DEV_USER, "password": DEV_PASSWORD}
        )
        assert signed_in.status_code == 200
        forged = await browser.post(f"/api/v1/tasks/{task_id}/answer", json={"answer": "approve"})
        assert forged.status_code == 403
        assert forged.json()["type"] == "urn:tasklight:problem:csrf"
        assert (await read(api, task_id))["phase"] == "awaiting_answer"
        token = {"X-CSRF-Token": browser.cookies[CSRF_COOKIE]}
        sent = await browser.post(
            f"/api/v1/tasks/{task_id}/answer", json={"answer": "approve"}, headers=token
        )
        assert sent.status_code == 202, sent.text
