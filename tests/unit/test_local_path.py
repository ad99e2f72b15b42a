"""The one rule for URLs a page follows: the family of forms a browser reads as another site."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest

from services.api.ui import safe_next
from shared.local_path import local_path

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "local_paths.json").read_text()
)


@pytest.mark.parametrize("case", CASES, ids=[c["why"] for c in CASES])
def test_each_case_is_judged_as_the_list_says(case: dict[str, Any]) -> None:
    assert local_path(case["url"]) == case["local"]


@pytest.mark.parametrize("case", CASES, ids=[c["why"] for c in CASES])
def test_a_sign_in_goes_on_only_to_a_local_path(case: dict[str, Any]) -> None:
    assert safe_next(case["url"]) == (case["local"] or "/")


def test_every_accepted_path_stays_on_the_site_and_holds_no_control_character() -> None:
    base = "http://127.0.0.1:8000/login"
    for case in CASES:
        path = case["local"]
        if path is not None:
            assert urlsplit(urljoin(base, path)).netloc == "127.0.0.1:8000", case
            assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in path), case


def test_the_list_holds_the_family_the_rule_exists_for() -> None:
    refused = {c["url"] for c in CASES if c["local"] is None}
    assert {"/\t/evil.example", "/\n/evil.example", "//evil.example", "/\\evil.example"} <= refused
