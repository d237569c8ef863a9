"""``flowops build``: OCI images of the gateway, stream worker and monitor (docs/build.md).

:func:`build` does one run: check the request against the settings, choose a builder
(:func:`~flowops.ops.builders.choose_builder`), plan one build per service (:func:`plan`:
tags from the version and git commit, OCI labels), then build, size and push each image
in turn through a :class:`~flowops.ops.builders.Runner`, streaming the builder's output
to a :class:`Progress`. The :class:`BuildReport` is the data.

>>> default_tag(Revision("1a2b3c4d5e6f", "1a2b3c4", dirty=True), "0.1.0")
'0.1.0-1a2b3c4-dirty'
>>> error_summary(["STEP 1/2: FROM scratch", "Error: building at STEP 2: exit status 1"])
['Error: building at STEP 2: exit status 1']
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

from flowops._version import __version__
from flowops.errors import ConfigError, InputError
from flowops.ops import builders as _builders
from flowops.ops.manifests import SERVICES as _SERVICES
from flowops.ops.sbom import SBOM_LABEL as _SBOM_LABEL
from flowops.ops.sbom import write_sbom

__all__ = [
    "BuildReport",
    "BuildRequest",
    "BuildSettings",
    "Progress",
    "Revision",
    "ServiceResult",
    "build",
    "created_now",
    "default_tag",
    "error_summary",
    "git_revision",
    "oci_labels",
    "plan",
    "sbom_name",
    "source_url",
]

_OCI: Final = "org.opencontainers.image"
_TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_ERROR_WORDS: Final = re.compile(r"\b(error|failed|fatal|denied|unauthorized)\b", re.IGNORECASE)
_LEADING_ERROR: Final = re.compile(r"\s*(error|fatal|failed)\b", re.IGNORECASE)
_TAIL_LINES: Final = 200
_SUMMARY_LINES: Final = 5
_LINE_LIMIT: Final = 300


def _default_containerfiles() -> Path:
    here = Path("infra/containerfiles")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[2] / "infra" / "containerfiles"


class BuildSettings(BaseModel):
    """The ``build:`` section of the settings file."""

    model_config = ConfigDict(extra="forbid")

    builder: Literal["auto", "buildah", "podman", "docker", "nerdctl"] = Field(
        "auto", description="auto: the first of buildah, podman, docker, nerdctl on PATH"
    )
    registry: str | None = Field(
        None, description="images are <registry>/<image_prefix><service>; needed by --push"
    )
    image_prefix: str = Field(
        "flowops-",
        pattern=r"^[a-z0-9][a-z0-9._/-]*$",
        description="image name before the service's: flowops-gateway",
    )
    containerfiles: Path = Field(
        default_factory=_default_containerfiles,
        description="holds <service>.Containerfile; default: ./infra/containerfiles",
    )
    context: Path | None = Field(
        None, description="build context; default: the git checkout holding containerfiles"
    )
    build_args: dict[str, str] = Field(
        default_factory=dict, description="--build-arg values, e.g. PYTHON_IMAGE"
    )
    source: str | None = Field(
        None, description="org.opencontainers.image.source; default: git remote origin's URL"
    )
    probe_timeout: float = Field(
        10.0, gt=0, le=300, description="seconds docker/nerdctl's engine has to answer"
    )
    buildah: _builders.BuildahSettings = Field(default_factory=_builders.BuildahSettings)
    sbom: bool = Field(
        True,
        description="write a CycloneDX SBOM of each image built and label the image with its "
        "file name (io.flowops.sbom)",
    )
    sbom_dir: Path | None = Field(
        None, description="where the SBOMs go; default: build/sbom in the build context"
    )

    def context_dir(self) -> Path:
        """The build context: ``context``, else the top of the git checkout holding the
        containerfiles, else (no git) their grandparent (``infra/containerfiles/../..``)."""
        if self.context is not None:
            return self.context
        top = _git(self.containerfiles, "rev-parse", "--show-toplevel")
        return Path(top) if top else (self.containerfiles / ".." / "..").resolve()


@dataclass(frozen=True)
class BuildRequest:
    """What the command line asked for; empty ``services`` means all of them, empty
    ``tags`` the :func:`default_tag`."""

    services: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    push: bool = False
    keep_going: bool = False


@dataclass(frozen=True)
class Revision:
    """The git commit a build comes from."""

    commit: str
    short: str
    dirty: bool = False


@dataclass
class ServiceResult:
    """How one service's image went: ``built``, ``failed`` (at ``failed_at``) or
    ``skipped`` (an earlier build failed)."""

    service: str
    refs: list[str]
    state: Literal["pending", "built", "failed", "skipped"] = "pending"
    size_bytes: int | None = None
    size: str | None = None
    seconds: float | None = None
    failed_at: Literal["build", "sbom", "push"] | None = None
    exit_code: int | None = None
    errors: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)
    sbom: str | None = None
    """The CycloneDX SBOM written for the image (None: none asked, or the build failed)."""
    sbom_components: int | None = None

    @property
    def ok(self) -> bool:
        return self.state == "built"


@dataclass
class BuildReport:
    """The outcome of one ``flowops build``."""

    builder: str
    tags: list[str]
    labels: dict[str, str]
    results: list[ServiceResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False when any image failed to build or push (exit 1)."""
        return all(result.ok for result in self.results)

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


