"""The deployment the contracts describe: every setting at its default, whatever the environment."""

from __future__ import annotations

from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from shared.settings import Settings


class DefaultSettings(Settings):
    """`Settings` that read no environment variable: the documents must not change with the
    machine (or the CI job) that renders them."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def default_settings(**overrides: Any) -> Settings:
    """Settings at their defaults, with `overrides` (for values that default to the machine)."""
    return DefaultSettings(**overrides)
