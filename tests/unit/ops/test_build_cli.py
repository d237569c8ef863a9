"""``flowops build`` as a command: help that teaches and starts light, user errors as one
line with exit 2, and a run through a fake ``buildah`` on PATH (a shell script that
answers as buildah does) for the table, ``-o json``, progress lines and a failed build.
The real buildah is in tests/integration/test_build_buildah.py."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowops._version import __version__
from flowops.cli import cli

FAKE_BUILDAH = r"""#!/bin/sh
echo "$@" >> "$FAKE_LOG"
for arg in "$@"; do
  case "$arg" in
    bud)
      for f in "$@"; do
        case "$f" in */"$FAKE_FAIL".Containerfile)
          echo "STEP 1/2: FROM scratch"
          echo "STEP 2/2: BOGUS nothing"
          echo 'Error: building at STEP "BOGUS ": Build error: Unknown instruction: "BOGUS"' >&2
          exit 125;;
        esac
      done
      echo "STEP 1/1: FROM scratch"; echo "COMMIT"; exit 0;;
    images) echo '[{"id": "0123456789ab", "size": "4.47 KB"}]'; exit 0;;
    push) echo "Writing manifest to image destination"; exit 0;;
  esac
done
exit 3
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with three Containerfiles (no git), a fake buildah alone on PATH."""
    containerfiles = tmp_path / "infra" / "containerfiles"
    containerfiles.mkdir(parents=True)
    for service in ("gateway", "worker", "monitor"):
        (containerfiles / f"{service}.Containerfile").write_text("FROM scratch\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "buildah"
    fake.write_text(FAKE_BUILDAH)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "buildah.log"))
    monkeypatch.setenv("FAKE_FAIL", "none")
    monkeypatch.setenv("FLOWOPS_BUILD__SBOM", "false")  # the fake writes no image archive
    monkeypatch.delenv("FLOWOPS_CONFIG", raising=False)
    for name in ("BUILD__REGISTRY", "BUILD__BUILDER", "BUILD__IMAGE_PREFIX"):
        monkeypatch.delenv(f"FLOWOPS_{name}", raising=False)
    return tmp_path


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["build", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_help_teaches_with_examples_and_exit_codes() -> None:
    code, out, _ = _invoke("--help")
    assert code == 0
    assert "flowops build gateway --builder buildah -o json" in out
    assert "--builder [auto|buildah|podman|docker|nerdctl]" in out
    assert "2  user or configuration error: no builder found" in out


def test_help_starts_without_the_build_machinery() -> None:
    code = (
        "import sys\n"
        "from flowops.cli import main\n"
        "sys.argv = ['flowops', 'build', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('kubernetes_asyncio', 'faust', 'mlflow', 'pydantic', 'rich', 'asyncio',\n"
        "         'flowops.ops')\n"
        "print('HEAVY', [m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip().endswith("HEAVY []")


def test_json_report_for_scripts(workdir: Path) -> None:
    code, out, err = _invoke("gateway", "monitor", "--tag", "1.2.0", "-o", "json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["ok"], report["builder"], report["tags"]) == (True, "buildah", ["1.2.0"])
    assert report["labels"]["org.opencontainers.image.version"] == __version__
    assert [(r["service"], r["refs"], r["size_bytes"], r["size"]) for r in report["results"]] == [
        ("gateway", ["flowops-gateway:1.2.0"], 4470, "4.47 KB"),
        ("monitor", ["flowops-monitor:1.2.0"], 4470, "4.47 KB"),
    ]
    assert "[gateway] STEP 1/1: FROM scratch" in err  # progress on stderr, prefixed
    calls = (workdir / "buildah.log").read_text().splitlines()
    assert calls[0].startswith("--storage-driver vfs bud --isolation chroot -f ")
    assert calls[1] == "--storage-driver vfs images --json flowops-gateway:1.2.0"


def test_table_and_default_tag_outside_git(workdir: Path) -> None:
    code, out, _ = _invoke("worker")
    assert code == 0
    assert f"flowops-worker:{__version__}" in out
    assert "4.47 KB" in out
    assert "built with buildah" in out


def test_a_failed_build_exits_1_with_its_error_lines(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FAIL", "worker")
    code, out, err = _invoke("-o", "json")
    assert code == 1
    states = [(r["service"], r["state"]) for r in json.loads(out)["results"]]
    assert states == [("gateway", "built"), ("worker", "failed"), ("monitor", "skipped")]
    assert "flowops build: worker: buildah build exited 125:\n" in err
    assert '  Error: building at STEP "BOGUS ": Build error: Unknown instruction: "BOGUS"' in err


def test_build_args_and_registry_flags_reach_the_builder(workdir: Path) -> None:
    code, _, err = _invoke(
        "gateway", "--registry", "reg.example/acme", "--build-arg", "PYTHON_IMAGE=py:3.12", "--push"
    )
    assert code == 0, err
    calls = (workdir / "buildah.log").read_text().splitlines()
    assert "--build-arg PYTHON_IMAGE=py:3.12" in calls[0]
    assert f"-t reg.example/acme/flowops-gateway:{__version__}" in calls[0]
    assert calls[2] == f"--storage-driver vfs push reg.example/acme/flowops-gateway:{__version__}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gatewya"], "flowops: error: no service 'gatewya' (there are: gateway, worker, monitor)"),
        (["--push"], "flowops: error: config: build.registry: --push needs a registry"),
        (["--tag", "a b"], "flowops: error: not a valid image tag: 'a b'"),
        (["--build-arg", "NOEQUALS"], "flowops: error: --build-arg: expected KEY=VALUE"),
        (["--builder", "podman"], "flowops: error: config: build.builder: podman is not on PATH"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(workdir: Path, args: list[str], message: str) -> None:
    code, out, err = _invoke(*args)
    assert code == 2
    assert out == ""
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_a_missing_containerfile_is_named(workdir: Path) -> None:
    (workdir / "infra/containerfiles/monitor.Containerfile").unlink()
    code, _, err = _invoke()
    assert code == 2
    path = "infra/containerfiles/monitor.Containerfile"
    assert err == f"flowops: error: {path}: no Containerfile for monitor\n"


def test_no_builder_on_path(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = workdir / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code, _, err = _invoke()
    assert code == 2
    assert err.startswith(
        "flowops: error: config: build.builder: no image builder found "
        "(looked for buildah, podman, docker, nerdctl): none is on PATH"
    )


def test_a_bad_setting_in_the_config_file(workdir: Path) -> None:
    (workdir / "flowops.yaml").write_text("build:\n  buildah: {isolaton: chroot}\n")
    code, _, err = _invoke("--config", "flowops.yaml")
    assert code == 2
    assert err == "flowops: error: config: build.buildah.isolaton: Extra inputs are not permitted\n"


def test_the_terminal_display_keeps_steps_and_ends_each_service() -> None:
    from io import StringIO

    from rich.console import Console

    from flowops.cli.build import RichProgress
    from flowops.ops.build import ServiceResult

    out = StringIO()
    progress = RichProgress(Console(file=out, force_terminal=True, width=100))
    progress.start("gateway", ["flowops-gateway:t"])
    progress.line("gateway", "STEP 1/2: FROM scratch")
    progress.line("gateway", "Copying blob sha256:0ee26d69")
    progress.finish(ServiceResult("gateway", ["flowops-gateway:t"], "built", 3920, "3.92 KB", 0.3))
    progress.start("worker", ["flowops-worker:t"])
    progress.close()  # as after Ctrl-C: the live line stops
    text = out.getvalue()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "gateway: building flowops-gateway:t\n" in plain
    assert "\n  STEP 1/2: FROM scratch\n" in plain
    assert "Copying blob" in plain  # only on the live line, not kept
    assert "\n  Copying blob" not in plain
    assert "gateway: built, 3.92 KB, 0.3 s\n" in plain
    assert text.rfind("\x1b[?25h") > text.rfind("\x1b[?25l")  # the cursor is shown again
