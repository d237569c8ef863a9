"""`make audit` (.ci/audit.py): a clean scan, vulnerabilities, and an advisory service out
of reach are three different answers, and only vulnerabilities fail."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "audit.py"


def audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_audit", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_clean_scan_passes_and_counts_what_it_checked() -> None:
    report = {
        "dependencies": [
            {"name": "a", "version": "1.0", "vulns": []},
            {"name": "b", "version": "2.0", "vulns": []},
            {"name": "flowops", "skip_reason": "Dependency not found on PyPI: flowops (0.1)"},
        ]
    }
    code, lines = audit().verdict(report)
    assert code == 0
    assert lines == [
        "audit: no known vulnerabilities in 2 packages",
        "audit: 1 packages not checked (not on PyPI)",
    ]


def test_a_vulnerability_fails_naming_package_advisory_and_fix() -> None:
    vuln = {"id": "PYSEC-2099-1", "fix_versions": ["3.1.1"], "aliases": [], "description": ""}
    report = {"dependencies": [{"name": "jinja2", "version": "3.1.0", "vulns": [vuln]}]}
    assert audit().verdict(report) == (1, ["audit: jinja2 3.1.0: PYSEC-2099-1 (fixed in 3.1.1)"])


def test_an_unreachable_advisory_service_passes_and_says_nothing_was_scanned() -> None:
    skipped = [
        {"name": n, "skip_reason": f"Dependency not found on PyPI and could not be audited: {n}"}
        for n in ("a", "b")
    ]
    code, (line,) = audit().verdict({"dependencies": skipped})
    assert code == 0
    assert line.startswith("audit: not checked: the advisory service could not be reached (2 of 2")
    assert line.endswith("nothing was scanned")


def test_the_script_runs_pip_audit_on_a_requirements_file(tmp_path: Path) -> None:
    """As `make audit` runs it (a requirements file instead of the whole .venv: quicker);
    whichever the network allows, a clean scan or 'not checked', it passes."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("click==8.1.7\n")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "-r", str(requirements), "--no-deps", "--disable-pip"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    assert done.stdout.startswith("audit: "), done.stdout + done.stderr
