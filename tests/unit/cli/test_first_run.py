"""First-run rough edges, each run as a user would: `python -m flowops ...` in a
subprocess, judged by its exit code and what it prints on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def flowops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWOPS_")}
    return subprocess.run(
        [sys.executable, "-m", "flowops", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def data(tmp_path: Path, name: str, shift: int = 0) -> Path:
    path = tmp_path / name
    path.write_text("age\n" + "".join(f"{20 + (i + shift) % 40}\n" for i in range(200)))
    return path


def test_a_malformed_yaml_config_is_one_line_naming_the_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "flowops.yaml"
    config.write_text("kafka:\n  bootstrap: [oops\n  x: {\n")
    done = flowops(
        "drift", "compare", "--config", str(config),
        "--reference", str(data(tmp_path, "a.csv")), "--current", str(data(tmp_path, "b.csv")),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"flowops: error: config: {config}: not valid YAML: line 3,")


def test_config_may_come_before_the_subcommand(tmp_path: Path) -> None:
    """`flowops --config x drift ...` reads x; the subcommand's own --config wins."""
    bad, good = tmp_path / "bad.yaml", tmp_path / "good.yaml"
    bad.write_text("drift: {bins: 1}\n")
    good.write_text("drift: {bins: 5}\n")
    files = ["--reference", str(data(tmp_path, "a.csv")), "--current", str(data(tmp_path, "b.csv"))]
    before = flowops("--config", str(bad), "drift", "compare", *files, cwd=tmp_path)
    assert before.returncode == 2
    assert "config: drift.bins: Input should be greater than or equal to 2" in before.stderr
    both = flowops(
        "--config", str(bad), "drift", "compare", "--config", str(good), *files, cwd=tmp_path
    )
    assert both.returncode == 0, both.stderr


def test_a_json_reference_that_is_no_profile_is_blamed_not_the_current_file(
    tmp_path: Path,
) -> None:
    reference = tmp_path / "settings.json"
    reference.write_text('{"model": "credit", "threshold": 0.2}')
    done = flowops(
        "drift", "compare", "--reference", str(reference),
        "--current", str(data(tmp_path, "current.csv")), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith(f"flowops: error: {reference}: not a FlowOps profile"), (
        done.stderr
    )
    assert "current.csv" not in done.stderr
