"""The ``streams`` section of the settings: windows per model, validated."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowops.config import load_settings
from flowops.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("FLOWOPS_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    streams = load_settings().streams
    assert (streams.window.kind, streams.window.size) == ("count", 10_000)
    assert (streams.app_id, streams.metrics_port, streams.store) == (
        "flowops-streams",
        6066,
        "memory://",
    )


def test_a_model_override_and_the_default_window(tmp_path: Path) -> None:
    path = tmp_path / "flowops.yaml"
    path.write_text(
        "streams:\n"
        "  window: {kind: count, size: 5000}\n"
        "  models:\n"
        "    credit: {window: {kind: time, size: 60}}\n"
    )
    streams = load_settings(path).streams
    assert streams.window_for("credit").model_dump() == {"kind": "time", "size": 60}
    assert streams.window_for("fraud").model_dump() == {"kind": "count", "size": 5000}


def test_environment_sets_a_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWOPS_STREAMS__WINDOW__SIZE", "250")
    assert load_settings().streams.window.size == 250


@pytest.mark.parametrize(
    ("streams", "key", "reason"),
    [
        ({"window": {"kind": "count", "size": 2.5}}, "streams.window", "whole number of rows"),
        ({"window": {"kind": "hourly", "size": 1}}, "streams.window.kind", "'count' or 'time'"),
        ({"window": {"size": 0}}, "streams.window.size", "greater than 0"),
        ({"models": {"m": {"window": {"size": -1}}}}, "streams.models.m.window.size", "greater"),
        ({"models": {"m": {"windw": {"size": 1}}}}, "streams.models.m", ""),
        ({"app_id": "has space"}, "streams.app_id", "pattern"),
        ({"metrics_port": 0}, "streams.metrics_port", "greater than or equal to 1"),
    ],
)
def test_a_bad_value_names_its_key(streams: dict[str, object], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(overrides={"streams": streams})
    assert info.value.key.startswith(key)
    assert reason in info.value.reason
