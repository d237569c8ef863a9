"""``flowops test``: a model project's CI gate (docs/test.md).

Three suites, each configured under ``test:`` in the settings file, each answering one
:class:`~flowops.ops.junit.CaseResult` per case:

``unit``
    the project's pytest suites, each run as ``python -m pytest PATHS ARGS`` in its
    ``cwd``, with ``--junitxml`` to a temporary file whose counts make one case per suite;
``contract``
    sample payloads sent to a model server, one case per sample
    (:mod:`flowops.ops.contract`);
``drift``
    a data file compared with the model's reference, as ``flowops drift compare`` does
    (:func:`flowops.data.compare_files`), one case per feature.

Everything the suites need (the sections, the sample files, headers from the
environment, the drift files, the suites' directories) is checked before anything runs:
a problem is one :class:`~flowops.errors.ConfigError`, and nothing ran.

>>> parse_suites("drift,unit")
['unit', 'drift']
>>> parse_suites("lint")
Traceback (most recent call last):
...
ValueError: unknown suite 'lint'; the suites are: unit, contract, drift
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowops.config import DriftSettings, section
from flowops.errors import ConfigError, FlowOpsError
from flowops.ops import contract as _contract
from flowops.ops.junit import CaseResult, JunitCounts, read_junit

__all__ = [
    "SUITES",
    "DriftGate",
    "GateReport",
    "GateSettings",
    "PytestSuite",
    "gate_settings",
    "judge_pytest",
    "parse_suites",
    "run_drift",
    "run_gate",
    "run_pytest",
]

SUITES: Final = ("unit", "contract", "drift")
_TAIL_LINES: Final = 40
Say = Callable[[str], None]


class PytestSuite(BaseModel):
    """One pytest suite of the ``unit`` suite: an entry of ``test.unit``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="the case's name in the table and JUnit")
    paths: list[str] = Field(
        default_factory=list, description="what pytest collects; default: its testpaths"
    )
    args: list[str] = Field(default_factory=list, description="more pytest arguments")
    cwd: Path | None = Field(None, description="where pytest runs; default: here")
    python: Path | None = Field(
        None, description="the interpreter with pytest; default: the one running flowops"
    )


class DriftGate(BaseModel):
    """The ``test.drift`` section: data compared with the model's reference."""

    model_config = ConfigDict(extra="forbid")

    reference: Path = Field(description="a profile (flowops drift baseline) or reference data")
    data: Path = Field(description="the data to check: .csv, .jsonl, .parquet")
    features: list[str] | None = Field(None, min_length=1, description="default: all")
    alpha: float | None = Field(None, gt=0, lt=1, description="default: drift.alpha")
    correction: Literal["bh", "bonferroni", "none"] | None = Field(
        None, description="default: drift.correction"
    )
    bins: int | None = Field(
        None, ge=2, le=1000, description="when reference is data; default: drift.bins"
    )


class GateSettings(BaseModel):
    """The ``test:`` section; a suite left out is not configured."""

    model_config = ConfigDict(extra="forbid")

    unit: list[PytestSuite] | None = Field(None, min_length=1, description="pytest suites")
    contract: _contract.ContractSettings | None = Field(None, description="a model server")
    drift: DriftGate | None = Field(None, description="data against the reference")

    @field_validator("unit")
    @classmethod
    def _unique_names(cls, suites: list[PytestSuite] | None) -> list[PytestSuite] | None:
        names = [suite.name for suite in suites or []]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"two suites are named {twice[0]!r}: names must differ")
        return suites

    def configured(self) -> list[str]:
        """The suites this section configures, in the order they run."""
        return [name for name in SUITES if getattr(self, name) is not None]


