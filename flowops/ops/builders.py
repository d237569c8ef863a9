"""The image builders ``flowops build`` drives: buildah, podman, docker, nerdctl.

A builder is a :class:`Builder`: pure functions from what to build to the command
line that builds it, sizes it and pushes it. Nothing here runs a process, so every
command line is tested without a builder installed; :func:`run_command` is the one
process runner (asyncio, output streamed line by line), and
:class:`FakeRunner` stands in for it in tests.

>>> spec = BuildSpec(
...     service="gateway",
...     containerfile=Path("infra/containerfiles/gateway.Containerfile"),
...     context=Path("."),
...     refs=("flowops-gateway:0.1.0-1a2b3c4",),
...     labels={"org.opencontainers.image.version": "0.1.0"},
... )
>>> print(" ".join(cli_builder("podman", "podman").build(spec).argv))
... # doctest: +NORMALIZE_WHITESPACE
podman build -f infra/containerfiles/gateway.Containerfile -t flowops-gateway:0.1.0-1a2b3c4
  --label org.opencontainers.image.version=0.1.0
  --annotation org.opencontainers.image.version=0.1.0 .
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from flowops.errors import ConfigError, ServiceError

__all__ = [
    "BUILDERS",
    "BuildSpec",
    "BuildahSettings",
    "Builder",
    "BuilderName",
    "CliBuilder",
    "Command",
    "FakeRunner",
    "OnLine",
    "Runner",
    "choose_builder",
    "cli_builder",
    "human_size",
    "parse_human_size",
    "run_command",
]

BuilderName = Literal["buildah", "podman", "docker", "nerdctl"]

BUILDERS: Final[tuple[BuilderName, ...]] = ("buildah", "podman", "docker", "nerdctl")
"""The builders ``--builder auto`` looks for on PATH, in this order."""

OnLine = Callable[[str], None]

_ANSI: Final = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_UNITS: Final = ("B", "KB", "MB", "GB", "TB", "PB")


class BuildahSettings(BaseModel):
    """How buildah stores images and runs RUN steps (``build.buildah``).

    The defaults work without a daemon, user namespaces or overlayfs: as root in a
    container, in CI.
    """

    model_config = ConfigDict(extra="forbid")

    storage_driver: str | None = Field(
        "vfs", description="--storage-driver; null: containers-storage.conf's"
    )
    isolation: str | None = Field("chroot", description="--isolation of RUN steps; null: default")
    root: Path | None = Field(None, description="--root: where images are kept; null: default")
    runroot: Path | None = Field(None, description="--runroot: run-time state; null: default")


@dataclass(frozen=True)
class Command:
    """A command line and the environment variables it adds to FlowOps's own."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildSpec:
    """One image to build: its Containerfile, context, references (``name:tag``, each
    tagged), labels (also given as annotations where the builder keeps them) and
    ``--build-arg`` values."""

    service: str
    containerfile: Path
    context: Path
    refs: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    build_args: Mapping[str, str] = field(default_factory=dict)


class Builder(Protocol):
    """What ``flowops build`` needs of a builder: command lines, and how to read a size."""

    @property
    def name(self) -> str: ...

    def build(self, spec: BuildSpec) -> Command:
        """The command that builds ``spec`` and tags it with each of its refs."""
        ...

    def size(self, ref: str) -> Command:
        """The command whose output tells the size of image ``ref``."""
        ...

    def parse_size(self, output: str) -> int | None:
        """Bytes, from the output of :meth:`size`; None when it says none."""
        ...

    def push(self, ref: str) -> Command:
        """The command that pushes ``ref`` to the registry its name names."""
        ...

    def save(self, ref: str, archive: Path) -> Command:
        """The command that writes image ``ref`` to the file ``archive`` as a
        docker-archive (its layers as tar files and a manifest.json), for its SBOM."""
        ...

    def probe(self) -> Command | None:
        """A command that fails when the builder's engine (a daemon) does not answer;
        None for daemonless builders."""
        ...


