"""The builders' command lines (pure functions), sizes, the process runner, and how
``auto`` chooses a builder from PATH (fake executables in a temp directory)."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from flowops.errors import ConfigError, ServiceError
from flowops.ops.builders import (
    BuildahSettings,
    BuildSpec,
    Command,
    FakeRunner,
    choose_builder,
    cli_builder,
    human_size,
    parse_human_size,
    run_command,
)

SPEC = BuildSpec(
    service="monitor",
    containerfile=Path("cf/monitor.Containerfile"),
    context=Path("repo"),
    refs=("reg.example/flowops-monitor:1.0-abc1234", "reg.example/flowops-monitor:latest"),
    labels={"org.opencontainers.image.version": "1.0", "org.opencontainers.image.revision": "ab"},
    build_args={"PYTHON_IMAGE": "python:3.12-slim"},
)
_COMMON = (
    "-f", "cf/monitor.Containerfile",
    "-t", "reg.example/flowops-monitor:1.0-abc1234",
    "-t", "reg.example/flowops-monitor:latest",
    "--label", "org.opencontainers.image.version=1.0",
    "--label", "org.opencontainers.image.revision=ab",
)  # fmt: skip
_ANNOTATIONS = (
    "--annotation", "org.opencontainers.image.version=1.0",
    "--annotation", "org.opencontainers.image.revision=ab",
)  # fmt: skip
_BUILDAH = ("buildah", "--storage-driver", "vfs", "bud", "--isolation", "chroot")
_TAIL = ("--build-arg", "PYTHON_IMAGE=python:3.12-slim", "repo")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("buildah", (*_BUILDAH, *_COMMON, *_ANNOTATIONS, *_TAIL)),
        ("podman", ("podman", "build", *_COMMON, *_ANNOTATIONS, *_TAIL)),
        ("docker", ("docker", "build", *_COMMON, *_TAIL)),
        ("nerdctl", ("nerdctl", "build", "--progress", "plain", *_COMMON, *_TAIL)),
    ],
)
def test_build_command_lines(name: str, expected: tuple[str, ...]) -> None:
    assert cli_builder(name, name).build(SPEC).argv == expected  # type: ignore[arg-type]


def test_docker_builds_with_buildkit_and_plain_progress() -> None:
    assert cli_builder("docker", "docker").build(SPEC).env == {
        "DOCKER_BUILDKIT": "1",
        "BUILDKIT_PROGRESS": "plain",
    }


def test_buildah_storage_settings_reach_every_command() -> None:
    settings = BuildahSettings(
        storage_driver="overlay", isolation=None, root=Path("/r"), runroot=Path("/rr")
    )
    buildah = cli_builder("buildah", "/usr/bin/buildah", settings)
    storage = ("--root", "/r", "--runroot", "/rr", "--storage-driver", "overlay")
    assert buildah.build(SPEC).argv[:9] == ("/usr/bin/buildah", *storage, "bud", "-f")
    assert buildah.size("x:1").argv == ("/usr/bin/buildah", *storage, "images", "--json", "x:1")
    assert buildah.push("x:1").argv == ("/usr/bin/buildah", *storage, "push", "x:1")


def test_buildah_without_storage_driver_or_isolation() -> None:
    plain = cli_builder("buildah", "buildah", BuildahSettings(storage_driver=None, isolation=None))
    assert plain.build(SPEC).argv[:3] == ("buildah", "bud", "-f")


@pytest.mark.parametrize("name", ["podman", "docker", "nerdctl"])
def test_size_and_push_commands(name: str) -> None:
    builder = cli_builder(name, name)  # type: ignore[arg-type]
    assert builder.size("x:1").argv == (name, "image", "inspect", "--format", "{{.Size}}", "x:1")
    assert builder.push("x:1").argv == (name, "push", "x:1")
    assert builder.parse_size("187654321\n") == 187_654_321
    assert builder.parse_size("Error: no such image") is None


@pytest.mark.parametrize(
    ("name", "probe"),
    [
        ("buildah", None),
        ("podman", None),
        ("docker", ("docker", "info", "--format", "{{.ServerVersion}}")),
        ("nerdctl", ("nerdctl", "info", "--format", "{{.ServerVersion}}")),
    ],
)
def test_only_daemon_builders_are_probed(name: str, probe: tuple[str, ...] | None) -> None:
    command = cli_builder(name, name).probe()  # type: ignore[arg-type]
    assert (command.argv if command else None) == probe


def test_buildah_size_from_its_images_json() -> None:
    buildah = cli_builder("buildah", "buildah")
    assert buildah.parse_size('[{"id": "109bd04aa2ca", "size": "3.92 KB"}]') == 3920
    assert buildah.parse_size("[]") is None
    assert buildah.parse_size("not json") is None


@pytest.mark.parametrize(
    ("text", "size"),
    [("512 B", 512), ("3.92 KB", 3920), ("188 MB", 188_000_000), ("1.5 GiB", 1_610_612_736)],
)
def test_parse_human_size(text: str, size: int) -> None:
    assert parse_human_size(text) == size


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0 B"), (999, "999 B"), (1000, "1 KB"), (2_345_678_901, "2.35 GB")]
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


def test_run_command_streams_merged_lines_without_colours_or_carriage_returns() -> None:
    script = r"printf 'one\r\ntwo\rthree\n\033[31mred\033[0m\n'; echo err >&2; printf tail; exit 4"
    lines: list[str] = []
    code = asyncio.run(run_command(Command(("sh", "-c", script)), lines.append))
    assert code == 4
    assert lines == ["one", "two", "three", "red", "err", "tail"]


def test_run_command_passes_extra_environment() -> None:
    lines: list[str] = []
    command = Command(("sh", "-c", "echo $FLOWOPS_TEST_VALUE"), {"FLOWOPS_TEST_VALUE": "seen"})
    assert asyncio.run(run_command(command, lines.append)) == 0
    assert lines == ["seen"]


def test_run_command_that_cannot_start_is_127(tmp_path: Path) -> None:
    lines: list[str] = []
    code = asyncio.run(run_command(Command((str(tmp_path / "missing"),)), lines.append))
    assert code == 127
    assert lines[0].startswith(f"cannot run {tmp_path / 'missing'}")


def test_fake_runner_answers_by_argument_or_file_name_and_records() -> None:
    runner = FakeRunner({"worker.Containerfile": (["Error: boom"], 2), "push": (["no"], 1)})
    seen: list[str] = []
    build = Command(("buildah", "bud", "-f", "x/worker.Containerfile", "/tmp/push-dir"))
    assert asyncio.run(runner(build, seen.append)) == 2
    assert seen == ["Error: boom"]
    other = Command(("buildah", "bud", "-f", "x/gateway.Containerfile", "/tmp/push-dir"))
    assert asyncio.run(runner(other, seen.append)) == 0  # "push" is not a whole argument
    assert asyncio.run(runner(Command(("buildah", "push", "a:1")), seen.append)) == 1
    assert [c.argv[1] for c in runner.commands] == ["bud", "bud", "push"]


# -- choosing a builder from PATH ------------------------------------------------------


def _executable(directory: Path, name: str, body: str = "exit 0") -> Path:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def path_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


@pytest.mark.parametrize(
    ("present", "chosen"),
    [
        (["nerdctl", "docker", "podman", "buildah"], "buildah"),
        (["nerdctl", "docker", "podman"], "podman"),
        (["nerdctl", "docker"], "docker"),
        (["nerdctl"], "nerdctl"),
    ],
)
def test_auto_takes_the_first_in_order(path_dir: Path, present: list[str], chosen: str) -> None:
    for name in present:
        _executable(path_dir, name)
    builder = choose_builder("auto")
    assert builder.name == chosen
    assert builder.build(SPEC).argv[0] == str(path_dir / chosen)


def test_auto_passes_over_a_docker_whose_engine_does_not_answer(path_dir: Path) -> None:
    _executable(path_dir, "docker", "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    _executable(path_dir, "nerdctl")
    assert choose_builder().name == "nerdctl"


def test_auto_with_nothing_usable_names_what_it_found(path_dir: Path) -> None:
    _executable(path_dir, "docker", "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    with pytest.raises(ConfigError) as caught:
        choose_builder()
    message = str(caught.value)
    assert message.startswith("config: build.builder: no image builder found")
    assert "docker is on PATH but its engine did not answer (Cannot connect" in message


def test_auto_on_an_empty_path(path_dir: Path) -> None:
    with pytest.raises(ConfigError, match="none is on PATH; install one"):
        choose_builder()


def test_a_named_builder_not_on_path(path_dir: Path) -> None:
    _executable(path_dir, "buildah")
    with pytest.raises(ConfigError, match=r"build\.builder: podman is not on PATH"):
        choose_builder("podman")


def test_a_named_docker_without_engine_is_exit_3(path_dir: Path) -> None:
    _executable(path_dir, "docker", "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    with pytest.raises(ServiceError) as caught:
        choose_builder("docker")
    assert caught.value.exit_code == 3
    assert (
        str(caught.value)
        == "docker: its engine did not answer: Cannot connect to the Docker daemon"
    )


def test_a_probe_that_hangs_is_cut_off(path_dir: Path) -> None:
    _executable(path_dir, "nerdctl", "exec /bin/sleep 30")
    with pytest.raises(ServiceError, match=r"no answer within 0\.5 s"):
        choose_builder("nerdctl", probe_timeout=0.5)


def test_a_cancelled_run_stops_the_builder() -> None:
    async def scenario() -> int:
        started = asyncio.Event()
        pids: list[int] = []

        def on_line(line: str) -> None:
            pids.append(int(line))
            started.set()

        task = asyncio.create_task(
            run_command(Command(("sh", "-c", "echo $$; exec sleep 30")), on_line)
        )
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pids[0]

    pid = asyncio.run(scenario())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
