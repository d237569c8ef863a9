"""The DVC probe in real repositories: git + ``dvc init`` in a temporary directory, a local
directory as the remote. One repository is built for the module (data added, committed and
pushed: clean); each test works on a copy of it (remote included) and puts it in one state:
dirty, committed to DVC but not to git, not in the remote, not in the cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowops.monitor.checks import CheckResult
from flowops.monitor.probes.dvc import DvcProbe, DvcTargetSettings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

ENV = os.environ | {"DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}


def run(repo: Path, *command: str) -> None:
    if command[0] == "dvc":
        command = (sys.executable, "-m", "dvc", *command[1:])
    subprocess.run(command, cwd=repo, env=ENV, check=True, capture_output=True)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/repo`` (git + DVC, ``data/`` and ``model.bin`` tracked, pushed) and its
    remote ``root/remote``, named by a relative path so that copies keep their own."""
    root = tmp_path_factory.mktemp("dvc")
    repo = root / "repo"
    repo.mkdir()
    run(repo, "git", "init", "-q")
    for key, value in [("user.email", "t@example.com"), ("user.name", "t")]:
        run(repo, "git", "config", key, value)
    run(repo, "git", "config", "commit.gpgsign", "false")
    run(repo, "dvc", "init", "-q")
    run(repo, "dvc", "remote", "add", "-d", "storage", "../remote")
    (repo / "data").mkdir()
    (repo / "data" / "a.csv").write_text("x\n1\n")
    (repo / "data" / "b.csv").write_text("x\n2\n")
    (repo / "model.bin").write_bytes(b"weights v1")
    run(repo, "dvc", "add", "-q", "data", "model.bin")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "data v1")
    run(repo, "dvc", "push", "-q")
    return root


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Path:
    shutil.copytree(template, tmp_path, dirs_exist_ok=True, symlinks=True)
    return tmp_path / "repo"


async def probe(repo: Path, **settings: object) -> CheckResult:
    (result,) = await DvcProbe(DvcTargetSettings(path=repo, name="models", **settings)).run()
    assert (result.check, result.target) == ("dvc.status", "models")
    return result


def counts(result: CheckResult) -> tuple[float, ...]:
    keys = ("uncommitted", "committed", "not_in_cache", "not_in_remote")
    return tuple(result.values[key] for key in keys)


async def test_clean(repo: Path) -> None:
    result = await probe(repo)

    assert result.success
    assert (
        result.detail == "clean: workspace, cache and remote 'storage' agree with the last commit"
    )
    assert counts(result) == (0, 0, 0, 0)


async def test_modified_data_is_uncommitted(repo: Path) -> None:
    (repo / "model.bin").write_bytes(b"weights v2")
    (repo / "data" / "c.csv").write_text("x\n3\n")
    result = await probe(repo)

    assert not result.success
    assert result.detail == (
        "2 tracked paths changed in the workspace but not committed to DVC (modified data/, "
        "modified model.bin): `dvc commit` them, or `dvc checkout` to discard"
    )
    assert counts(result) == (2, 0, 0, 0)


async def test_data_committed_to_dvc_only_is_not_in_git_nor_in_the_remote(repo: Path) -> None:
    (repo / "model.bin").write_bytes(b"weights v2")
    run(repo, "dvc", "commit", "-q", "-f", "model.bin.dvc")
    result = await probe(repo)

    assert not result.success
    assert result.detail == (
        "1 tracked path committed to DVC but not to git (modified model.bin): `git commit` "
        "their .dvc files; 1 tracked path not in remote 'storage' (model.bin): `dvc push` them"
    )
    assert counts(result) == (0, 1, 0, 1)


async def test_data_committed_but_not_pushed_is_not_in_the_remote(repo: Path) -> None:
    (repo / "features.parquet").write_bytes(b"PAR1 new data")
    run(repo, "dvc", "add", "-q", "features.parquet")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "features")
    result = await probe(repo)

    assert not result.success
    assert result.detail == (
        "1 tracked path not in remote 'storage' (features.parquet): `dvc push` them"
    )
    assert counts(result) == (0, 0, 0, 1)


async def test_data_missing_from_the_cache(repo: Path) -> None:
    shutil.rmtree(repo / ".dvc" / "cache")
    result = await probe(repo)

    assert not result.success
    assert result.detail.startswith("2 tracked paths not in the DVC cache (")
    assert result.detail.endswith("): `dvc pull` them")
    assert counts(result) == (0, 0, 2, 0)


async def test_a_remote_emptied_has_nothing(repo: Path) -> None:
    shutil.rmtree(repo.parent / "remote")
    result = await probe(repo)

    assert not result.success
    assert counts(result) == (0, 0, 0, 2)
    assert (await probe(repo, check_remote=False)).success


async def test_a_directory_outside_any_repository(tmp_path: Path) -> None:
    result = await probe(tmp_path)

    assert not result.success
    assert result.detail == (
        f"{tmp_path} is not in a DVC repository; run `dvc init` there, or fix monitor.dvc[].path"
    )
