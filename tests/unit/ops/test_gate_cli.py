"""``flowops test`` as a command: help that starts light, usage and config errors as one
line with exit 2, the table, ``-o json``, ``--junit`` and ``-v``, run as a real process."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner

from flowops.cli import cli

FLOWOPS = [sys.executable, "-m", "flowops"]
DOCS = Path(__file__).resolve().parents[3] / "docs" / "test.md"


def flowops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLOWOPS, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def write_config(path: Path, test: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"test": test}))
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with a passing and a failing test, and drift data that did not drift."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_model.py").write_text(
        "def test_good():\n    assert True\n\ndef test_bad():\n    assert 2 + 2 == 5\n"
    )
    rows = "\n".join(f"{i % 50},{'ab'[i % 2]}" for i in range(400))
    (tmp_path / "reference.csv").write_text(f"x,c\n{rows}\n")
    (tmp_path / "current.csv").write_text(f"x,c\n{rows}\n")
    return tmp_path


def test_help_teaches_and_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from flowops.cli import main\n"
        "sys.argv = ['flowops', 'test', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('numpy', 'pydantic', 'aiohttp', 'rich', 'yaml')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print('heavy:' + ','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "heavy:"
    assert "flowops test --config flowops.yaml --junit" in done.stdout
    assert "Exit codes:" in done.stdout


def test_an_unknown_suite_lists_the_valid_ones() -> None:
    result = CliRunner().invoke(cli, ["test", "--suite", "unit,lint"])
    assert result.exit_code == 2
    assert "unknown suite 'lint'; the suites are: unit, contract, drift" in result.stderr


def test_a_suite_that_is_not_configured_says_which_key(project: Path) -> None:
    config = write_config(
        project / "flowops.yaml", {"unit": [{"name": "u", "paths": ["tests"], "cwd": str(project)}]}
    )
    result = CliRunner().invoke(cli, ["test", "--config", str(config), "--suite", "contract"])
    assert result.exit_code == 2
    assert result.stderr == (
        "flowops: error: config: test.contract: not configured; configured: unit (docs/test.md)\n"
    )


def test_a_bad_key_is_one_line_and_exit_2_without_a_traceback(project: Path) -> None:
    config = write_config(
        project / "flowops.yaml", {"contract": {"url": "127.0.0.1:5001", "samples": ["a.json"]}}
    )
    junit = project / "gate.xml"
    done = flowops("test", "--config", str(config), "--junit", str(junit), cwd=project)
    assert done.returncode == 2
    assert done.stderr == (
        "flowops: error: config: test.contract.url: Value error, expected an http:// or "
        "https:// URL, got '127.0.0.1:5001'\n"
    )
    assert done.stdout == ""
    assert not junit.exists()  # nothing ran


def test_unit_and_drift_end_to_end_with_junit(project: Path) -> None:
    config = write_config(
        project / "flowops.yaml",
        {
            "unit": [{"name": "model", "paths": ["tests"], "args": ["-q"]}],
            "drift": {"reference": "reference.csv", "data": "current.csv"},
        },
    )
    junit = project / "reports" / "gate.xml"
    done = flowops("test", "--config", str(config), "--junit", str(junit), cwd=project)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith("flowops test: ")]
    assert [line.split(":")[1].strip() for line in progress[:3]] == [
        "unit/model",
        "drift/x",
        "drift/c",
    ]
    assert progress[-1] == f"flowops test: wrote JUnit XML to {junit}"
    assert re.search(r"^unit\s+model\s+fail\s+[\d.]+\s+1 passed, 1 failed: ", done.stdout, re.M)
    assert re.search(r"^drift\s+x\s+pass\s+", done.stdout, re.M)
    assert done.stdout.rstrip().endswith("FAILED: 2 pass, 1 fail")
    root = ET.parse(junit).getroot()
    assert [s.get("name") for s in root.findall("testsuite")] == ["unit", "drift"]
    (failure,) = root.iter("failure")
    assert "test_bad" in str(failure.get("message"))
    assert "assert (2 + 2) == 5" in str(failure.text)


def test_json_output_and_a_passing_gate_exit_0(project: Path) -> None:
    config = write_config(
        project / "flowops.yaml",
        {
            "unit": [{"name": "good", "paths": ["tests"], "args": ["-k", "good"]}],
            "drift": {"reference": "reference.csv", "data": "current.csv", "alpha": 0.01},
        },
    )
    done = flowops("test", "--config", str(config), "-o", "json", cwd=project)
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert report["ok"] is True
    assert report["counts"] == {"pass": 3, "fail": 0, "error": 0, "skip": 0}
    assert [(c["suite"], c["case"], c["result"]) for c in report["cases"]] == [
        ("unit", "good", "pass"),
        ("drift", "x", "pass"),
        ("drift", "c", "pass"),
    ]
    assert report["cases"][0]["detail"] == "1 passed"  # deselected tests are not in the JUnit


def test_verbose_streams_pytests_output_under_a_prefix(project: Path) -> None:
    unit = [{"name": "m", "paths": ["tests"], "cwd": str(project)}]
    config = write_config(project / "flowops.yaml", {"unit": unit})
    quiet = CliRunner().invoke(cli, ["test", "--config", str(config)])
    loud = CliRunner().invoke(cli, ["test", "--config", str(config), "-v"])
    assert (quiet.exit_code, loud.exit_code) == (1, 1)
    assert "flowops test: | FAILED tests/test_model.py::test_bad" in loud.stderr
    assert "FAILED tests/test_model.py::test_bad" not in quiet.stderr


def test_docs_list_every_setting() -> None:
    from flowops.ops.contract import ContractSettings, Expect, Sample
    from flowops.ops.gate import DriftGate, PytestSuite

    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(test\.[\w.\[\]]+)` \|", text, flags=re.MULTILINE))
    expected = {f"test.unit[].{name}" for name in PytestSuite.model_fields}
    expected |= {f"test.contract.{name}" for name in ContractSettings.model_fields}
    expected |= {f"test.contract.samples[].{name}" for name in Sample.model_fields}
    expected |= {f"test.contract.expect.{name}" for name in Expect.model_fields}
    expected |= {f"test.drift.{name}" for name in DriftGate.model_fields}
    assert documented == expected


def test_docs_example_is_valid_settings() -> None:
    from flowops.ops.gate import gate_settings

    text = DOCS.read_text(encoding="utf-8")
    (example,) = re.findall(r"```yaml\n(test:\n.*?)```", text, flags=re.DOTALL)
    gate = gate_settings(yaml.safe_load(example)["test"], None)
    assert gate.configured() == ["unit", "contract", "drift"]


def test_the_example_project_is_valid_and_its_suite_passes() -> None:
    from flowops.ops.gate import gate_settings, run_pytest

    example = DOCS.parents[1] / "examples" / "gate"
    settings = yaml.safe_load((example / "flowops.yaml").read_text(encoding="utf-8"))
    gate = gate_settings(settings["test"], None)
    assert gate.configured() == ["unit", "contract", "drift"]
    assert gate.unit is not None
    (suite,) = gate.unit
    case = run_pytest(suite.model_copy(update={"cwd": example}))
    assert (case.outcome, case.detail) == ("pass", "6 passed")
