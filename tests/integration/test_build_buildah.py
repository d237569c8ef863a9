"""``flowops build`` with the real buildah (Debian's, installed by ``make install``).

No base image can be pulled here, so the Containerfiles are ``FROM scratch`` plus a
COPY. buildah runs with the defaults of ``flowops build`` (``--storage-driver vfs
--isolation chroot``) and a temporary ``--root``/``--runroot`` from the config file, so
nothing is left in the machine's image store; the directory goes at teardown.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flowops._version import __version__

pytestmark = pytest.mark.integration

OCI = "org.opencontainers.image"
SOURCE = "https://git.example.com/acme/flowops"


@dataclass(frozen=True)
class Project:
    root: Path
    config: Path
    storage: tuple[str, ...]

    def buildah(self, *args: str) -> str:
        done = subprocess.run(
            ["buildah", *self.storage, *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def flowops_build(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "flowops", "build", "--config", str(self.config)]
        return subprocess.run(
            [*command, "--builder", "buildah", *args],
            capture_output=True,
            text=True,
            cwd=self.root,
            timeout=300,
            check=False,
        )


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """A git checkout whose Containerfiles copy one small file onto scratch, a config
    file pointing buildah at a store of its own, removed afterwards."""
    assert shutil.which("buildah"), "buildah is not installed: `make install` installs it"
    root = tmp_path / "project"
    containerfiles = root / "infra" / "containerfiles"
    containerfiles.mkdir(parents=True)
    (root / "hello.txt").write_text("hello from flowops build\n")
    dist_info = root / "site" / "orjson-3.10.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: orjson\nVersion: 3.10.0\n\n")
    site = "/usr/local/lib/python3.11/site-packages"
    for service in ("gateway", "worker", "monitor"):
        (containerfiles / f"{service}.Containerfile").write_text(
            f"FROM scratch\nCOPY hello.txt /srv/{service}.txt\nCOPY site {site}\n"
            f'CMD ["{service}"]\n'
        )
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "images")
    store = tmp_path / "storage"
    config = tmp_path / "flowops.yaml"
    config.write_text(
        "build:\n"
        f"  source: {SOURCE}\n"
        "  buildah:\n"
        f"    root: {store / 'root'}\n"
        f"    runroot: {store / 'run'}\n"
    )
    storage = ("--root", str(store / "root"), "--runroot", str(store / "run"))
    project = Project(root, config, (*storage, "--storage-driver", "vfs"))
    try:
        yield project
    finally:
        subprocess.run(["buildah", *project.storage, "rm", "--all"], capture_output=True)
        subprocess.run(
            ["buildah", *project.storage, "rmi", "--all", "--force"], capture_output=True
        )
        shutil.rmtree(store, ignore_errors=True)


def test_builds_labelled_images_and_reports_their_sizes(project: Project) -> None:
    done = project.flowops_build("gateway", "monitor", "--tag", "it", "--tag", "also", "-o", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    head = _git(project.root, "rev-parse", "HEAD")
    assert report["ok"] is True
    assert report["builder"] == "buildah"
    assert [result["state"] for result in report["results"]] == ["built", "built"]
    assert "[gateway] STEP 2/" in done.stderr  # the builder's output, streamed and prefixed

    for result in report["results"]:
        ref = f"localhost/flowops-{result['service']}:it"
        image = json.loads(project.buildah("inspect", "--type", "image", ref))
        expected = {
            f"{OCI}.revision": head,
            f"{OCI}.source": SOURCE,
            f"{OCI}.version": __version__,
            f"{OCI}.created": report["labels"][f"{OCI}.created"],
            f"{OCI}.title": f"flowops-{result['service']}",
        }
        assert image["OCIv1"]["config"]["Labels"].items() >= expected.items()
        assert image["ImageAnnotations"].items() >= expected.items()
        assert image["OCIv1"]["config"]["Cmd"] == [result["service"]]
        sbom = Path(result["sbom"])  # beside the others, named by the image's label
        assert sbom.parent == project.root / "build" / "sbom"
        assert image["OCIv1"]["config"]["Labels"]["io.flowops.sbom"] == sbom.name
        components = json.loads(sbom.read_text())["components"]
        assert [c["purl"] for c in components] == ["pkg:pypi/orjson@3.10.0"]
        listed = json.loads(project.buildah("images", "--json", ref))
        assert result["size"] == listed[0]["size"]
        assert result["size_bytes"] > len("hello from flowops build\n")
        names = {name for entry in listed for name in entry["names"]}
        assert f"localhost/flowops-{result['service']}:also" in names


def test_the_default_tag_names_the_commit_and_a_dirty_tree(project: Project) -> None:
    (project.root / "hello.txt").write_text("changed\n")
    done = project.flowops_build("worker", "-o", "json")
    assert done.returncode == 0, done.stderr
    short = _git(project.root, "rev-parse", "--short=7", "HEAD")
    tag = f"{__version__}-{short}-dirty"
    assert json.loads(done.stdout)["tags"] == [tag]
    assert project.buildah("images", "--quiet", f"localhost/flowops-worker:{tag}").strip()


def test_a_bad_instruction_fails_with_the_builder_s_error(project: Project) -> None:
    containerfile = project.root / "infra/containerfiles/monitor.Containerfile"
    containerfile.write_text("FROM scratch\nCOPY hello.txt /hello.txt\nBOGUS nothing\n")
    done = project.flowops_build("monitor", "gateway", "-o", "json")
    assert done.returncode == 1
    monitor, gateway = json.loads(done.stdout)["results"]
    assert (monitor["state"], monitor["failed_at"], gateway["state"]) == (
        "failed",
        "build",
        "skipped",
    )
    assert monitor["exit_code"] != 0
    assert any('building at STEP "BOGUS' in line for line in monitor["errors"])
    assert f"flowops build: monitor: buildah build exited {monitor['exit_code']}:" in done.stderr
    assert 'Unknown instruction: "BOGUS"' in done.stderr
    assert project.buildah("images", "--quiet").strip() == ""  # nothing was tagged