class Progress(Protocol):
    """Where the builder's output goes while it runs (the CLI shows it on stderr)."""

    def start(self, service: str, refs: Sequence[str]) -> None: ...

    def line(self, service: str, line: str) -> None: ...

    def finish(self, result: ServiceResult) -> None: ...


# -- tags and labels -------------------------------------------------------------------


def git_revision(repo: Path) -> Revision | None:
    """The commit checked out in ``repo`` and whether tracked files differ from it;
    None outside a git checkout or without git."""
    head = _git(repo, "rev-parse", "HEAD")
    if head is None:
        return None
    changes = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return Revision(head, head[:7], dirty=bool(changes))


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def default_tag(revision: Revision | None, version: str = __version__) -> str:
    """``<version>-<short commit>[-dirty]``; the bare version outside git. Characters a
    tag cannot hold (``+`` of a local version) become ``-``.

    >>> default_tag(Revision("1a2b3c4d5e", "1a2b3c4"), "0.1.0+local")
    '0.1.0-local-1a2b3c4'
    >>> default_tag(None, "0.1.0")
    '0.1.0'
    """
    tag = version if revision is None else f"{version}-{revision.short}"
    tag += "-dirty" if revision is not None and revision.dirty else ""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", tag)[:128]


def created_now() -> str:
    """Now in RFC 3339 UTC, or ``SOURCE_DATE_EPOCH``'s time for reproducible builds."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    when = datetime.fromtimestamp(int(epoch), UTC) if epoch.isdigit() else datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def source_url(repo: Path) -> str | None:
    """The URL of ``repo``'s ``origin`` remote, without credentials; an scp-style
    address (``git@host:org/repo.git``) becomes ``https://host/org/repo``."""
    url = _git(repo, "remote", "get-url", "origin")
    return _public_url(url) if url else None


def _public_url(url: str) -> str:
    """
    >>> _public_url("https://bot:s3cret@github.com/acme/flowops.git")
    'https://github.com/acme/flowops'
    >>> _public_url("git@github.com:acme/flowops.git")
    'https://github.com/acme/flowops'
    """
    scp = re.fullmatch(r"[\w.-]+@([\w.-]+):(?!//)(.+)", url)
    if scp:
        url = f"https://{scp[1]}/{scp[2]}"
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    path = parts.path.removesuffix(".git")
    return urlunsplit((parts.scheme, netloc, path, "", "")) if netloc else url


