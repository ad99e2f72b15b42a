"""Bad input gets problem details naming the problem, and leaves no task behind."""

from __future__ import annotations

import aio_pika
import httpx
import pytest

from shared.settings import Settings
from shared.store import Store
from shared.topology import Topology

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


async def assert_no_task_stored(store: Store) -> None:
    assert await store.tasks.collection.count_documents({}) == 0


async def test_an_unknown_task_type_is_422_naming_the_name_field(
    api: httpx.AsyncClient, store: Store
) -> None:
    response = await api.post("/api/v1/tasks", json={"name": "no.such", "args": {}})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "urn:tasklight:problem:invalid-task"
    assert problem["errors"][0]["loc"] == ["body", "name"]
    assert "test.count" in problem["errors"][0]["msg"]
    await assert_no_task_stored(store)


async def test_bad_arguments_are_422_naming_the_argument(
    api: httpx.AsyncClient, store: Store
) -> None:
    response = await api.post(
        "/api/v1/tasks", json={"name": "test.count", "args": {"rounds": "many"}}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "args", "rounds"]
    await assert_no_task_stored(store)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 422),
        (b'{"args": {}}', 422),
        (b'{"name": "test.count", "args": [1]}', 422),
        (b'{"name": "test.count", "surprise": 1}', 422),
        (b'{"name": "test.count", "ui": {"header": 3}}', 422),
    ],
)
async def test_malformed_bodies_get_a_problem_and_no_task(
    api: httpx.AsyncClient, store: Store, body: bytes, status: int
) -> None:
    response = await api.post(
        "/api/v1/tasks", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == status
    await assert_no_task_stored(store)


async def test_a_body_over_the_configured_limit_is_413(
    api: httpx.AsyncClient, settings: Settings, store: Store
) -> None:
    big = "x" * (settings.max_body_bytes + 1)
    response = await api.post("/api/v1/tasks", json={"name": "test.count", "metadata": {"x": big}})
    assert response.status_code == 413
    assert response.json()["type"] == "urn:tasklight:problem:body-too-large"
    await assert_no_task_stored(store)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/tasks/01a20245-1f44-7dc7-b64e-4fc770022ace",
        "/api/v1/tasks/not-an-id",
        "/api/v1/tasks/%00",
        "/api/v1/tasks/01a20245-1f44-7dc7-b64e-4fc770022ace/events",
    ],
)
async def test_unknown_or_malformed_ids_are_404(api: httpx.AsyncClient, path: str) -> None:
    response = await api.get(path)
    assert response.status_code == 404
    assert response.json()["type"] == "urn:tasklight:problem:not-found"


async def test_an_unroutable_command_is_503_with_retry_after_and_leaves_no_task(
    api: httpx.AsyncClient, settings: Settings, store: Store
) -> None:
    # The broker takes the publish but cannot route it: the mandatory publish comes back.
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(Topology(settings.namespace).tasks_queue)

    response = await api.post("/api/v1/tasks", json={"name": "test.count", "args": {}})

    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert response.json()["type"] == "urn:tasklight:problem:broker-unavailable"
    await assert_no_task_stored(store)


async def test_the_openapi_document_health_and_readiness_are_served(
    api: httpx.AsyncClient,
) -> None:
    openapi = (await api.get("/openapi.json")).json()
    assert "/api/v1/tasks" in openapi["paths"]
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}


async def test_task_types_list_each_type_with_the_json_schema_of_its_args(
    api: httpx.AsyncClient,
) -> None:
    types = {t["name"]: t for t in (await api.get("/api/v1/task-types")).json()}
    assert {"test.count", "test.fail", "test.spawn"} <= set(types)
    assert set(types["test.count"]["args_schema"]["properties"]) == {"rounds", "round_s"}
