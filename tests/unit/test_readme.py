"""The README documents every setting, and opens with the two commands."""

from __future__ import annotations

from pathlib import Path

from shared.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def env_name(field: str) -> str:
    return {"mongodb_url": "MONGODB_URL", "amqp_url": "AMQP_URL"}.get(
        field, f"TASKLIGHT_{field.upper()}"
    )


def test_every_setting_is_documented_in_the_configuration_table() -> None:
    missing = [env_name(f) for f in Settings.model_fields if f"`{env_name(f)}`" not in README]
    assert missing == []


def test_the_readme_opens_with_make_run_and_make_test() -> None:
    opening = README[:400]
    assert "make run" in opening
    assert "make test" in opening