def oci_labels(
    *, version: str, created: str, revision: Revision | None, source: str | None
) -> dict[str, str]:
    """The OCI labels (and annotations) of the images; revision and source when known.

    >>> oci_labels(version="0.1.0", created="2026-01-02T03:04:05Z", revision=None,
    ...            source=None)  # doctest: +NORMALIZE_WHITESPACE
    {'org.opencontainers.image.version': '0.1.0',
     'org.opencontainers.image.created': '2026-01-02T03:04:05Z'}
    """
    labels = {f"{_OCI}.version": version, f"{_OCI}.created": created}
    if revision is not None:
        labels[f"{_OCI}.revision"] = revision.commit
    if source:
        labels[f"{_OCI}.source"] = source
    return labels


# -- planning --------------------------------------------------------------------------


def plan(
    request: BuildRequest, settings: BuildSettings, tags: Sequence[str], labels: dict[str, str]
) -> list[_builders.BuildSpec]:
    """One build per service asked for (all by default), each tagged with every tag and
    labelled with ``labels`` and its title (the image name); InputError for an unknown
    service, a bad tag or a missing Containerfile."""
    for tag in tags:
        if not _TAG.fullmatch(tag):
            raise InputError(f"not a valid image tag: {tag!r} (letters, digits, _ . -)")
    context = settings.context_dir()
    if not context.is_dir():
        raise InputError("no such build context directory", path=str(context))
    specs = []
    for service in _services(request.services):
        containerfile = settings.containerfiles / f"{service}.Containerfile"
        if not containerfile.is_file():
            raise InputError(f"no Containerfile for {service}", path=str(containerfile))
        name = f"{settings.image_prefix}{service}"
        repository = f"{settings.registry.rstrip('/')}/{name}" if settings.registry else name
        refs = tuple(f"{repository}:{tag}" for tag in tags)
        spec_labels = labels | {f"{_OCI}.title": name}
        if settings.sbom:
            spec_labels[_SBOM_LABEL] = sbom_name(name, tags[0])
        specs.append(
            _builders.BuildSpec(
                service, containerfile, context, refs, spec_labels, settings.build_args
            )
        )
    return specs


def _services(asked: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(asked)) or list(_SERVICES)
    for service in chosen:
        if service not in _SERVICES:
            raise InputError(f"no service {service!r} (there are: {', '.join(_SERVICES)})")
    return chosen


# -- running ---------------------------------------------------------------------------


def error_summary(lines: Sequence[str], limit: int = _SUMMARY_LINES) -> list[str]:
    """What went wrong, from a failed command's last lines: the last ``limit`` distinct
    lines that start with an error word (``Error:``, ``ERROR:``, ``fatal:``), else those
    that name one, else the last ``limit`` lines; each cut to 300 characters.

    >>> error_summary(["note: this error originates in a subprocess", "ERROR: no hatchling"])
    ['ERROR: no hatchling']
    """
    leading = [line for line in lines if _LEADING_ERROR.match(line)]
    naming = [line for line in lines if _ERROR_WORDS.search(line)]
    chosen = [line.strip() for line in leading or naming or lines]
    distinct = list(reversed(dict.fromkeys(reversed(chosen))))
    return [_cut(line) for line in distinct[-limit:]]


def _cut(line: str) -> str:
    return line if len(line) <= _LINE_LIMIT else line[: _LINE_LIMIT - 3] + "..."


