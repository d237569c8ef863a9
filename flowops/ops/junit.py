"""The cases ``flowops test`` runs, and the JUnit XML CI systems read them from.

Every suite of the gate (``unit``, ``contract``, ``drift``) answers :class:`CaseResult`
rows: a case, its outcome, how long it took and one line saying why. :func:`junit_xml`
writes them as JUnit XML, one ``<testsuite>`` per suite, in the order they ran:

>>> cases = [
...     CaseResult("contract", "one-row", "pass", 0.012, "200, 1 row"),
...     CaseResult("drift", "income", "fail", 0.003, "drift: adjusted p 0.0001"),
... ]
>>> print(junit_xml(cases, timestamp="2026-01-01T00:00:00").decode())  # doctest: +ELLIPSIS
<?xml version='1.0' encoding='utf-8'?>
<testsuites name="flowops test" tests="2" failures="1" errors="0" skipped="0" time="0.015">
  <testsuite name="contract" tests="1" failures="0" errors="0" skipped="0" time="0.012" ...>
    <testcase classname="flowops.contract" name="one-row" time="0.012" />
  </testsuite>
  <testsuite name="drift" tests="1" failures="1" errors="0" skipped="0" time="0.003" ...>
    <testcase classname="flowops.drift" name="income" time="0.003">
      <failure message="drift: adjusted p 0.0001" type="fail">drift: adjusted p 0.0001</failure>
    </testcase>
  </testsuite>
</testsuites>
<BLANKLINE>

Text that XML 1.0 cannot hold (terminal colour codes in pytest's output, other control
characters) is left out, so the file is always well-formed.

:func:`read_junit` reads the counts back from a JUnit file, such as the one pytest
writes with ``--junitxml``: that is how the ``unit`` suite learns what pytest found.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

from flowops.errors import InputError

__all__ = [
    "OUTCOMES",
    "CaseResult",
    "JunitCounts",
    "Outcome",
    "junit_xml",
    "read_junit",
    "write_junit",
]

Outcome: TypeAlias = Literal["pass", "fail", "error", "skip"]
"""``fail``: the check ran and found a problem; ``error``: the check could not run (a
server that did not answer, a suite that crashed); both fail the gate."""

OUTCOMES: Final = ("pass", "fail", "error", "skip")

_ANSI: Final = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ELEMENT: Final = {"fail": "failure", "error": "error", "skip": "skipped"}


@dataclass(frozen=True)
class CaseResult:
    """One case of one suite; ``output`` is longer text for the JUnit body (a test's
    output, the failing requests), empty when the detail says it all."""

    suite: str
    case: str
    outcome: Outcome
    seconds: float
    detail: str
    output: str = ""

    @property
    def ok(self) -> bool:
        """Passed or skipped: the gate does not fail on it."""
        return self.outcome in ("pass", "skip")

    def as_json(self) -> dict[str, Any]:
        """The row as ``-o json`` prints it."""
        return {
            "suite": self.suite,
            "case": self.case,
            "result": self.outcome,
            "seconds": round(self.seconds, 6),
            "detail": self.detail,
        }


def junit_xml(cases: Sequence[CaseResult], *, timestamp: str | None = None) -> bytes:
    """``cases`` as a JUnit XML document (UTF-8), one ``<testsuite>`` per suite."""
    stamp = timestamp or datetime.now(UTC).replace(microsecond=0).isoformat()
    root = ET.Element("testsuites", {"name": "flowops test", **_counts(cases)})
    for suite, members in _by_suite(cases):
        element = ET.SubElement(root, "testsuite", {"name": suite, **_counts(members)})
        element.set("timestamp", stamp)
        for case in members:
            _testcase(element, case)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def write_junit(cases: Sequence[CaseResult], path: str | Path) -> None:
    """Write :func:`junit_xml` of ``cases`` to ``path`` (its directories made as needed);
    an :class:`InputError` names it when it cannot be written."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(junit_xml(cases))
    except OSError as exc:
        raise InputError(
            f"cannot write the JUnit report: {exc.strerror or exc}", path=str(path)
        ) from None


def _testcase(parent: ET.Element, case: CaseResult) -> None:
    element = ET.SubElement(
        parent,
        "testcase",
        classname=f"flowops.{case.suite}",
        name=_xml_text(case.case),
        time=f"{case.seconds:.3f}",
    )
    tag = _ELEMENT.get(case.outcome)
    if tag is None:
        return
    child = ET.SubElement(element, tag, message=_xml_text(case.detail))
    if tag != "skipped":
        child.set("type", case.outcome)
        child.text = _xml_text(case.output or case.detail)


def _counts(cases: Sequence[CaseResult]) -> dict[str, str]:
    def count(outcome: Outcome) -> str:
        return str(sum(case.outcome == outcome for case in cases))

    return {
        "tests": str(len(cases)),
        "failures": count("fail"),
        "errors": count("error"),
        "skipped": count("skip"),
        "time": f"{sum(case.seconds for case in cases):.3f}",
    }


def _by_suite(cases: Iterable[CaseResult]) -> list[tuple[str, list[CaseResult]]]:
    suites: dict[str, list[CaseResult]] = {}
    for case in cases:
        suites.setdefault(case.suite, []).append(case)
    return list(suites.items())


def _xml_text(text: str) -> str:
    """``text`` without terminal colour codes and characters XML 1.0 cannot hold.

    >>> _xml_text("\\x1b[31mFAILED\\x1b[0m x\\x00y")
    'FAILED xy'
    """
    return _NOT_XML.sub("", _ANSI.sub("", text))


@dataclass(frozen=True)
class JunitCounts:
    """What a JUnit file holds: counts, and the failed or errored tests with messages."""

    tests: int
    failures: int
    errors: int
    skipped: int
    problems: tuple[tuple[str, str], ...] = ()

    @property
    def passed(self) -> int:
        """Tests that neither failed, errored nor were skipped."""
        return self.tests - self.failures - self.errors - self.skipped

    def summary(self) -> str:
        """Counts in pytest's words, the non-zero ones.

        >>> JunitCounts(tests=4, failures=1, errors=0, skipped=1).summary()
        '2 passed, 1 failed, 1 skipped'
        """
        words = (
            (self.passed, "passed"),
            (self.failures, "failed"),
            (self.errors, "errors" if self.errors != 1 else "error"),
            (self.skipped, "skipped"),
        )
        return ", ".join(f"{n} {word}" for n, word in words if n) or "no tests"


def read_junit(path: str | Path) -> JunitCounts:
    """The counts of a JUnit XML file (``<testsuites>`` or a single ``<testsuite>``)
    summed over its suites; raises :class:`InputError` when it is not JUnit XML.

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> report = Path(folder.name, "junit.xml")
    >>> _ = report.write_bytes(junit_xml([CaseResult("drift", "age", "error", 0.1, "bad")]))
    >>> read_junit(report)
    JunitCounts(tests=1, failures=0, errors=1, skipped=0, problems=(('flowops.drift.age', 'bad'),))
    >>> folder.cleanup()
    """
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise InputError(f"not a JUnit XML file: {exc}", path=str(path)) from None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    problems: list[tuple[str, str]] = []
    for suite in suites:
        for name in totals:
            totals[name] += int(suite.get(name, "0") or 0)
        for case in suite.iter("testcase"):
            for child in case:
                if child.tag in ("failure", "error"):
                    where = ".".join(p for p in (case.get("classname"), case.get("name")) if p)
                    problems.append((where, child.get("message") or (child.text or "").strip()))
    return JunitCounts(**totals, problems=tuple(problems))
