"""The DVC probe: does a repository's data agree with its last commit, its cache and its
remote?

It runs the ``dvc`` command (the ``dvc`` extra: ``pip install 'flowops[dvc]'``) as a
subprocess in the repository, ``dvc data status --json --not-in-remote``, and answers one
check, ``dvc.status``. It passes when the repository is clean; otherwise its detail names
each state found, with what to run about it:

=================  ===============================================  ====================
``values`` key     tracked paths (a directory counts once) that...  what to do
=================  ===============================================  ====================
``uncommitted``    changed in the workspace, not committed to DVC   ``dvc commit`` or
                                                                    ``dvc checkout``
``committed``      committed to DVC, their ``.dvc`` files not to    ``git commit``
                   git
``not_in_cache``   have no data in the DVC cache                    ``dvc pull``
``not_in_remote``  have data missing from the remote                ``dvc push``
=================  ===============================================  ====================

The keys are those of ``dvc data status --json``. The remote is ``remote`` or else the
repository's default one (``dvc remote default``, asked at the same time); a repository
without one fails the check unless ``check_remote`` is false, since its data then lives
on one disk only. Every ``dvc`` process runs in a process group of its own, killed (by
its pid) when ``timeout`` passes or the agent cancels the probe.

>>> DvcTargetSettings(path="/srv/models-repo").timeout
30.0
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field

from flowops.monitor.checks import CheckResult, Stopwatch

__all__ = ["INSTALL_HINT", "DataStatus", "DvcProbe", "DvcTargetSettings"]


INSTALL_HINT: Final = "pip install 'flowops[dvc]'"
_SHOWN_PATHS: Final = 3
_ENVIRONMENT: Final = {
    "DVC_NO_ANALYTICS": "1",  # no usage reports from a monitor, every interval
    "GIT_TERMINAL_PROMPT": "0",  # never wait for a password nobody will type
}


class DvcTargetSettings(BaseModel):
    """One DVC repository the monitor probes (an item of ``monitor.dvc``)."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(description="the repository's directory (or one inside it)")
    name: str | None = Field(None, min_length=1, description="what people call it; default: path")
    timeout: float = Field(
        30.0, gt=0, le=3600, description="seconds `dvc` may take; checking a cloud remote lists it"
    )
    remote: str | None = Field(
        None, min_length=1, description="the DVC remote to check; default: the repository's default"
    )
    check_remote: bool = Field(True, description="check that the remote holds every tracked path")
    dvc_bin: str | None = Field(
        None,
        min_length=1,
        description="the dvc command; default: `dvc` on PATH, else beside FlowOps's Python",
    )


@dataclass(frozen=True)
class DataStatus:
    """What ``dvc data status --json`` answered, as paths per state.

    Changes read ``modified path``; a rename ``renamed old -> new``. Each state's paths are
    sorted (DVC's order varies from run to run), so that a detail changes only with the data.

    >>> status = DataStatus.from_json({"uncommitted": {"modified": ["data/"]}})
    >>> status.uncommitted, status.clean
    (('modified data/',), False)
    """

    uncommitted: tuple[str, ...] = ()
    committed: tuple[str, ...] = ()
    not_in_cache: tuple[str, ...] = ()
    not_in_remote: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, found: Mapping[str, Any]) -> DataStatus:
        """Read the JSON object; ValueError when it is not the shape DVC writes."""
        return cls(
            uncommitted=_changes(found.get("uncommitted", {})),
            committed=_changes(found.get("committed", {})),
            not_in_cache=_paths(found.get("not_in_cache", [])),
            not_in_remote=_paths(found.get("not_in_remote", [])),
        )

    @property
    def clean(self) -> bool:
        return not (self.uncommitted or self.committed or self.not_in_cache or self.not_in_remote)

    def values(self, *, remote_checked: bool) -> dict[str, float]:
        counts = {
            "uncommitted": float(len(self.uncommitted)),
            "committed": float(len(self.committed)),
            "not_in_cache": float(len(self.not_in_cache)),
        }
        if remote_checked:
            counts["not_in_remote"] = float(len(self.not_in_remote))
        return counts

    def problems(self, remote: str | None) -> list[str]:
        """One sentence per state found, each saying what to run."""
        found = []
        if self.uncommitted:
            found.append(
                f"{_count(self.uncommitted)} changed in the workspace but not committed to DVC "
                f"({_some(self.uncommitted)}): `dvc commit` them, or `dvc checkout` to discard"
            )
        if self.committed:
            found.append(
                f"{_count(self.committed)} committed to DVC but not to git "
                f"({_some(self.committed)}): `git commit` their .dvc files"
            )
        if self.not_in_cache:
            found.append(
                f"{_count(self.not_in_cache)} not in the DVC cache ({_some(self.not_in_cache)}): "
                "`dvc pull` them"
            )
        if self.not_in_remote:
            found.append(
                f"{_count(self.not_in_remote)} not in remote {remote!r} "
                f"({_some(self.not_in_remote)}): `dvc push` them"
            )
        return found


