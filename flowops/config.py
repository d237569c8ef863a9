"""One settings model for every FlowOps component.

Values come from four places; the first that sets a key wins:

1. command-line flags (passed to :func:`load_settings` as ``overrides``),
2. ``FLOWOPS_*`` environment variables (nested keys joined by ``__``:
   ``FLOWOPS_DRIFT__ALPHA=0.01``),
3. a YAML file (``--config FILE`` or ``FLOWOPS_CONFIG``),
4. the defaults below.

A bad value stops start-up with a :class:`~flowops.errors.ConfigError` that names the key:

>>> load_settings(overrides={"drift": {"bins": 1}})
Traceback (most recent call last):
...
flowops.errors.ConfigError: config: drift.bins: Input should be greater than or equal to 2
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from flowops.errors import ConfigError

__all__ = ["DriftSettings", "Settings", "load_settings"]

_yaml_values: ContextVar[dict[str, Any] | None] = ContextVar("flowops_yaml_values", default=None)


class DriftSettings(BaseModel):
    """How drift is measured and when it counts as drift."""

    model_config = ConfigDict(extra="forbid")

    bins: int = Field(10, ge=2, le=1000, description="quantile bins for PSI")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level of each test")
    correction: Literal["bh", "bonferroni", "none"] = Field(
        "bh", description="multiple-testing correction across a model's features"
    )
    sample_size: int = Field(
        10_000, ge=100, description="reference values kept in a profile for KS"
    )


class Settings(BaseSettings):
    """Every FlowOps setting; sections per component."""

    model_config = SettingsConfigDict(
        env_prefix="FLOWOPS_", env_nested_delimiter="__", extra="forbid"
    )

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    drift: DriftSettings = Field(default_factory=DriftSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_source = InitSettingsSource(settings_cls, init_kwargs=_yaml_values.get() or {})
        return (init_settings, env_settings, yaml_source)


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from flags, environment, YAML file and defaults, in that order."""
    path = config_file or os.environ.get("FLOWOPS_CONFIG")
    token = _yaml_values.set(_read_yaml(Path(path)) if path else {})
    try:
        return Settings(**_drop_unset(overrides or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "<root>"
        raise ConfigError(key, first["msg"]) from None
    finally:
        _yaml_values.reset(token)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "the top level must be a mapping of sections")
    return data


def _drop_unset(values: Mapping[str, Any]) -> dict[str, Any]:
    """Remove flags the user did not give (None), recursively, so lower sources show."""
    kept: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            nested = _drop_unset(value)
            if nested:
                kept[key] = nested
        elif value is not None:
            kept[key] = value
    return kept