@dataclass
class GateReport:
    """Every case that ran, in order."""

    cases: list[CaseResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no case failed or errored (exit 0)."""
        return all(case.ok for case in self.cases)

    def counts(self) -> dict[str, int]:
        """How many cases had each outcome."""
        return {
            o: sum(c.outcome == o for c in self.cases) for o in ("pass", "fail", "error", "skip")
        }

    def as_json(self) -> dict[str, Any]:
        """The report as ``-o json`` prints it."""
        return {
            "ok": self.ok,
            "counts": self.counts(),
            "cases": [case.as_json() for case in self.cases],
        }


def parse_suites(value: str) -> list[str]:
    """Suite names from ``--suite a,b`` in the order they run; ValueError for an unknown one."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    for name in names:
        if name not in SUITES:
            raise ValueError(f"unknown suite {name!r}; the suites are: {', '.join(SUITES)}")
    if not names:
        raise ValueError(f"name at least one suite: {', '.join(SUITES)}")
    return [name for name in SUITES if name in names]


def gate_settings(values: Mapping[str, Any], suites: Sequence[str] | None) -> GateSettings:
    """The ``test`` section checked, with every selected suite configured (default: every
    configured suite, of which there must be one)."""
    gate = section(GateSettings, values, "test")
    configured = gate.configured()
    if not configured:
        raise ConfigError(
            "test", "no suite is configured: add test.unit, test.contract or test.drift"
        )
    for name in suites or ():
        if name not in configured:
            have = ", ".join(configured)
            raise ConfigError(f"test.{name}", f"not configured; configured: {have} (docs/test.md)")
    return gate


def run_gate(
    gate: GateSettings,
    suites: Sequence[str] | None = None,
    *,
    drift_defaults: DriftSettings | None = None,
    say: Say = lambda line: None,
    echo: Say | None = None,
) -> GateReport:
    """Check everything ``suites`` (default: the configured ones) need, then run them.

    ``say`` gets a line as each case ends; ``echo`` (when given) every line pytest prints.
    """
    selected = list(suites or gate.configured())
    report = GateReport()

    def done(case: CaseResult) -> None:
        report.cases.append(case)
        say(f"{case.suite}/{case.case}: {case.outcome} ({case.seconds:.2f} s) {case.detail}")

    contract = _prepare_contract(gate) if "contract" in selected else None
    _check_paths(gate, selected)
    if "unit" in selected:
        for suite in gate.unit or ():
            done(run_pytest(suite, echo=echo))
    if contract is not None:
        asyncio.run(_contract.run_contract(*contract, done=done))
    if "drift" in selected:
        assert gate.drift is not None
        for case in run_drift(gate.drift, drift_defaults or DriftSettings()):
            done(case)
    return report


def run_pytest(suite: PytestSuite, *, echo: Say | None = None) -> CaseResult:
    """Run one pytest suite in a child process: one case, from its JUnit counts."""
    python = str(suite.python or sys.executable)
    started = time.perf_counter()
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    with tempfile.TemporaryDirectory(prefix="flowops-test-") as folder:
        junit = Path(folder, "junit.xml")
        command = [python, "-m", "pytest", *suite.paths, *suite.args, f"--junitxml={junit}"]
        env = os.environ | {"PYTHONUNBUFFERED": "1"}
        try:
            returncode = _stream(command, suite.cwd, env, tail, echo)
        except OSError as exc:
            seconds = time.perf_counter() - started
            return CaseResult("unit", suite.name, "error", seconds, f"cannot run {python}: {exc}")
        counts = read_junit(junit) if junit.is_file() else None
    seconds = time.perf_counter() - started
    return judge_pytest(suite.name, returncode, counts, list(tail), seconds)


def judge_pytest(
    name: str, returncode: int, counts: JunitCounts | None, tail: Sequence[str], seconds: float
) -> CaseResult:
    """One pytest run as a case: its exit code and JUnit counts decide the outcome.

    >>> judge_pytest("fast", 1, JunitCounts(3, 1, 0, 0, (("t.test_b", "assert 1 == 2"),)), [], 1.0)
    CaseResult(suite='unit', case='fast', outcome='fail', seconds=1.0, \
detail='2 passed, 1 failed: t.test_b: assert 1 == 2', output='')
    >>> judge_pytest("none", 5, JunitCounts(0, 0, 0, 0), [], 0.5).detail
    'pytest collected no tests (exit 5)'
    """
    output = "\n".join(tail)
    crashed = returncode not in (0, 1, 5)
    if counts is None or (crashed and not counts.problems):
        last = next((line for line in reversed(tail) if line.strip(" =")), "no output")
        detail = f"pytest exited {returncode}: {last.strip(' =')}"
        if counts is not None and counts.tests:
            detail = f"{counts.summary()}; {detail}"
        return CaseResult("unit", name, "error", seconds, detail, output)
    if returncode == 5 or counts.tests == 0:
        detail = f"pytest collected no tests (exit {returncode})"
        return CaseResult("unit", name, "error", seconds, detail, output)
    if counts.problems or returncode != 0:
        named = "; ".join(f"{where}: {_one_line(said)}" for where, said in counts.problems[:3])
        more = f" (and {len(counts.problems) - 3} more)" if len(counts.problems) > 3 else ""
        exited = f"; pytest exited {returncode}" if crashed else ""
        detail = f"{counts.summary()}: {named}{more}{exited}" if named else counts.summary()
        outcome: Literal["fail", "error"] = "fail" if counts.failures else "error"
        return CaseResult("unit", name, outcome, seconds, detail, output)
    outcome_ok: Literal["pass", "skip"] = "skip" if counts.passed == 0 else "pass"
    return CaseResult("unit", name, outcome_ok, seconds, counts.summary())


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else f"{flat[:limit]}..."


def run_drift(gate: DriftGate, defaults: DriftSettings) -> list[CaseResult]:
    """The data compared with the reference, as ``flowops drift compare`` does: one case
    per feature; a file that cannot be used is one ``error`` case."""
    from flowops.data import compare_files

    started = time.perf_counter()
    try:
        report = compare_files(
            gate.reference,
            gate.data,
            features=gate.features,
            bins=gate.bins or defaults.bins,
            alpha=gate.alpha or defaults.alpha,
            correction=gate.correction or defaults.correction,
        )
    except FlowOpsError as exc:
        return [
            CaseResult("drift", gate.data.name, "error", time.perf_counter() - started, str(exc))
        ]
    each = (time.perf_counter() - started) / max(len(report.features), 1)
    cases = []
    for feature in report.features:
        test = f"KS p {feature.ks_pvalue:.3g}" if feature.kind == "numeric" else ""
        test = test or f"chi2 p {feature.chi2_pvalue:.3g}"
        detail = (
            f"{'drift' if feature.drift else 'no drift'}: PSI {feature.psi:.3f}, {test}, "
            f"adjusted p {feature.adjusted_pvalue:.3g} (alpha {report.alpha:g})"
        )
        outcome: Literal["pass", "fail"] = "fail" if feature.drift else "pass"
        cases.append(CaseResult("drift", feature.feature, outcome, each, detail))
    return cases


def _stream(
    command: list[str], cwd: Path | None, env: Mapping[str, str], tail: deque[str], echo: Say | None
) -> int:
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            if echo is not None:
                echo(line.rstrip("\n"))
        return proc.wait()


def _prepare_contract(
    gate: GateSettings,
) -> tuple[_contract.ContractSettings, list[_contract.PreparedSample], dict[str, str]]:
    assert gate.contract is not None
    samples = _contract.prepare_samples(gate.contract)
    return gate.contract, samples, _contract.resolve_headers(gate.contract)


def _check_paths(gate: GateSettings, selected: Sequence[str]) -> None:
    if "unit" in selected:
        for index, suite in enumerate(gate.unit or ()):
            if suite.cwd is not None and not suite.cwd.is_dir():
                raise ConfigError(f"test.unit.{index}.cwd", f"no such directory: {suite.cwd}")
            if suite.python is not None and not os.access(suite.python, os.X_OK):
                raise ConfigError(f"test.unit.{index}.python", f"not executable: {suite.python}")
    if "drift" in selected:
        assert gate.drift is not None
        for key in ("reference", "data"):
            path: Path = getattr(gate.drift, key)
            if not path.is_file():
                raise ConfigError(f"test.drift.{key}", f"no such file: {path}")