@dataclass(frozen=True)
class CliBuilder:
    """A builder driven through its command line; see :func:`cli_builder`."""

    name: BuilderName
    executable: str
    global_args: tuple[str, ...] = ()
    build_verb: str = "build"
    build_options: tuple[str, ...] = ()
    annotations: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    daemon: bool = False

    def build(self, spec: BuildSpec) -> Command:
        argv = [self.executable, *self.global_args, self.build_verb, *self.build_options]
        argv += ["-f", str(spec.containerfile)]
        for ref in spec.refs:
            argv += ["-t", ref]
        pairs = [f"{key}={value}" for key, value in spec.labels.items()]
        for pair in pairs:
            argv += ["--label", pair]
        for pair in pairs if self.annotations else ():
            argv += ["--annotation", pair]
        for key, value in spec.build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        return Command((*argv, str(spec.context)), self.env)

    def size(self, ref: str) -> Command:
        if self.name == "buildah":  # no size in `buildah inspect`; `images` has it
            return Command((self.executable, *self.global_args, "images", "--json", ref))
        return Command((self.executable, "image", "inspect", "--format", "{{.Size}}", ref))

    def parse_size(self, output: str) -> int | None:
        if self.name != "buildah":
            text = output.strip().splitlines()[-1:] or [""]
            return int(text[0]) if text[0].isdigit() else None
        try:
            images = json.loads(output)
        except ValueError:
            return None
        if not isinstance(images, list) or not images or not isinstance(images[0], dict):
            return None
        return parse_human_size(str(images[0].get("size", "")))

    def push(self, ref: str) -> Command:
        return Command((self.executable, *self.global_args, "push", ref), self.env)

    def save(self, ref: str, archive: Path) -> Command:
        if self.name == "buildah":  # no `save` verb: a push to a docker-archive file
            target = f"docker-archive:{archive}:{ref}"
            return Command((self.executable, *self.global_args, "push", ref, target), self.env)
        return Command((self.executable, "image", "save", "-o", str(archive), ref), self.env)

    def probe(self) -> Command | None:
        if not self.daemon:
            return None
        return Command((self.executable, "info", "--format", "{{.ServerVersion}}"))


def cli_builder(
    name: BuilderName, executable: str, buildah: BuildahSettings | None = None
) -> CliBuilder:
    """The builder ``name`` run as ``executable``, with buildah's storage settings.

    buildah builds with ``bud`` and its storage and isolation flags; docker with
    BuildKit and plain progress (the Containerfiles' ``RUN --mount`` needs BuildKit);
    nerdctl with plain progress. buildah and podman keep OCI annotations, so the
    labels are given as ``--annotation`` too; docker's and nerdctl's image stores
    keep labels only.

    >>> cli_builder("buildah", "/usr/bin/buildah").build(
    ...     BuildSpec("worker", Path("w.Containerfile"), Path("ctx"), ("w:1",))
    ... ).argv  # doctest: +NORMALIZE_WHITESPACE
    ('/usr/bin/buildah', '--storage-driver', 'vfs', 'bud', '--isolation', 'chroot',
     '-f', 'w.Containerfile', '-t', 'w:1', 'ctx')
    """
    if name == "buildah":
        options = buildah or BuildahSettings()
        global_args: list[str] = []
        for flag, value in (("--root", options.root), ("--runroot", options.runroot)):
            global_args += [flag, str(value)] if value is not None else []
        if options.storage_driver:
            global_args += ["--storage-driver", options.storage_driver]
        isolation = ("--isolation", options.isolation) if options.isolation else ()
        return CliBuilder(name, executable, tuple(global_args), "bud", isolation, True)
    if name == "podman":
        return CliBuilder(name, executable, annotations=True)
    if name == "docker":
        env = {"DOCKER_BUILDKIT": "1", "BUILDKIT_PROGRESS": "plain"}
        return CliBuilder(name, executable, env=env, daemon=True)
    return CliBuilder(name, executable, build_options=("--progress", "plain"), daemon=True)


# -- choosing a builder ----------------------------------------------------------------


def choose_builder(
    choice: str = "auto",
    buildah: BuildahSettings | None = None,
    probe_timeout: float = 10.0,
    *,
    which: Callable[[str], str | None] = shutil.which,
    probe: Callable[[Command, float], str | None] | None = None,
) -> Builder:
    """The builder named ``choice``, or with ``auto`` the first of :data:`BUILDERS` on
    PATH whose engine answers (docker and nerdctl need a daemon; ``probe_timeout``).

    ConfigError when none is found or the one asked for is not on PATH; ServiceError
    (exit 3) when the one asked for needs a daemon that does not answer.
    """
    check = probe or _probe
    names = BUILDERS if choice == "auto" else tuple(n for n in BUILDERS if n == choice)
    passed_over = []
    for name in names:
        executable = which(name)
        if executable is None:
            continue
        builder = cli_builder(name, executable, buildah)
        command = builder.probe()
        trouble = check(command, probe_timeout) if command is not None else None
        if trouble is None:
            return builder
        if choice != "auto":
            raise ServiceError(name, f"its engine did not answer: {trouble}")
        passed_over.append(f"{name} is on PATH but its engine did not answer ({trouble})")
    if choice != "auto":
        raise ConfigError("build.builder", f"{choice} is not on PATH")
    found = "; ".join(passed_over) or "none is on PATH"
    looked = ", ".join(BUILDERS)
    raise ConfigError(
        "build.builder",
        f"no image builder found (looked for {looked}): {found}; "
        "install one, e.g. apt-get install buildah",
    )


