"""flowops.monitor.probes.dvc with a fake ``dvc`` command: a script that answers what DVC
3.67 answered in real repositories (the JSON below was captured from them), or hangs.
The real thing, in real git + DVC repositories, is tests/integration/test_monitor_dvc.py."""

from __future__ import annotations

import asyncio
import json
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from flowops.monitor.checks import CheckResult
from flowops.monitor.probes.dvc import DataStatus, DvcProbe, DvcTargetSettings

# `dvc data status --json --not-in-remote`, in the states of one repository
CLEAN: dict[str, Any] = {}
MODIFIED = {"uncommitted": {"modified": ["data/", "model.bin"]}}
NOT_PUSHED = {"not_in_remote": ["data/", "model.bin"]}
NOT_IN_GIT = {
    "not_in_remote": ["data/", "model.bin"],
    "committed": {"modified": ["model.bin", "data/"]},
}
NOT_IN_CACHE = {"not_in_cache": ["model.bin", "data/"]}
NOT_PULLED = {"not_in_cache": ["data/", "model.bin"], "uncommitted": {"deleted": ["model.bin"]}}
RENAMED = {"uncommitted": {"renamed": [{"old": "a.csv", "new": "b.csv"}], "unknown": ["c/"]}}
NO_REPO = "ERROR: you are not inside of a DVC repository (checked up to mount point '/')\n"
NO_SUCH_REMOTE = "ERROR: configuration error - config file error: remote 'nope' doesn't exist\n"


def fake_dvc(
    tmp_path: Path,
    status: dict[str, Any] | None = None,
    *,
    error: str = "",
    returncode: int = 0,
    default_remote: str | None = "storage",
) -> Path:
    """A ``dvc`` that logs its arguments to ``calls`` and answers ``data status`` and
    ``remote default`` as DVC does."""
    script = tmp_path / "dvc"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"with open({str(tmp_path / 'calls')!r}, 'a') as log:\n"
        "    log.write(' '.join(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1:3] == ['remote', 'default']:\n"
        f"    remote = {default_remote!r}\n"
        "    print(remote or 'No default remote set')\n"
        "    sys.exit(0 if remote else 1)\n"
        f"sys.stderr.write({error!r})\n"
        f"print({json.dumps(status) if status is not None else ''!r})\n"
        f"sys.exit({returncode})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def calls(tmp_path: Path) -> list[str]:
    return sorted((tmp_path / "calls").read_text().splitlines())


async def probe(tmp_path: Path, dvc: Path, **settings: Any) -> CheckResult:
    (result,) = await DvcProbe(DvcTargetSettings(path=tmp_path, dvc_bin=str(dvc), **settings)).run()
    assert (result.check, result.target) == ("dvc.status", settings.get("name", str(tmp_path)))
    return result


@pytest.mark.parametrize(
    ("status", "values", "detail"),
    [
        (
            MODIFIED,
            (2, 0, 0, 0),
            "2 tracked paths changed in the workspace but not committed to DVC (modified data/, "
            "modified model.bin): `dvc commit` them, or `dvc checkout` to discard",
        ),
        (
            NOT_PUSHED,
            (0, 0, 0, 2),
            "2 tracked paths not in remote 'storage' (data/, model.bin): `dvc push` them",
        ),
        (
            NOT_IN_GIT,
            (0, 2, 0, 2),
            "2 tracked paths committed to DVC but not to git (modified data/, modified "
            "model.bin): `git commit` their .dvc files; 2 tracked paths not in remote 'storage' "
            "(data/, model.bin): `dvc push` them",
        ),
        (
            NOT_IN_CACHE,
            (0, 0, 2, 0),
            "2 tracked paths not in the DVC cache (data/, model.bin): `dvc pull` them",
        ),
        (
            NOT_PULLED,
            (1, 0, 2, 0),
            "1 tracked path changed in the workspace but not committed to DVC (deleted "
            "model.bin): `dvc commit` them, or `dvc checkout` to discard; 2 tracked paths not in "
            "the DVC cache (data/, model.bin): `dvc pull` them",
        ),
    ],
)
@pytest.mark.asyncio
async def test_each_state_is_told_apart_with_its_count(
    tmp_path: Path, status: dict[str, Any], values: tuple[int, ...], detail: str
) -> None:
    result = await probe(tmp_path, fake_dvc(tmp_path, status))

    assert not result.success
    assert result.detail == detail
    keys = ("uncommitted", "committed", "not_in_cache", "not_in_remote")
    assert result.values == dict(zip(keys, map(float, values), strict=True))


