"""The numbers docs/webhooks.md and the README's settings table give for the webhook settings
are the defaults of `shared/settings.py`: each is read from both sides, so changing a default
without its documentation (or the other way round) fails here."""

from __future__ import annotations

import re
from pathlib import Path

from services.webhooks.dispatcher import schedule_of
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "webhooks.md").read_text()
README = (ROOT / "README.md").read_text()

#: "`TASKLIGHT_WEBHOOK_RETRY_BASE_S` (10 s)": a setting and, in parentheses starting with a
#: number, its default.
STATED = re.compile(r"`TASKLIGHT_(WEBHOOK_[A-Z_]+)` \((\d[^)]*)\)")
#: A README settings row: "| `TASKLIGHT_WEBHOOK_TIMEOUT_S` | `10` | ...".
ROW = re.compile(r"^\| `TASKLIGHT_(WEBHOOK_[A-Z_]+)` \| `([^`]+)`", re.MULTILINE)
SECONDS = {
    "": 1.0,
    "s": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "minute": 60.0,
    "minutes": 60.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "day": 86400.0,
    "days": 86400.0,
}
#: What the page must state the default of: the numbers a reader plans by.
MUST_STATE = {
    "webhook_timeout_s",
    "webhook_retry_base_s",
    "webhook_retry_max_interval_s",
    "webhook_retry_window_s",
    "webhook_disable_after_failures",
    "webhook_secret_overlap_s",
    "webhook_concurrency",
    "webhook_endpoint_concurrency",
    "webhook_slow_concurrency",
    "webhook_slow_after_s",
    "webhook_retention_s",
}


def default(field: str) -> object:
    return Settings.model_fields[field].default


def number(field: str) -> float:
    value = default(field)
    assert isinstance(value, int | float), (field, value)
    return float(value)


def quantity(text: str) -> float:
    """The number a doc gives, in seconds if it names a unit: "10 s", "1 hour", "5"."""
    first = re.split(r"[;,]", text, maxsplit=1)[0].strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", first)
    assert match is not None, f"not a quantity: {text!r}"
    amount, unit = match.groups()
    assert unit in SECONDS, f"unknown unit in {text!r}"
    return float(amount) * SECONDS[unit]


def test_every_default_the_webhooks_page_states_is_the_settings_default() -> None:
    stated = [(name.lower(), value) for name, value in STATED.findall(DOC)]
    wrong = [
        (field, value, number(field)) for field, value in stated if quantity(value) != number(field)
    ]
    assert wrong == []
    assert MUST_STATE - {field for field, _ in stated} == set()


def test_the_readme_table_gives_the_same_webhook_defaults() -> None:
    rows = ROW.findall(README)
    assert len(rows) >= len(MUST_STATE)
    wrong = []
    for name, value in rows:
        field = name.lower()
        expected = default(field)
        shown: object = value == "true" if value in ("true", "false") else float(value)
        if shown != expected:
            wrong.append((field, value, expected))
    assert wrong == []


def test_the_page_counts_the_attempts_the_default_schedule_makes() -> None:
    # With each wait at its mean (three quarters of its ceiling), the attempts in one window.
    schedule = schedule_of(Settings.model_construct())
    attempts, elapsed = 1, 0.0
    while True:
        elapsed += schedule.delay_s(attempts, rand=lambda: 0.5)
        if elapsed > schedule.window_s:
            break
        attempts += 1
    match = re.search(r"about (\d+) attempts", DOC)
    assert match is not None
    assert abs(int(match.group(1)) - attempts) <= attempts * 0.1, attempts
