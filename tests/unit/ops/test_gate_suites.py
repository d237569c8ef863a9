"""``flowops test``'s suites: which run, the unit suite (real pytest child processes in a
tiny project), the drift suite (generated data), and the checks made before anything runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flowops.config import DriftSettings
from flowops.data import build_profile
from flowops.errors import ConfigError
from flowops.ops.gate import (
    DriftGate,
    PytestSuite,
    gate_settings,
    judge_pytest,
    parse_suites,
    run_drift,
    run_gate,
    run_pytest,
)
from flowops.ops.junit import JunitCounts

PASSING = "def test_adds():\n    assert 1 + 1 == 2\n"
FAILING = "def test_subtracts():\n    assert 3 - 1 == 1, 'three minus one'\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A model project with one passing and one failing test, in two folders."""
    for folder, text in (("good", PASSING), ("mixed", PASSING + FAILING)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"test_{folder}.py").write_text(text)
    return tmp_path


# -- which suites run --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "suites"),
    [
        ("unit", ["unit"]),
        ("drift, unit", ["unit", "drift"]),
        ("contract,contract", ["contract"]),
        ("unit,contract,drift", ["unit", "contract", "drift"]),
    ],
)
def test_parse_suites_in_the_order_they_run(value: str, suites: list[str]) -> None:
    assert parse_suites(value) == suites


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lint", "unknown suite 'lint'; the suites are: unit, contract, drift"),
        ("unit,Drift", "unknown suite 'Drift'; the suites are: unit, contract, drift"),
        (",", "name at least one suite: unit, contract, drift"),
    ],
)
def test_parse_suites_names_the_valid_ones(value: str, message: str) -> None:
    with pytest.raises(ValueError, match="suite") as caught:
        parse_suites(value)
    assert str(caught.value) == message


UNIT = [{"name": "model", "paths": ["tests"]}]


