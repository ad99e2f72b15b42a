"""Every problem type the api can answer with is documented, in docs/ and in the OpenAPI."""

from __future__ import annotations

import json
from pathlib import Path

from services.api.problems import PROBLEM_TYPES

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "urn:tasklight:problem:"


def test_every_problem_type_is_in_the_table_of_docs_backend_md() -> None:
    table = (ROOT / "docs" / "backend.md").read_text().split("### Problem types", 1)[1]
    rows = {
        line.split("|")[1].strip().strip("`"): line.split("|")[2].strip()
        for line in table.splitlines()
        if line.startswith("| `")
    }
    for type_, (status, _) in PROBLEM_TYPES.items():
        name = type_.removeprefix(PREFIX)
        assert name in rows, f"{name} is not in docs/backend.md"
        assert rows[name] in (str(status), "any"), f"{name}: status {rows[name]} != {status}"
    assert set(rows) == {t.removeprefix(PREFIX) for t in PROBLEM_TYPES}


def test_every_problem_type_is_in_the_committed_openapi_document() -> None:
    document = json.loads((ROOT / "docs" / "contracts" / "openapi.json").read_text())
    problem = document["components"]["schemas"]["Problem"]
    assert problem["properties"]["type"]["enum"] == list(PROBLEM_TYPES)
    assert problem["x-problem-types"] == {
        t: {"status": status, "title": title} for t, (status, title) in PROBLEM_TYPES.items()
    }
