"""Installed size of each role: a fresh virtual environment per extra, installed from its
lock file (lock/<role>.txt, as the images and CI install), and the size of its
site-packages on disk (`du`, blocks as allocated). `make sizes` runs it.

Each image is estimated as a base image plus its role's packages, because no base image
can be pulled here: the stand-in base of docs/build.md's measured build (298 MB, Debian
12's python3 and pip) and python:3.11-slim (about 130 MB). The anchor is every runtime
package in one environment (`local` and `deploy`: what each of the three images and
`pip install flowops` installed before the extras), which on the stand-in base came to
the 714 MB image docs/build.md records.

    python bench/install_size.py [ROLE ...]      # default: every role and the anchor
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("core", "drift", "gateway", "worker", "monitor", "deploy", "local")
ANCHOR = "local+deploy"  # every runtime package: the single dependency list of before
IMAGES = ("gateway", "worker", "monitor")
STANDIN_BASE_MB = 298  # docs/build.md: the stand-in base image of the 714 MB build
SLIM_BASE_MB = 130  # python:3.11-slim, about
BEFORE_IMAGE_MB = 714  # docs/build.md: the gateway image on the stand-in base, one list
TOP = 4


def _uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        sys.exit("install_size: needs uv (the dev extra brings it)")
    return found


def install(role: str, target: Path) -> Path:
    """A fresh venv at ``target`` holding ``role``'s locked packages and flowops (not
    editable, so that its own files count); its site-packages."""
    uv = _uv()
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(target)], check=True)
    python = str(target / "bin" / "python")
    locks = [ROOT / "lock" / f"{part}.txt" for part in role.split("+")]
    for lock in locks:
        pip = [uv, "pip", "install", "--quiet", "--python", python, "--compile-bytecode"]
        pip.append("--require-hashes")
        subprocess.run([*pip, "-r", str(lock)], check=True)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            python,
            "--compile-bytecode",
            "--no-deps",
            str(ROOT),
        ],
        check=True,
    )
    return next((target / "lib").glob("python3.*/site-packages"))


def strip_tests(site: Path) -> None:
    """Remove numpy's and scipy's own test suites, as the worker's
    Containerfile does (``find ... -name tests -exec rm -rf``)."""
    for package in ("numpy", "scipy"):
        found = [p for p in (site / package).rglob("tests") if p.is_dir()]
        for folder in sorted(found, key=lambda p: -len(p.parts)):
            shutil.rmtree(folder, ignore_errors=True)


def du_mb(path: Path) -> float:
    """Disk usage of ``path`` in MB (10^6 bytes), as ``du`` counts it."""
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True)
    return int(out.stdout.split()[0]) / 1e6


def largest(site: Path) -> list[tuple[str, float]]:
    """The ``TOP`` largest top-level folders of ``site`` (a package and its libs)."""
    sizes = [(entry.name, du_mb(entry)) for entry in site.iterdir() if entry.is_dir()]
    return sorted(sizes, key=lambda item: -item[1])[:TOP]


def measure(role: str) -> tuple[float, float, float, list[tuple[str, float]]]:
    """Site-packages as installed, as an image holds it (test suites stripped), the
    install's seconds, and its largest folders."""
    with tempfile.TemporaryDirectory(prefix=f"flowops-size-{role}-") as folder:
        started = time.perf_counter()
        site = install(role, Path(folder) / "venv")
        took = time.perf_counter() - started
        installed, top = du_mb(site), largest(site)
        strip_tests(site)
        return installed, du_mb(site), took, top


def main(roles: list[str]) -> None:
    print("| install | site-packages | as in an image | largest (MB) | install (uv, warm cache) |")
    print("| --- | --- | --- | --- | --- |")
    sizes: dict[str, float] = {}
    for role in roles:
        installed, stripped, took, top = measure(role)
        sizes[role] = installed if role == ANCHOR else stripped
        biggest = ", ".join(f"{name} {mb:.0f}" for name, mb in top)
        label = "everything (before)" if role == ANCHOR else f"flowops[{role}]"
        print(f"| {label} | {installed:.0f} MB | {stripped:.0f} MB | {biggest} | {took:.1f} s |")
    if not all(image in sizes for image in IMAGES):
        return
    print()
    print("| image (estimate) | on the stand-in base | vs 714 MB | on python:3.11-slim |")
    print("| --- | --- | --- | --- |")
    for image in IMAGES:
        standin = STANDIN_BASE_MB + sizes[image]
        smaller = 1 - standin / BEFORE_IMAGE_MB
        slim = SLIM_BASE_MB + sizes[image]
        print(f"| flowops-{image} | {standin:.0f} MB | {smaller:.0%} smaller | {slim:.0f} MB |")
    anchor = sizes.get(ANCHOR)
    if anchor is not None:
        print(
            f"\nanchor: every package in one install, {STANDIN_BASE_MB + anchor:.0f} MB on the "
            f"stand-in base (the measured build: {BEFORE_IMAGE_MB} MB), "
            f"{SLIM_BASE_MB + anchor:.0f} MB on python:3.11-slim"
        )


if __name__ == "__main__":
    main(sys.argv[1:] or [*ROLES, ANCHOR])