async def build(
    request: BuildRequest,
    settings: BuildSettings,
    *,
    progress: Progress,
    builder: _builders.Builder | None = None,
    runner: _builders.Runner = _builders.run_command,
) -> BuildReport:
    """One ``flowops build`` run; ``builder`` defaults to the one ``settings.builder``
    names or ``auto`` finds (:func:`~flowops.ops.builders.choose_builder`)."""
    if request.push and not settings.registry:
        raise ConfigError("build.registry", "--push needs a registry: --registry or build.registry")
    repo = settings.context_dir()
    revision = git_revision(repo)
    tags = list(request.tags) or [default_tag(revision)]
    source = settings.source or source_url(repo)
    labels = oci_labels(
        version=__version__, created=created_now(), revision=revision, source=source
    )
    specs = plan(request, settings, tags, labels)
    chosen = builder or _builders.choose_builder(
        settings.builder, settings.buildah, settings.probe_timeout
    )
    report = BuildReport(chosen.name, tags, labels)
    sboms = (settings.sbom_dir or repo / "build" / "sbom") if settings.sbom else None
    for spec in specs:
        failed_before = any(result.state == "failed" for result in report.results)
        result = ServiceResult(spec.service, list(spec.refs))
        report.results.append(result)
        if failed_before and not request.keep_going:
            result.state = "skipped"
        else:
            await _one(spec, chosen, runner, progress, result, push=request.push, sboms=sboms)
        progress.finish(result)
    return report


async def _one(
    spec: _builders.BuildSpec,
    builder: _builders.Builder,
    runner: _builders.Runner,
    progress: Progress,
    result: ServiceResult,
    *,
    push: bool,
    sboms: Path | None,
) -> None:
    progress.start(spec.service, spec.refs)
    started = time.monotonic()
    if await _step(builder.build(spec), "build", spec.service, runner, progress, result):
        result.state = "built"
        await _size(builder, spec.refs[0], runner, result)
        if sboms is not None and not await _sbom(spec, sboms, builder, runner, progress, result):
            push = False
        for ref in spec.refs if push else ():
            if not await _step(builder.push(ref), "push", spec.service, runner, progress, result):
                break
            result.pushed.append(ref)
    result.seconds = round(time.monotonic() - started, 1)


async def _sbom(
    spec: _builders.BuildSpec,
    sboms: Path,
    builder: _builders.Builder,
    runner: _builders.Runner,
    progress: Progress,
    result: ServiceResult,
) -> bool:
    """Save the image to a temporary archive and write its SBOM beside the others (the
    file its label names); a failure fails the image, before any push."""
    ref = spec.refs[0]
    target = sboms / spec.labels[_SBOM_LABEL]
    with tempfile.TemporaryDirectory(prefix="flowops-sbom-") as folder:
        archive = Path(folder) / "image.tar"
        if not await _step(
            builder.save(ref, archive), "sbom", spec.service, runner, progress, result
        ):
            return False
        try:
            count = await asyncio.to_thread(write_sbom, archive, ref, target)
        except (InputError, OSError, tarfile.TarError) as exc:
            result.state, result.failed_at, result.errors = "failed", "sbom", [str(exc)]
            return False
    result.sbom, result.sbom_components = str(target), count
    return True


def sbom_name(image: str, tag: str) -> str:
    """The file name of an image's SBOM: the image's name and first tag.

    >>> sbom_name("reg.example/flowops-worker", "1.0")
    'reg.example_flowops-worker-1.0.cdx.json'
    """
    return f"{image.replace('/', '_')}-{tag}.cdx.json"


async def _step(
    command: _builders.Command,
    what: Literal["build", "sbom", "push"],
    service: str,
    runner: _builders.Runner,
    progress: Progress,
    result: ServiceResult,
) -> bool:
    tail: deque[str] = deque(maxlen=_TAIL_LINES)

    def on_line(line: str) -> None:
        tail.append(line)
        progress.line(service, line)

    code = await runner(command, on_line)
    if code == 0:
        return True
    result.state, result.failed_at, result.exit_code = "failed", what, code
    result.errors = error_summary(tail)
    return False


async def _size(
    builder: _builders.Builder, ref: str, runner: _builders.Runner, result: ServiceResult
) -> None:
    output: list[str] = []
    if await runner(builder.size(ref), output.append) == 0:
        result.size_bytes = builder.parse_size("\n".join(output))
        result.size = (
            _builders.human_size(result.size_bytes) if result.size_bytes is not None else None
        )