def _probe(command: Command, timeout: float) -> str | None:
    """None when ``command`` succeeds, else the last line it printed."""
    try:
        done = subprocess.run(
            command.argv, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return str(exc.strerror or exc)
    if done.returncode == 0:
        return None
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit code {done.returncode}"


# -- sizes -----------------------------------------------------------------------------


def human_size(size: int) -> str:
    """Bytes as the builders print them (decimal units, three digits).

    >>> human_size(3920), human_size(512), human_size(187_654_321)
    ('3.92 KB', '512 B', '188 MB')
    """
    value = float(size)
    for unit in _UNITS:
        if value < 1000 or unit == _UNITS[-1]:
            return f"{value:.3g} {unit}" if unit != "B" else f"{size} B"
        value /= 1000
    raise AssertionError("unreachable")


def parse_human_size(text: str) -> int | None:
    """Bytes from a size as buildah prints it (``3.92 KB``, ``1.2 GB``); None if it is not one.

    >>> parse_human_size("3.92 KB"), parse_human_size("188 MB"), parse_human_size("n/a")
    (3920, 188000000, None)
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP]?i?B)\s*", text, re.IGNORECASE)
    if match is None:
        return None
    number, unit = float(match[1]), match[2].upper()
    base = 1024 if "I" in unit else 1000
    power = _UNITS.index(unit.replace("I", "")) if unit.replace("I", "") in _UNITS else 0
    return round(number * float(base) ** power)


# -- running ---------------------------------------------------------------------------


class Runner(Protocol):
    """Runs a command, hands each line of its output (stdout and stderr merged) to
    ``on_line``, and returns its exit code (127 when it cannot start)."""

    async def __call__(self, command: Command, on_line: OnLine) -> int: ...


async def run_command(command: Command, on_line: OnLine) -> int:
    """Run ``command``, streaming its merged output to ``on_line`` one line at a time.

    Carriage-return progress bars become lines; colour codes are removed.

    >>> lines: list[str] = []
    >>> asyncio.run(run_command(Command(("sh", "-c", "echo one; echo two >&2; exit 3")),
    ...                         lines.append)), lines
    (3, ['one', 'two'])
    """
    env = {**os.environ, **command.env} if command.env else None
    try:
        process = await asyncio.create_subprocess_exec(
            *command.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
    except OSError as exc:
        on_line(f"cannot run {command.argv[0]}: {exc.strerror or exc}")
        return 127
    try:
        await _stream(process, on_line)
        return await process.wait()
    except asyncio.CancelledError:  # Ctrl-C: stop the builder too
        await _stop(process)
        raise


async def _stream(process: asyncio.subprocess.Process, on_line: OnLine) -> None:
    assert process.stdout is not None
    pending = b""
    while chunk := await process.stdout.read(65536):
        *complete, pending = re.split(rb"\r\n|\r|\n", pending + chunk)
        for raw in complete:
            _emit(raw, on_line)
    _emit(pending, on_line)


async def _stop(process: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        process.kill()
        await process.wait()


def _emit(raw: bytes, on_line: OnLine) -> None:
    line = _ANSI.sub("", raw.decode("utf-8", "replace")).rstrip()
    if line:
        on_line(line)


@dataclass
class FakeRunner:
    """An in-memory :class:`Runner` for tests: records each command, answers from a script.

    ``answers`` maps a word to the output lines and exit code of any command that has it
    as an argument, or as the file name of a path argument (``worker.Containerfile``); the
    first match wins, in the mapping's order. Other commands print nothing and succeed.

    >>> runner = FakeRunner({"bud": (["STEP 1/1: FROM scratch"], 0)})
    >>> seen: list[str] = []
    >>> asyncio.run(runner(Command(("buildah", "bud", ".")), seen.append)), seen
    (0, ['STEP 1/1: FROM scratch'])
    >>> runner.commands[0].argv
    ('buildah', 'bud', '.')
    """

    answers: Mapping[str, tuple[Sequence[str], int]] = field(default_factory=dict)
    commands: list[Command] = field(default_factory=list)

    async def __call__(self, command: Command, on_line: OnLine) -> int:
        self.commands.append(command)
        for word, (lines, code) in self.answers.items():
            if any(word in (arg, Path(arg).name) for arg in command.argv[1:]):
                for line in lines:
                    on_line(line)
                return code
        return 0
