"""Bad input to the REST API gets its own documented problem on every route: a body that is not
JSON by the one rule (shared/jsonlimits.py) is refused before any route reads it, the same way
wherever it is sent, and never with the generic `http` problem."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.api.json_body import is_json_media_type
from shared.jsonlimits import MAX_DOCUMENT_DEPTH
from shared.store import Store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = "urn:tasklight:problem:"
JSON = {"content-type": "application/json"}
#: A well-formed id for the routes' path parameters (the body is judged before the route).
SOME_ID = "01a2b3c4-0000-7000-8000-000000000000"
#: Each bad input, as (content type, body), with the problem it is documented to get.
BAD_INPUT: dict[str, tuple[str, bytes, str]] = {
    "not JSON media type": ("text/plain", b'{"a": 1}', "unsupported-media-type"),
    "syntax error": ("application/json", b'{"a": ', "malformed-json"),
    "NaN": ("application/json", b'{"a": NaN}', "malformed-json"),
    "out of range": ("application/json", b'{"a": 1e400}', "malformed-json"),
    "integer too long": ("application/json", b'{"a": ' + b"7" * 5000 + b"}", "malformed-json"),
    "not UTF-8": ("application/json", b'{"a": "\xff"}', "malformed-json"),
    "lone surrogate": ("application/json", b'{"a": "\\ud800"}', "malformed-json"),
    "too deep": (
        "application/json",
        ('{"a":' * (MAX_DOCUMENT_DEPTH + 1) + "1" + "}" * (MAX_DOCUMENT_DEPTH + 1)).encode(),
        "too-deep",
    ),
}


async def stored(store: Store) -> int:
    return await store.tasks.collection.count_documents({})


@pytest.mark.parametrize("number", ["1e400", "-1e400", "2.5E+999"])
@pytest.mark.parametrize(
    "template",
    [
        '{"name": "test.count", "args": {"rounds": 1, "round_s": N}}',
        '{"name": "test.count", "args": {"rounds": 1}, "metadata": {"x": N}}',
        '{"name": "test.count", "args": {"rounds": 1}, "priority": N}',
        '{"name": "test.count", "args": {"rounds": 1}, "delay_s": N}',
    ],
    ids=["args", "metadata", "priority", "delay_s"],
)
async def test_a_number_out_of_range_is_refused_as_infinity_is(
    api: httpx.AsyncClient, store: Store, template: str, number: str
) -> None:
    # 1e400 reads as Infinity in Python: refused by the JSON rule, not later by each field
    body = template.replace("N", number).encode()

    response = await api.post("/api/v1/tasks", content=body, headers=JSON)

    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["type"] == f"{PROBLEM}malformed-json"
    assert f"{number} is out of range" in problem["detail"]
    assert await stored(store) == 0


async def test_a_json_type_with_a_json_suffix_is_taken_as_json_as_documented(
    api: httpx.AsyncClient,
) -> None:
    body = b'{"name": "test.noop", "args": {}}'
    for content_type in ("application/json", "application/vnd.acme.task+json; charset=utf-8"):
        response = await api.post(
            "/api/v1/tasks", content=body, headers={"content-type": content_type}
        )
        assert response.status_code == 202, (content_type, response.text)
    for content_type in ("text/json", "application/jsonp", "application/x-www-form-urlencoded"):
        response = await api.post(
            "/api/v1/tasks", content=body, headers={"content-type": content_type}
        )
        assert response.status_code == 415, (content_type, response.text)
    # The documentation says what the api does
    table = (ROOT / "docs" / "backend.md").read_text().split("### Problem types", 1)[1]
    row = next(line for line in table.splitlines() if line.startswith("| `unsupported-media-type`"))
    assert "`application/json`" in row
    assert "`application/…+json`" in row
    assert is_json_media_type("application/problem+json")


def operations(document: dict[str, Any]) -> list[tuple[str, str]]:
    """Every documented (method, path) that may take a body, path parameters filled in."""
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", SOME_ID, path))
        for path, item in document["paths"].items()
        for method in item
        if method in ("post", "put", "patch", "delete")
    ]


async def test_no_documented_route_answers_bad_input_with_the_generic_problem(
    api: httpx.AsyncClient, store: Store
) -> None:
    document = (await api.get("/openapi.json")).json()
    routes = operations(document)
    assert ("POST", "/api/v1/tasks") in routes  # the routes are read from the document

    wrong = []
    for method, path in routes:
        for case, (content_type, body, expected) in BAD_INPUT.items():
            response = await api.request(
                method, path, content=body, headers={"content-type": content_type}
            )
            got = response.json().get("type") if response.content else None
            if got != f"{PROBLEM}{expected}":
                wrong.append(f"{method} {path} ({case}): {response.status_code} {got}")
    assert wrong == []
    assert await stored(store) == 0