@pytest.mark.asyncio
async def test_a_clean_repository_passes(tmp_path: Path) -> None:
    result = await probe(tmp_path, fake_dvc(tmp_path, CLEAN), name="models")

    assert result.success
    assert (
        result.detail == "clean: workspace, cache and remote 'storage' agree with the last commit"
    )
    assert set(result.values.values()) == {0.0}
    assert calls(tmp_path) == ["data status --json --not-in-remote", "remote default"]


@pytest.mark.asyncio
async def test_a_named_remote_is_the_one_checked(tmp_path: Path) -> None:
    result = await probe(tmp_path, fake_dvc(tmp_path, NOT_PUSHED), remote="backup")

    assert "not in remote 'backup'" in result.detail
    assert calls(tmp_path) == ["data status --json --not-in-remote --remote backup"]


@pytest.mark.asyncio
async def test_without_a_remote_check_the_remote_is_not_asked(tmp_path: Path) -> None:
    result = await probe(tmp_path, fake_dvc(tmp_path, CLEAN), check_remote=False)

    assert result.success
    assert result.detail == "clean: workspace and cache agree with the last commit"
    assert "not_in_remote" not in result.values
    assert calls(tmp_path) == ["data status --json"]


@pytest.mark.asyncio
async def test_no_default_remote_fails_and_says_how_to_add_one(tmp_path: Path) -> None:
    # captured: DVC lists every path as not in the remote when there is none
    status = {"not_in_remote": ["x"], "committed": {"added": ["x"]}}
    result = await probe(tmp_path, fake_dvc(tmp_path, status, default_remote=None))

    assert not result.success
    assert result.detail == (
        "1 tracked path committed to DVC but not to git (added x): `git commit` their .dvc "
        "files; the repository has no default DVC remote, so its data lives on this disk "
        "only: add one (`dvc remote add -d NAME URL`), name one in monitor.dvc[].remote, or "
        "set monitor.dvc[].check_remote: false"
    )
    assert result.values == {"uncommitted": 0.0, "committed": 1.0, "not_in_cache": 0.0}


@pytest.mark.parametrize(
    ("error", "returncode", "settings", "detail"),
    [
        (
            NO_REPO,
            253,
            {},
            "{path} is not in a DVC repository; run `dvc init` there, or fix monitor.dvc[].path",
        ),
        (
            NO_SUCH_REMOTE,
            251,
            {"remote": "nope"},
            "configuration error - config file error: remote 'nope' doesn't exist; fix "
            "monitor.dvc[].remote, or add it (`dvc remote add NAME URL`)",
        ),
        (
            "ERROR: failed to connect to s3 (bucket) - Unable to locate credentials\n",
            255,
            {},
            "`dvc data status` failed (exit 255): failed to connect to s3 (bucket) - Unable to "
            "locate credentials",
        ),
        (
            "Traceback...\nKeyError: 'x'\n",
            1,
            {},
            "`dvc data status` failed (exit 1): Traceback... KeyError: 'x'",
        ),
    ],
)
@pytest.mark.asyncio
async def test_dvc_errors_become_the_detail(
    tmp_path: Path, error: str, returncode: int, settings: dict[str, Any], detail: str
) -> None:
    dvc = fake_dvc(tmp_path, None, error=error, returncode=returncode)
    result = await probe(tmp_path, dvc, **settings)

    assert not result.success
    assert result.detail == detail.format(path=tmp_path)
    assert result.values == {}


