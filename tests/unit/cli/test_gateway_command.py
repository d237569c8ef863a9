"""``flowops gateway``: its help, a new API key with its config entry, and a bad config
stopped at start-up with the key named (no traceback)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from click.testing import CliRunner

from flowops.cli import cli


def test_new_key_prints_the_key_and_an_entry_holding_only_its_hash() -> None:
    result = CliRunner().invoke(cli, ["gateway", "--new-key", "ci-pipeline"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key.startswith("fo_")
    assert len(key) >= 40
    entry = yaml.safe_load(result.stderr.split("\n", 2)[2])
    (stored,) = entry["gateway"]["auth"]["api_keys"]
    assert stored == {
        "name": "ci-pipeline",
        "sha256": hashlib.sha256(key.encode()).hexdigest(),
    }
    assert key not in result.stderr


def test_new_key_refuses_a_name_no_config_could_hold() -> None:
    result = CliRunner().invoke(cli, ["gateway", "--new-key", "two words"])
    assert result.exit_code == 2
    assert "--new-key: 'two words': String should match pattern" in result.stderr


def test_a_bad_gateway_section_names_its_key_and_starts_nothing(tmp_path: Path) -> None:
    config = tmp_path / "flowops.yaml"
    config.write_text("gateway:\n  routes:\n    - {name: iris, prefix: models/iris}\n")
    result = CliRunner().invoke(cli, ["gateway", "--config", str(config)])
    assert result.exit_code == 2
    assert "gateway.routes.0.prefix" in result.stderr
    assert "a prefix starts with '/'" in result.stderr
    assert "Traceback" not in result.output


def test_help_teaches_the_config_and_the_key_command() -> None:
    result = CliRunner().invoke(cli, ["gateway", "--help"])
    assert result.exit_code == 0
    for text in ("--config", "--new-key", "upstreams:", "docs/gateway.md", "Exit codes"):
        assert text in result.output
