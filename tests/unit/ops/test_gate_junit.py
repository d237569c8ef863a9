"""The JUnit XML ``flowops test --junit`` writes, and the counts read back from pytest's."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from flowops.errors import InputError
from flowops.ops.junit import CaseResult, JunitCounts, junit_xml, read_junit, write_junit

CASES = [
    CaseResult(
        "unit", "model", "fail", 2.5, "1 passed, 1 failed: t.test_b: assert 3", "E  assert 3"
    ),
    CaseResult("contract", "one-row", "pass", 0.012, "200, 1 row"),
    CaseResult("contract", "slow", "fail", 0.2, "p95 40.0 ms over its 20 ms budget (5 requests)"),
    CaseResult(
        "contract", "down", "error", 0.001, "cannot connect to 127.0.0.1:1: connection refused"
    ),
    CaseResult("drift", "age", "pass", 0.01, "no drift"),
    CaseResult("drift", "zip", "skip", 0.0, "not in the data"),
]


def test_one_testsuite_per_suite_in_the_order_they_ran() -> None:
    root = ET.fromstring(junit_xml(CASES))
    assert root.tag == "testsuites"
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "6",
        "failures": "2",
        "errors": "1",
        "skipped": "1",
    }
    assert root.get("time") == "2.723"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["unit", "contract", "drift"]
    contract = suites[1]
    assert {k: contract.get(k) for k in ("tests", "failures", "errors", "skipped", "time")} == {
        "tests": "3",
        "failures": "1",
        "errors": "1",
        "skipped": "0",
        "time": "0.213",
    }
    assert [c.get("name") for c in contract.findall("testcase")] == ["one-row", "slow", "down"]
    assert {c.get("classname") for c in contract.findall("testcase")} == {"flowops.contract"}


def test_failures_errors_and_skips_carry_their_messages() -> None:
    root = ET.fromstring(junit_xml(CASES))
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert list(cases["one-row"]) == []  # a pass has no child
    (failure,) = cases["model"]
    assert (failure.tag, failure.get("type")) == ("failure", "fail")
    assert failure.get("message") == "1 passed, 1 failed: t.test_b: assert 3"
    assert failure.text == "E  assert 3"  # the longer output is the body
    (slow,) = cases["slow"]
    assert slow.text == slow.get("message")  # no output: the detail is the body
    (error,) = cases["down"]
    assert (error.tag, error.get("type")) == ("error", "error")
    assert "connection refused" in str(error.get("message"))
    (skipped,) = cases["zip"]
    assert (skipped.tag, skipped.get("message"), skipped.text) == (
        "skipped",
        "not in the data",
        None,
    )


def test_colour_codes_and_control_characters_leave_the_file_well_formed() -> None:
    output = '\x1b[31mFAILED\x1b[0m test_x \x00\x08\x0b bell\x07 <tag> & "quotes" ü ✓'
    case = CaseResult("unit", "c\x01olour", "fail", 1.0, "\x1b[1mbold\x1b[0m <msg>", output)
    root = ET.fromstring(junit_xml([case]))  # raises when it is not well-formed
    (failure,) = root.iter("failure")
    assert failure.text == 'FAILED test_x  bell <tag> & "quotes" ü ✓'
    assert failure.get("message") == "bold <msg>"
    assert next(root.iter("testcase")).get("name") == "colour"


def test_write_junit_makes_its_directory_and_reads_back(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "ci" / "gate.xml"
    write_junit(CASES, target)
    assert read_junit(target) == JunitCounts(
        tests=6,
        failures=2,
        errors=1,
        skipped=1,
        problems=(
            ("flowops.unit.model", "1 passed, 1 failed: t.test_b: assert 3"),
            ("flowops.contract.slow", "p95 40.0 ms over its 20 ms budget (5 requests)"),
            ("flowops.contract.down", "cannot connect to 127.0.0.1:1: connection refused"),
        ),
    )


def test_a_path_that_cannot_be_written_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError) as caught:
        write_junit(CASES, tmp_path / "file" / "gate.xml")
    assert str(caught.value).startswith(f"{tmp_path / 'file' / 'gate.xml'}: cannot write the JUnit")


def test_read_junit_counts_what_pytest_writes(tmp_path: Path) -> None:
    (tmp_path / "test_mixed.py").write_text(
        "import pytest\n"
        "def test_ok(): pass\n"
        "def test_bad(): assert 1 == 2, 'one is not two'\n"
        "@pytest.mark.skip(reason='later')\n"
        "def test_later(): pass\n"
        "@pytest.fixture\n"
        "def broken(): raise RuntimeError('no fixture')\n"
        "def test_err(broken): pass\n"
    )
    report = tmp_path / "junit.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    counts = read_junit(report)
    assert (counts.tests, counts.passed, counts.failures, counts.errors, counts.skipped) == (
        4,
        1,
        1,
        1,
        1,
    )
    assert [where for where, _ in counts.problems] == ["test_mixed.test_bad", "test_mixed.test_err"]
    assert "one is not two" in counts.problems[0][1]
    assert counts.summary() == "1 passed, 1 failed, 1 error, 1 skipped"


def test_read_junit_refuses_what_is_not_xml(tmp_path: Path) -> None:
    garbage = tmp_path / "junit.xml"
    garbage.write_text("<testsuites><testsuite")
    with pytest.raises(InputError, match="not a JUnit XML file"):
        read_junit(garbage)
