"""``make audit``: known vulnerabilities in the packages FlowOps installs (pip-audit).

Why pip-audit: it is the PyPA's scanner, reads what a virtual environment (or a
requirements/lock file) holds, and asks the Python Packaging Advisory Database through
PyPI's JSON API or OSV, the sources Python projects are scanned against; safety needs an
account for its full database, and osv-scanner is a Go binary no package registry here
ships.

The advisory service may be out of reach (a mirror of PyPI's package index without its
JSON API, no route to OSV): pip-audit then checks nothing and says so for each package.
This script tells that case apart from a clean result and from vulnerabilities:

- exit 0, "no known vulnerabilities in N packages";
- exit 0, "not checked: the advisory service could not be reached ..." (CI goes on, the
  log says plainly that nothing was scanned);
- exit 1, one line a vulnerability (package, version, advisory id, fixed versions).

Run: ``python .ci/audit.py [pip-audit arguments]`` (``make audit`` passes ``-l``: the
packages installed in ``.venv``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

UNREACHABLE = ("not found on PyPI", "Connection", "Max retries", "Name or service not known")


def verdict(report: dict[str, Any]) -> tuple[int, list[str]]:
    """The exit code and the lines to print for pip-audit's JSON ``report``.

    >>> verdict({"dependencies": [{"name": "a", "version": "1", "vulns": []}]})
    (0, ['audit: no known vulnerabilities in 1 packages'])
    >>> skipped = {"name": "a", "skip_reason": "Dependency not found on PyPI and could not"}
    >>> verdict({"dependencies": [skipped]})[1][0][:60]
    'audit: not checked: the advisory service could not be reache'
    """
    dependencies = report.get("dependencies", [])
    checked = [d for d in dependencies if "skip_reason" not in d]
    found = [
        f"audit: {d['name']} {d['version']}: {v['id']} (fixed in {_fixes(v)})"
        for d in checked
        for v in d.get("vulns", [])
    ]
    if found:
        return 1, found
    unreachable = [
        d for d in dependencies if any(u in d.get("skip_reason", "") for u in UNREACHABLE)
    ]
    if dependencies and not checked and unreachable:
        return 0, [
            "audit: not checked: the advisory service could not be reached "
            f"({len(unreachable)} of {len(dependencies)} packages skipped, e.g. "
            f"{unreachable[0]['skip_reason']}); nothing was scanned"
        ]
    lines = [f"audit: no known vulnerabilities in {len(checked)} packages"]
    if len(checked) < len(dependencies):
        lines.append(
            f"audit: {len(dependencies) - len(checked)} packages not checked (not on PyPI)"
        )
    return 0, lines


def _fixes(vulnerability: dict[str, Any]) -> str:
    return ", ".join(vulnerability.get("fix_versions", [])) or "no release yet"


def main(args: Sequence[str]) -> int:
    command = [sys.executable, "-m", "pip_audit", "-f", "json", "--progress-spinner", "off", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if any(u in done.stderr for u in UNREACHABLE):
            print(f"audit: not checked: the advisory service could not be reached ({last})")
            return 0
        print(f"audit: pip-audit failed (exit {done.returncode}): {last}", file=sys.stderr)
        return 2
    code, lines = verdict(report)
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