@pytest.mark.parametrize(
    ("values", "suites", "message"),
    [
        (
            {},
            None,
            "config: test: no suite is configured: add test.unit, test.contract or test.drift",
        ),
        (
            {"unit": UNIT},
            ["unit", "drift"],
            "config: test.drift: not configured; configured: unit (docs/test.md)",
        ),
        (
            {"unit": []},
            None,
            "config: test.unit: List should have at least 1 item after validation, not 0",
        ),
        (
            {"unit": [*UNIT, *UNIT]},
            None,
            "config: test.unit: Value error, two suites are named 'model': names must differ",
        ),
        ({"unit": [{"paths": ["t"]}]}, None, "config: test.unit.0.name: Field required"),
        ({"drift": {"data": "x.csv"}}, None, "config: test.drift.reference: Field required"),
        ({"lint": {}}, None, "config: test.lint: Extra inputs are not permitted"),
    ],
)
def test_gate_settings_errors_name_the_key(
    values: dict[str, Any], suites: list[str] | None, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        gate_settings(values, suites)
    assert str(caught.value) == message


def test_every_configured_suite_is_selected_by_default() -> None:
    gate = gate_settings({"drift": {"reference": "r.json", "data": "d.csv"}, "unit": UNIT}, None)
    assert gate.configured() == ["unit", "drift"]


# -- the unit suite: real pytest runs ------------------------------------------------------


def test_a_passing_suite(project: Path) -> None:
    case = run_pytest(PytestSuite(name="good", paths=["good"], args=["-q"], cwd=project))
    assert (case.suite, case.case, case.outcome, case.detail) == (
        "unit",
        "good",
        "pass",
        "1 passed",
    )
    assert case.seconds > 0


def test_a_failing_suite_names_the_failing_test_and_keeps_the_output(project: Path) -> None:
    lines: list[str] = []
    case = run_pytest(PytestSuite(name="mixed", paths=["mixed"], cwd=project), echo=lines.append)
    assert case.outcome == "fail"
    assert case.detail.startswith(
        "1 passed, 1 failed: mixed.test_mixed.test_subtracts: AssertionError: "
    )
    assert case.detail.endswith("three minus one assert (3 - 1) == 1")
    assert "FAILED mixed/test_mixed.py::test_subtracts" in case.output
    assert any("FAILED mixed/test_mixed.py::test_subtracts" in line for line in lines)  # streamed


def test_args_reach_pytest(project: Path) -> None:
    case = run_pytest(PytestSuite(name="k", paths=["mixed"], args=["-k", "adds"], cwd=project))
    assert (case.outcome, case.detail) == ("pass", "1 passed")


def test_no_tests_collected_is_an_error(project: Path) -> None:
    case = run_pytest(
        PytestSuite(name="none", paths=["mixed"], args=["-k", "nothing"], cwd=project)
    )
    assert (case.outcome, case.detail) == ("error", "pytest collected no tests (exit 5)")


def test_a_collection_error_is_an_error_case(project: Path) -> None:
    (project / "broken").mkdir()
    (project / "broken" / "test_broken.py").write_text("import no_such_module_here\n")
    case = run_pytest(PytestSuite(name="broken", paths=["broken"], cwd=project))
    assert case.outcome == "error"
    assert case.detail.startswith("1 error: broken.test_broken: collection failure")
    assert case.detail.endswith("; pytest exited 2")
    assert "no_such_module_here" in case.output


def test_a_usage_error_names_pytests_last_line(project: Path) -> None:
    case = run_pytest(PytestSuite(name="typo", paths=["nowhere"], cwd=project))
    assert case.outcome == "error"
    assert case.detail == "pytest exited 4: ERROR: file or directory not found: nowhere"


def test_a_suite_of_skips_is_skipped(project: Path) -> None:
    (project / "later").mkdir()
    (project / "later" / "test_later.py").write_text(
        "import pytest\n@pytest.mark.skip(reason='later')\ndef test_x(): pass\n"
    )
    case = run_pytest(PytestSuite(name="later", paths=["later"], cwd=project))
    assert (case.outcome, case.detail) == ("skip", "1 skipped")


def test_a_python_that_cannot_run_is_an_error_case(project: Path) -> None:
    case = run_pytest(PytestSuite(name="p", python=project / "good", cwd=project))
    assert case.outcome == "error"
    assert case.detail.startswith(f"cannot run {project / 'good'}: ")


@pytest.mark.parametrize(
    ("returncode", "counts", "outcome", "detail"),
    [
        (0, JunitCounts(2, 0, 0, 0), "pass", "2 passed"),
        (0, JunitCounts(3, 0, 0, 1), "pass", "2 passed, 1 skipped"),
        (
            1,
            JunitCounts(2, 0, 1, 0, (("t.test_f", "fixture 'db' not found"),)),
            "error",
            "1 passed, 1 error: t.test_f: fixture 'db' not found",
        ),
        (
            1,
            JunitCounts(5, 4, 0, 0, tuple((f"t.test_{i}", "no") for i in range(4))),
            "fail",
            "1 passed, 4 failed: t.test_0: no; t.test_1: no; t.test_2: no (and 1 more)",
        ),
        (2, JunitCounts(1, 0, 1, 0), "error", "1 error; pytest exited 2: Interrupted: 1 error"),
        (
            2,
            JunitCounts(1, 0, 1, 0, (("t", "collection failure\nImportError: x"),)),
            "error",
            "1 error: t: collection failure ImportError: x; pytest exited 2",
        ),
        (3, None, "error", "pytest exited 3: Interrupted: 1 error"),
    ],
)
def test_judge_pytest(
    returncode: int, counts: JunitCounts | None, outcome: str, detail: str
) -> None:
    case = judge_pytest("s", returncode, counts, ["...", "Interrupted: 1 error", ""], 1.0)
    assert (case.outcome, case.detail) == (outcome, detail)


# -- the drift suite -------------------------------------------------------------------------


def write_csv(path: Path, income: np.ndarray[Any, Any], region: list[str]) -> Path:
    rows = [f"{i:.2f},{r}" for i, r in zip(income, region, strict=True)]
    path.write_text("income,region\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture
def datasets(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(7)
    regions = ["north", "south", "east", "west"]
    reference = write_csv(
        tmp_path / "train.csv", rng.normal(50_000, 8_000, 4_000), list(rng.choice(regions, 4_000))
    )
    profile = tmp_path / "profile.json"
    profile.write_text(build_profile(reference, model="credit").to_json())
    same = write_csv(
        tmp_path / "same.csv", rng.normal(50_000, 8_000, 1_000), list(rng.choice(regions, 1_000))
    )
    shifted = write_csv(
        tmp_path / "shifted.csv",
        rng.normal(58_000, 8_000, 1_000),
        list(rng.choice(regions, 1_000)),
    )
    return {"profile": profile, "reference": reference, "same": same, "shifted": shifted}


def test_data_like_the_reference_passes(datasets: dict[str, Path]) -> None:
    gate = DriftGate(reference=datasets["profile"], data=datasets["same"])
    cases = run_drift(gate, DriftSettings())
    assert [(c.suite, c.case, c.outcome) for c in cases] == [
        ("drift", "income", "pass"),
        ("drift", "region", "pass"),
    ]
    assert cases[0].detail.startswith("no drift: PSI ")
    assert "KS p " in cases[0].detail
    assert "chi2 p " in cases[1].detail
    assert cases[0].detail.endswith("(alpha 0.05)")


def test_shifted_data_fails_on_the_feature_that_drifted(datasets: dict[str, Path]) -> None:
    gate = DriftGate(reference=datasets["profile"], data=datasets["shifted"])
    cases = run_drift(gate, DriftSettings())
    assert [(c.case, c.outcome) for c in cases] == [("income", "fail"), ("region", "pass")]
    assert cases[0].detail.startswith("drift: PSI ")


def test_the_same_verdicts_as_drift_compare(datasets: dict[str, Path]) -> None:
    from flowops.data import compare_files

    for name in ("same", "shifted"):
        report = compare_files(datasets["reference"], datasets[name], alpha=0.01)
        gate = DriftGate(reference=datasets["reference"], data=datasets[name], alpha=0.01)
        cases = run_drift(gate, DriftSettings())
        assert [c.outcome == "fail" for c in cases] == [f.drift for f in report.features]


def test_settings_reach_the_engine(datasets: dict[str, Path]) -> None:
    gate = DriftGate(reference=datasets["profile"], data=datasets["shifted"], features=["region"])
    (case,) = run_drift(gate, DriftSettings(alpha=0.2, correction="none"))
    assert case.case == "region"
    assert case.detail.endswith("(alpha 0.2)")


def test_data_that_cannot_be_read_is_one_error_case(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("income,region\nlots,north\n")
    (case,) = run_drift(DriftGate(reference=datasets["profile"], data=bad), DriftSettings())
    assert (case.case, case.outcome) == ("bad.csv", "error")
    assert case.detail == f"{bad}: line 2: column 'income': not a number: 'lots'"


# -- the whole gate ----------------------------------------------------------------------------


def test_run_gate_runs_the_selected_suites_in_order_and_says_each_case(
    project: Path, datasets: dict[str, Path]
) -> None:
    gate = gate_settings(
        {
            "unit": [
                {"name": "good", "paths": ["good"], "cwd": str(project)},
                {"name": "mixed", "paths": ["mixed"], "cwd": str(project)},
            ],
            "drift": {"reference": str(datasets["profile"]), "data": str(datasets["same"])},
        },
        None,
    )
    said: list[str] = []
    report = run_gate(gate, say=said.append)
    assert [(c.suite, c.case, c.outcome) for c in report.cases] == [
        ("unit", "good", "pass"),
        ("unit", "mixed", "fail"),
        ("drift", "income", "pass"),
        ("drift", "region", "pass"),
    ]
    assert not report.ok
    assert report.counts() == {"pass": 3, "fail": 1, "error": 0, "skip": 0}
    assert [line.split(":")[0] for line in said] == [
        "unit/good",
        "unit/mixed",
        "drift/income",
        "drift/region",
    ]
    only_drift = run_gate(gate, ["drift"])
    assert only_drift.ok
    assert {c.suite for c in only_drift.cases} == {"drift"}
    assert only_drift.as_json()["counts"] == {"pass": 2, "fail": 0, "error": 0, "skip": 0}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"unit": [{"name": "u", "cwd": "/no/such/dir"}]},
            "config: test.unit.0.cwd: no such directory: /no/such/dir",
        ),
        (
            {"unit": [{"name": "u", "python": "/no/python"}]},
            "config: test.unit.0.python: not executable: /no/python",
        ),
        (
            {"drift": {"reference": "/no/profile.json", "data": sys.executable}},
            "config: test.drift.reference: no such file: /no/profile.json",
        ),
        (
            {"contract": {"url": "http://127.0.0.1:1", "samples": ["/no/sample.json"]}},
            "config: test.contract.samples.0.file: cannot read /no/sample.json: "
            "No such file or directory",
        ),
    ],
)
def test_nothing_runs_when_something_is_missing(
    values: dict[str, Any], message: str, project: Path
) -> None:
    marker = project / "ran"
    values = {**values, "unit": values.get("unit", [{"name": "first", "cwd": str(project)}])}
    (project / "test_marker.py").write_text(
        f"def test_mark():\n    open({str(marker)!r}, 'w').close()\n"
    )
    said: list[str] = []
    with pytest.raises(ConfigError) as caught:
        run_gate(gate_settings(values, None), say=said.append)
    assert str(caught.value) == message
    assert (said, marker.exists()) == ([], False)
