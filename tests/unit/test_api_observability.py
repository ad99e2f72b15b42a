"""The API's request middleware: the correlation id, and requests counted in few labels."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from services.api.observability import ObservabilityMiddleware, correlation_id
from shared import metrics


def test_the_callers_correlation_id_is_kept() -> None:
    assert correlation_id({b"x-correlation-id": b"order-42/retry.1"}) == "order-42/retry.1"


def test_an_x_request_id_is_taken_when_there_is_no_correlation_id() -> None:
    assert correlation_id({b"x-request-id": b"req-7"}) == "req-7"
    both = {b"x-correlation-id": b"corr-1", b"x-request-id": b"req-7"}
    assert correlation_id(both) == "corr-1"


def test_an_id_that_is_too_long_or_odd_is_replaced_by_a_new_one() -> None:
    for bad in (b"x" * 129, b"has space", b"new\nline", b"", b"\xff\xfe"):
        made = correlation_id({b"x-correlation-id": bad})
        assert made != bad.decode("latin-1")
        assert len(made) == 32
        assert int(made, 16) >= 0


def test_each_request_without_one_gets_its_own() -> None:
    assert correlation_id({}) != correlation_id({})


def app_with_middleware() -> Starlette:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    app = Starlette(routes=[Route("/items/{item_id}", hello, methods=["GET"])])
    app.add_middleware(ObservabilityMiddleware)
    return app


def requests_total(method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return metrics.sample(metrics.API_REGISTRY, "tasklight_http_requests_total", labels)


async def test_requests_are_counted_by_route_template_and_odd_methods_and_paths_as_few_labels() -> (
    None
):
    transport = httpx.ASGITransport(app=app_with_middleware())
    before = (
        requests_total("GET", "/items/{item_id}", "200"),
        requests_total("OTHER", "unmatched", "404"),
    )

    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answered = await client.get("/items/42", headers={"X-Correlation-ID": "c-1"})
        await client.request("BREW", "/coffee/pot-1")
        await client.request("BREW", "/coffee/pot-2")

    assert answered.headers["x-correlation-id"] == "c-1"
    assert requests_total("GET", "/items/{item_id}", "200") == before[0] + 1
    assert requests_total("OTHER", "unmatched", "404") == before[1] + 2