@pytest.mark.asyncio
async def test_an_answer_that_is_not_dvc_json_fails(tmp_path: Path) -> None:
    result = await probe(tmp_path, fake_dvc(tmp_path, {"uncommitted": ["x"]}))

    assert not result.success
    assert result.detail.startswith(
        "`dvc data status --json` answered something else than its JSON (expected an object "
        "of changes, got ['x'])"
    )


@pytest.mark.asyncio
async def test_no_dvc_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    (result,) = await DvcProbe(DvcTargetSettings(path=tmp_path)).run()

    assert not result.success
    assert result.detail == (
        "DVC is not installed (no `dvc` command); pip install 'flowops[dvc]', or set "
        "monitor.dvc[].dvc_bin"
    )


@pytest.mark.asyncio
async def test_a_missing_directory_fails(tmp_path: Path) -> None:
    dvc = fake_dvc(tmp_path, CLEAN)
    (result,) = await DvcProbe(DvcTargetSettings(path=tmp_path / "gone", dvc_bin=str(dvc))).run()

    assert result.detail == f"{tmp_path / 'gone'} is not a directory; fix monitor.dvc[].path"


def hanging_dvc(tmp_path: Path) -> Path:
    """A ``dvc`` that starts a child, writes both pids, and waits forever."""
    script = tmp_path / "dvc"
    script.write_text(
        "#!/bin/sh\n"
        "sleep 600 &\n"
        f"echo $! > {tmp_path / 'child.pid'}\n"
        f"echo $$ > {tmp_path / 'dvc.pid'}\n"
        "wait\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def gone(pid_file: Path) -> bool:
    """True once the process is gone (or a zombie nobody has reaped yet)."""
    pid = int(pid_file.read_text())
    for _ in range(200):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.01)
    return False


@pytest.mark.asyncio
async def test_a_hanging_dvc_is_killed_with_its_children_at_the_timeout(tmp_path: Path) -> None:
    result = await probe(tmp_path, hanging_dvc(tmp_path), timeout=2, check_remote=False)

    assert not result.success
    assert result.detail == (
        "`dvc data status` took more than 2 s and was stopped; is the remote slow or "
        "unreachable? (raise monitor.dvc[].timeout if it is merely slow)"
    )
    assert gone(tmp_path / "dvc.pid")
    assert gone(tmp_path / "child.pid")


@pytest.mark.asyncio
async def test_a_probe_the_agent_cancels_kills_dvc(tmp_path: Path) -> None:
    dvc = hanging_dvc(tmp_path)
    probe = DvcProbe(DvcTargetSettings(path=tmp_path, dvc_bin=str(dvc), check_remote=False))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(probe.run(), 2)

    assert gone(tmp_path / "dvc.pid")
    assert gone(tmp_path / "child.pid")


def test_renames_and_unknown_paths_are_read() -> None:
    status = DataStatus.from_json(RENAMED)

    assert status.uncommitted == ("renamed a.csv -> b.csv", "unknown c/")
    assert status.values(remote_checked=False) == {
        "uncommitted": 2.0,
        "committed": 0.0,
        "not_in_cache": 0.0,
    }


def test_long_lists_are_cut_in_the_detail() -> None:
    status = DataStatus(not_in_remote=tuple(f"f{i}" for i in range(5)))

    assert status.problems("s3") == [
        "5 tracked paths not in remote 's3' (f0, f1, f2 and 2 more): `dvc push` them"
    ]


def test_settings_defaults_and_limits() -> None:
    settings = DvcTargetSettings(path="/srv/models-repo")

    assert (settings.name, settings.timeout, settings.remote) == (None, 30.0, None)
    assert (settings.check_remote, settings.dvc_bin) == (True, None)
    probe = DvcProbe(settings)
    assert (probe.kind, probe.target, probe.timeout) == ("dvc", "/srv/models-repo", 30.0)
    with pytest.raises(ValidationError):
        DvcTargetSettings(path="/srv", timeout=0)
    with pytest.raises(ValidationError):
        DvcTargetSettings.model_validate({"path": "/srv", "remotes": ["a"]})
