"""``flowops up`` without services: its help, its settings, and errors before start-up."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from flowops import demo
from flowops.cli import cli
from flowops.config import load_settings
from flowops.events import TrafficBatch
from flowops.up import DEMO_WINDOW_ROWS, _with_demo_window


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("FLOWOPS_"):
            monkeypatch.delenv(key)


def test_help_teaches_the_demo_and_the_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["up", "--help"])
    assert result.exit_code == 0
    assert "flowops up --demo" in result.output
    assert "--bootstrap HOST:PORT" in result.output
    assert "1  --demo --duration: the demo's drift was not detected" in result.output
    assert "up " in CliRunner().invoke(cli, ["--help"]).output


def test_the_demo_model_gets_its_window_unless_the_config_names_one(tmp_path: Path) -> None:
    plain = _with_demo_window(load_settings())
    window = plain.streams.window_for(demo.MODEL)
    assert (window.kind, window.size) == ("count", DEMO_WINDOW_ROWS)
    assert plain.streams.window_for("other").size == 10_000

    path = tmp_path / "flowops.yaml"
    path.write_text(f"streams: {{models: {{{demo.MODEL}: {{window: {{kind: time, size: 5}}}}}}}}")
    configured = _with_demo_window(load_settings(path))
    assert configured.streams.window_for(demo.MODEL).kind == "time"


def test_a_taken_metrics_port_stops_start_up_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            cli, ["up", "--metrics-port", str(port), "--workdir", str(tmp_path)]
        )
    assert result.exit_code == 2
    assert result.output == (
        f"flowops: error: config: streams.metrics_port: port {port} is already in use (an "
        "earlier `flowops up` or worker?); choose another with --metrics-port\n"
    )


def test_bootstrap_means_no_embedded_broker() -> None:
    settings = load_settings(overrides={"broker": {"embedded": False}})
    assert not settings.broker.embedded
    assert load_settings().broker.embedded


def test_a_demo_batch_has_every_feature_and_shifts_only_income() -> None:
    traffic = demo.DemoTraffic(rate=1_000, shift_after=0)
    before = traffic.batch(5_000)
    traffic.shifted_at = 1.0
    after = traffic.batch(5_000)
    assert set(before.features) == {"age", "income", "debt_ratio", "region", "channel"}
    assert before.rows == after.rows == 5_000

    def median(batch: TrafficBatch, name: str) -> float:
        return float(np.median(np.asarray(batch.features[name], dtype=float)))

    assert median(after, "income") / median(before, "income") == pytest.approx(60 / 52, rel=0.03)
    assert median(after, "age") == pytest.approx(median(before, "age"), abs=1)