@dataclass(frozen=True)
class _Ran:
    returncode: int
    stdout: bytes
    stderr: bytes

    def error(self) -> str:
        """DVC's own error lines, without their ``ERROR:`` prefix."""
        lines = self.stderr.decode(errors="replace").splitlines()
        errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR")]
        text = "; ".join(errors) or " ".join(lines[-3:]).strip() or "no message"
        return text[:500]


class _FailedError(Exception):
    """The check failed before DVC could say anything of the data; the message is its detail."""


class DvcProbe:
    """Probes one DVC repository; see the module's docstring."""

    def __init__(self, settings: DvcTargetSettings) -> None:
        self.settings = settings

    @property
    def kind(self) -> str:
        return "dvc"

    @property
    def target(self) -> str:
        return self.settings.name or str(self.settings.path)

    @property
    def timeout(self) -> float:
        return self.settings.timeout

    async def run(self) -> list[CheckResult]:
        watch = Stopwatch()
        try:
            success, detail, values = await self._status()
        except _FailedError as exc:
            success, detail, values = False, str(exc), {}
        return [CheckResult("dvc.status", self.target, success, watch.elapsed(), detail, values)]

    async def _status(self) -> tuple[bool, str, dict[str, float]]:
        dvc = self._dvc_command()
        if not self.settings.path.is_dir():
            raise _FailedError(f"{self.settings.path} is not a directory; fix monitor.dvc[].path")
        try:
            async with asyncio.timeout(self.settings.timeout):
                status, remote = await self._ask(dvc)
        except TimeoutError:
            raise _FailedError(
                f"`dvc data status` took more than {self.settings.timeout:g} s and was stopped; "
                "is the remote slow or unreachable? (raise monitor.dvc[].timeout if it is merely "
                "slow)"
            ) from None
        return self._verdict(status, remote)

    def _verdict(
        self, status: DataStatus, remote: str | None
    ) -> tuple[bool, str, dict[str, float]]:
        checked = self.settings.check_remote and remote is not None
        values = status.values(remote_checked=checked)
        problems = status.problems(remote)
        if self.settings.check_remote and remote is None:
            problems.append(
                "the repository has no default DVC remote, so its data lives on this disk only: "
                "add one (`dvc remote add -d NAME URL`), name one in monitor.dvc[].remote, or "
                "set monitor.dvc[].check_remote: false"
            )
        if problems:
            return False, "; ".join(problems), values
        where = f"workspace, cache and remote {remote!r}" if checked else "workspace and cache"
        return True, f"clean: {where} agree with the last commit", values

    async def _ask(self, dvc: str) -> tuple[DataStatus, str | None]:
        """``dvc data status``, and the remote it checked (None: none was)."""
        command = [dvc, "data", "status", "--json"]
        if self.settings.check_remote:
            command.append("--not-in-remote")
        if self.settings.check_remote and self.settings.remote is not None:
            command += ["--remote", self.settings.remote]
        if not self.settings.check_remote or self.settings.remote is not None:
            return self._data_status(await self._run(command)), self.settings.remote
        ran, default = await asyncio.gather(
            self._run(command), self._run([dvc, "remote", "default"])
        )
        status = self._data_status(ran)
        remote = default.stdout.decode(errors="replace").strip() if default.returncode == 0 else ""
        if not remote:  # DVC then counts every path as not in "the" remote: no news
            return replace(status, not_in_remote=()), None
        return status, remote

    def _data_status(self, ran: _Ran) -> DataStatus:
        if ran.returncode != 0:
            raise _FailedError(self._explain(ran))
        try:
            found = orjson.loads(ran.stdout)
            if not isinstance(found, dict):
                raise ValueError("not a JSON object")
            return DataStatus.from_json(found)
        except ValueError as exc:  # orjson.JSONDecodeError is one
            raise _FailedError(
                f"`dvc data status --json` answered something else than its JSON ({exc}): "
                f"{ran.stdout[:200]!r}; is DVC 3 what runs? ({INSTALL_HINT})"
            ) from None

    def _explain(self, ran: _Ran) -> str:
        error = ran.error()
        if "not inside of a DVC repository" in error:
            return (
                f"{self.settings.path} is not in a DVC repository; run `dvc init` there, or fix "
                "monitor.dvc[].path"
            )
        if "remote" in error and "doesn't exist" in error:
            return f"{error}; fix monitor.dvc[].remote, or add it (`dvc remote add NAME URL`)"
        return f"`dvc data status` failed (exit {ran.returncode}): {error}"

    def _dvc_command(self) -> str:
        if self.settings.dvc_bin is not None:
            found = shutil.which(self.settings.dvc_bin)
            if found is None:
                raise _FailedError(
                    f"monitor.dvc[].dvc_bin {self.settings.dvc_bin!r} is not an executable; "
                    f"fix it, or install DVC ({INSTALL_HINT})"
                )
            return found
        found = shutil.which("dvc") or shutil.which("dvc", path=str(Path(sys.executable).parent))
        if found is None:
            raise _FailedError(
                f"DVC is not installed (no `dvc` command); {INSTALL_HINT}, or set "
                "monitor.dvc[].dvc_bin"
            )
        return found

    async def _run(self, command: Sequence[str]) -> _Ran:
        """Run ``command`` in the repository, in a process group of its own, killed when the
        caller is cancelled (a timeout)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                cwd=self.settings.path,
                env=os.environ | _ENVIRONMENT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:  # not executable, or the directory went away
            return _Ran(-1, b"", f"ERROR: cannot run {command[0]}: {exc}".encode())
        try:
            stdout, stderr = await proc.communicate()
        finally:
            if proc.returncode is None:
                _kill_group(proc.pid)
                await proc.wait()
        return _Ran(proc.returncode if proc.returncode is not None else -1, stdout, stderr)


def _kill_group(pid: int) -> None:
    """SIGKILL to the group ``pid`` leads (``start_new_session``), so dvc's children go too."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _changes(found: Any) -> tuple[str, ...]:
    if not isinstance(found, dict):
        raise ValueError(f"expected an object of changes, got {found!r}")
    changes = []
    for change, paths in found.items():
        for path in _as_list(paths):
            if isinstance(path, dict):  # a rename: {"old": ..., "new": ...}
                path = f"{path.get('old')} -> {path.get('new')}"
            changes.append(f"{change} {path}")
    return tuple(sorted(changes))


def _paths(found: Any) -> tuple[str, ...]:
    return tuple(sorted(str(path) for path in _as_list(found)))


def _as_list(found: Any) -> list[Any]:
    if not isinstance(found, list):
        raise ValueError(f"expected a list of paths, got {found!r}")
    return found


def _count(paths: Sequence[str]) -> str:
    return f"{len(paths)} tracked path{'s' if len(paths) != 1 else ''}"


def _some(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:_SHOWN_PATHS])
    more = len(paths) - _SHOWN_PATHS
    return f"{shown} and {more} more" if more > 0 else shown
