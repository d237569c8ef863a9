"""``flowops build``: OCI images of the gateway, stream worker and monitor.

Thin: parses, calls :func:`flowops.ops.build.build`, renders. The builder's output is
shown on stderr as it comes (a live line on a terminal, prefixed lines otherwise); the
summary table or JSON goes to stdout.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import click

from flowops.cli.options import config_option, output_option

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.spinner import Spinner

    from flowops.ops.build import BuildReport, ServiceResult

__all__ = ["PlainProgress", "RichProgress", "build"]

_EXIT_CODES = """\b
Exit codes:
  0  every image built (and pushed, with --push)
  1  a build, its SBOM or a push failed: its last error lines are shown
  2  user or configuration error: no builder found, unknown service, missing
     Containerfile, bad tag, --push without a registry
  3  the builder asked for (docker, nerdctl) has no engine that answers
"""

_STEP_PREFIXES = ("STEP ", "Step ", "#", "COMMIT", "-->", "Successfully")


@click.command(epilog=_EXIT_CODES)
@click.argument("services", nargs=-1, metavar="[SERVICE]...")
@click.option(
    "--builder",
    type=click.Choice(["auto", "buildah", "podman", "docker", "nerdctl"]),
    help="Image builder. [default: auto: the first of buildah, podman, docker, nerdctl "
    "on PATH; build.builder]",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="T",
    help="Tag of the images; repeatable. [default: <version>-<commit>[-dirty]]",
)
@click.option("--push", is_flag=True, help="Push every tag to the registry after building.")
@click.option("--registry", metavar="HOST[/PATH]", help="Registry of the images. [build.registry]")
@click.option(
    "--build-arg",
    "build_args",
    multiple=True,
    metavar="KEY=VALUE",
    help="A build argument, e.g. PYTHON_IMAGE=python:3.12-slim; repeatable.",
)
@click.option(
    "--containerfiles",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Directory of <service>.Containerfile. [default: infra/containerfiles]",
)
@click.option(
    "--context",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Build context. [default: the repository holding the Containerfiles]",
)
@click.option("--keep-going", is_flag=True, help="Build the other images after one fails.")
@output_option(("table", "json"), "The images built: a table, or JSON for scripts.")
@config_option
def build(
    services: tuple[str, ...],
    builder: str | None,
    tags: tuple[str, ...],
    push: bool,
    registry: str | None,
    build_args: tuple[str, ...],
    containerfiles: str | None,
    context: str | None,
    keep_going: bool,
    output_format: str,
    config_file: str | None,
) -> None:
    """Build OCI images of SERVICEs (gateway, worker, monitor; all by default) from
    infra/containerfiles/<service>.Containerfile with the first builder found.

    Images are <registry>/flowops-<service>:<version>-<commit>, labelled (and, with
    buildah and podman, annotated) with org.opencontainers.image.revision, .source,
    .version and .created. The builder's output streams to stderr; failures show its
    last error lines. See docs/build.md.

    \b
    Examples:
      flowops build                                   # all three, first builder on PATH
      flowops build gateway --builder buildah -o json
      flowops build --registry ghcr.io/acme --tag 1.2.0 --push
    """
    import asyncio

    from flowops.config import load_settings, section
    from flowops.errors import InputError
    from flowops.ops.build import BuildRequest, BuildSettings
    from flowops.ops.build import build as run_build

    settings = load_settings(config_file)
    configured = section(BuildSettings, settings.build, "build").model_dump()
    given = {"builder": builder, "registry": registry, "containerfiles": containerfiles}
    given |= {"context": context}
    values = configured | {key: value for key, value in given.items() if value is not None}
    try:
        values["build_args"] = configured["build_args"] | _pairs(build_args)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    build_settings = section(BuildSettings, values, "build")
    request = BuildRequest(services, tags, push, keep_going)
    progress = RichProgress(_stderr_console()) if sys.stderr.isatty() else PlainProgress()
    try:
        report = asyncio.run(run_build(request, build_settings, progress=progress))
    finally:
        progress.close()
    _render(report, output_format)
    _say_failures(report.results, report.builder)
    if not report.ok:
        sys.exit(1)


def _pairs(values: Iterable[str]) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise ValueError(f"--build-arg: expected KEY=VALUE, got {value!r}")
        pairs[key] = rest
    return pairs


def _say(line: str) -> None:
    click.echo(f"flowops build: {line}", err=True)


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _state(result: ServiceResult, *, with_size: bool = True) -> str:
    size = f", {result.size}" if result.size and with_size else ""
    seconds = f", {result.seconds:g} s" if result.seconds is not None else ""
    pushed = f", pushed {len(result.pushed)}" if result.pushed else ""
    where = f" at {result.failed_at}" if result.failed_at else ""
    sbom = f", SBOM {result.sbom}" if result.sbom else ""
    return f"{result.state}{where}{size}{seconds}{pushed}{sbom}"


class PlainProgress:
    """The builder's output as lines prefixed with the service: for logs and CI."""

    def start(self, service: str, refs: Sequence[str]) -> None:
        _say(f"{service}: building {', '.join(refs)}")

    def line(self, service: str, line: str) -> None:
        click.echo(f"[{service}] {line}", err=True)

    def finish(self, result: ServiceResult) -> None:
        _say(f"{result.service}: {_state(result)}")

    def close(self) -> None:
        pass


class RichProgress:
    """A spinner with the builder's latest line on a terminal; build steps stay above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live: Live | None = None
        self._spinner: Spinner | None = None

    def start(self, service: str, refs: Sequence[str]) -> None:
        from rich.live import Live
        from rich.spinner import Spinner

        self.console.print(f"[bold]{service}[/]: building {', '.join(refs)}")
        self._spinner = Spinner("dots", text=f"{service}: starting")
        self._live = Live(self._spinner, console=self.console, transient=True)
        self._live.start()

    def line(self, service: str, line: str) -> None:
        from rich.text import Text

        if line.startswith(_STEP_PREFIXES):
            self.console.print(Text(f"  {line}", style="dim"), overflow="ellipsis", no_wrap=True)
        if self._spinner is not None:
            self._spinner.update(text=Text(f"{service}: {line}", overflow="ellipsis", no_wrap=True))

    def finish(self, result: ServiceResult) -> None:
        self.close()
        mark = "[green]built[/]" if result.ok else f"[bold red]{result.state}[/]"
        detail = _state(result).partition(result.state)[2]
        self.console.print(f"[bold]{result.service}[/]: {mark}{detail}")

    def close(self) -> None:
        """Stop the live line (and give the cursor back), also after Ctrl-C."""
        if self._live is not None:
            self._live.stop()
            self._live = None


def _render(report: BuildReport, output_format: str) -> None:
    if output_format == "json":
        import orjson

        click.echo(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2).decode())
        return
    from rich.table import Table

    from flowops.cli.render import stdout_console

    table = Table("service", "image", "size", "result", title=f"built with {report.builder}")
    for result in report.results:
        table.add_row(result.service, "\n".join(result.refs), result.size or "-", _state(result))
    stdout_console().print(table)


def _say_failures(results: Iterable[ServiceResult], builder: str) -> None:
    for result in results:
        if result.state != "failed":
            continue
        _say(f"{result.service}: {builder} {result.failed_at} exited {result.exit_code}:")
        for line in result.errors:
            click.echo(f"  {line}", err=True)
