"""``flowops drift compare --html FILE``: the page beside the usual output and exit code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from flowops.cli import cli

pytestmark = pytest.mark.usefixtures("clean_env")


def _csv(path: Path, shift: float, rows: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    values = rng.normal(shift, 1, rows)
    cities = rng.choice(["oslo", "lima"], rows)
    lines = ["x,city", *(f"{float(v)!r},{c}" for v, c in zip(values, cities, strict=True))]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("shift", "code"), [(0.0, 0), (1.0, 1)])
def test_html_is_written_and_the_exit_code_kept(tmp_path: Path, shift: float, code: int) -> None:
    reference = _csv(tmp_path / "ref.csv", 0.0, 3_000, 1)
    current = _csv(tmp_path / "cur.csv", shift, 2_000, 2)
    page = tmp_path / "report.html"
    args = ["drift", "compare", "--reference", str(reference), "--current", str(current)]
    result = CliRunner().invoke(cli, [*args, "-o", "json", "--html", str(page)])
    assert result.exit_code == code, result.output
    report = json.loads(result.stdout)
    text = page.read_text()
    assert f"wrote the HTML report to {page}" in result.stderr
    assert text.count("<article") == len(report["features"]) == 2
    assert ("Drift detected" in text) is report["drift"]


def test_unwritable_html_path_is_one_line_error(tmp_path: Path) -> None:
    reference = _csv(tmp_path / "ref.csv", 0.0, 500, 1)
    args = ["drift", "compare", "--reference", str(reference), "--current", str(reference)]
    result = CliRunner().invoke(cli, [*args, "--html", str(tmp_path / "no" / "r.html")])
    assert result.exit_code == 2, result.output
    assert "r.html" in result.stderr
    assert "Traceback" not in result.stderr
