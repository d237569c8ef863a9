"""``flowops.ops.build``: tags from git, OCI labels, the plan, error summaries, settings,
and a whole run on the in-memory :class:`FakeRunner` (no builder needed)."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from flowops._version import __version__
from flowops.config import load_settings, section
from flowops.errors import ConfigError, InputError
from flowops.ops.build import (
    BuildReport,
    BuildRequest,
    BuildSettings,
    Revision,
    ServiceResult,
    build,
    created_now,
    default_tag,
    error_summary,
    git_revision,
    oci_labels,
    plan,
    source_url,
)
from flowops.ops.builders import FakeRunner, cli_builder

OCI = "org.opencontainers.image"
SIZE_JSON = '[{"id": "109bd04aa2ca", "size": "188 MB"}]'


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
def repo(tmp_path: Path) -> Path:
    """A git checkout holding infra/containerfiles/<service>.Containerfile, one commit."""
    root = tmp_path / "repo"
    containerfiles = root / "infra" / "containerfiles"
    containerfiles.mkdir(parents=True)
    for service in ("gateway", "worker", "monitor"):
        (containerfiles / f"{service}.Containerfile").write_text("FROM scratch\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "first")
    return root


def _settings(repo: Path, **values: object) -> BuildSettings:
    """Settings of ``repo``; without SBOMs unless asked (the fake runner writes no image
    archive; tests/unit/ops/test_build_sbom.py runs one that does)."""
    defaults = {"containerfiles": repo / "infra/containerfiles", "sbom": False}
    return BuildSettings.model_validate(defaults | values)


# -- tags and labels -------------------------------------------------------------------


def test_revision_and_tag_of_a_clean_checkout(repo: Path) -> None:
    head = _git(repo, "rev-parse", "HEAD")
    revision = git_revision(repo)
    assert revision == Revision(head, head[:7], dirty=False)
    assert default_tag(revision) == f"{__version__}-{head[:7]}"


def test_a_changed_tracked_file_makes_the_tag_dirty(repo: Path) -> None:
    (repo / "infra/containerfiles/gateway.Containerfile").write_text("FROM scratch\nUSER 1\n")
    revision = git_revision(repo)
    assert revision is not None
    assert revision.dirty
    assert default_tag(revision).endswith(f"-{revision.short}-dirty")


def test_an_untracked_file_does_not(repo: Path) -> None:
    (repo / "notes.txt").write_text("scratch")
    revision = git_revision(repo)
    assert revision is not None
    assert not revision.dirty


def test_no_git_checkout_means_the_bare_version(tmp_path: Path) -> None:
    assert git_revision(tmp_path) is None
    assert default_tag(None) == __version__


def test_source_is_the_origin_remote_without_credentials(repo: Path) -> None:
    assert source_url(repo) is None
    _git(repo, "remote", "add", "origin", "https://ci-bot:token123@git.example.com/acme/ml.git")
    assert source_url(repo) == "https://git.example.com/acme/ml"


def test_created_is_rfc3339_utc_or_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created_now())
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert created_now() == "2023-11-14T22:13:20Z"


def test_labels_name_revision_source_version_created() -> None:
    labels = oci_labels(
        version="1.0",
        created="2026-01-02T03:04:05Z",
        revision=Revision("a" * 40, "aaaaaaa"),
        source="https://git.example.com/acme/ml",
    )
    assert labels == {
        f"{OCI}.version": "1.0",
        f"{OCI}.created": "2026-01-02T03:04:05Z",
        f"{OCI}.revision": "a" * 40,
        f"{OCI}.source": "https://git.example.com/acme/ml",
    }


# -- the plan --------------------------------------------------------------------------


def test_plan_all_services_with_registry_and_tags(repo: Path) -> None:
    settings = _settings(repo, registry="reg.example/team/", build_args={"A": "1"})
    specs = plan(BuildRequest(), settings, ["1.0", "latest"], {f"{OCI}.version": "1.0"})
    assert [spec.service for spec in specs] == ["gateway", "worker", "monitor"]
    assert specs[1].refs == (
        "reg.example/team/flowops-worker:1.0",
        "reg.example/team/flowops-worker:latest",
    )
    assert specs[1].containerfile == repo / "infra/containerfiles/worker.Containerfile"
    assert specs[1].context.resolve() == repo.resolve()
    assert specs[1].labels == {f"{OCI}.version": "1.0", f"{OCI}.title": "flowops-worker"}
    assert specs[1].build_args == {"A": "1"}


def test_plan_chosen_services_once_each_with_a_prefix(repo: Path) -> None:
    settings = _settings(repo, image_prefix="acme-")
    specs = plan(BuildRequest(("monitor", "gateway", "monitor")), settings, ["t"], {})
    assert [spec.refs for spec in specs] == [("acme-monitor:t",), ("acme-gateway:t",)]


@pytest.mark.parametrize(
    ("services", "tags", "message"),
    [
        (("gatewya",), ["t"], "no service 'gatewya' (there are: gateway, worker, monitor)"),
        ((), ["bad tag"], "not a valid image tag: 'bad tag'"),
        ((), ["-lead"], "not a valid image tag: '-lead'"),
    ],
)
def test_plan_rejects(repo: Path, services: tuple[str, ...], tags: list[str], message: str) -> None:
    with pytest.raises(InputError) as caught:
        plan(BuildRequest(services), _settings(repo), tags, {})
    assert str(caught.value).startswith(message)
    assert caught.value.exit_code == 2


def test_plan_names_a_missing_containerfile(repo: Path) -> None:
    (repo / "infra/containerfiles/worker.Containerfile").unlink()
    with pytest.raises(InputError) as caught:
        plan(BuildRequest(), _settings(repo), ["t"], {})
    path = repo / "infra/containerfiles/worker.Containerfile"
    assert str(caught.value) == f"{path}: no Containerfile for worker"


def test_plan_names_a_missing_context(repo: Path) -> None:
    with pytest.raises(InputError, match="no such build context directory"):
        plan(BuildRequest(), _settings(repo, context=repo / "nowhere"), ["t"], {})


# -- settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"builder": "kaniko"}, "config: build.builder: Input should be 'auto', 'buildah'"),
        ({"registyr": "x"}, "config: build.registyr: Extra inputs are not permitted"),
        ({"buildah": {"root": 3}}, "config: build.buildah.root: Input is not a valid path"),
        ({"image_prefix": "Flow Ops"}, "config: build.image_prefix: String should match"),
        ({"build_args": {"A": [1]}}, "config: build.build_args.A: Input should be a valid string"),
    ],
)
def test_bad_settings_name_their_key(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        section(BuildSettings, values, "build")
    assert str(caught.value).startswith(message)


def test_settings_from_the_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "flowops.yaml"
    config.write_text(
        "build:\n  registry: reg.example/acme\n  buildah: {storage_driver: overlay}\n"
    )
    monkeypatch.setenv("FLOWOPS_BUILD__IMAGE_PREFIX", "ml-")
    settings = section(BuildSettings, load_settings(config).build, "build")
    assert (settings.registry, settings.image_prefix) == ("reg.example/acme", "ml-")
    assert (settings.buildah.storage_driver, settings.buildah.isolation) == ("overlay", "chroot")


# -- error summaries -------------------------------------------------------------------


def test_error_summary_keeps_the_last_error_lines() -> None:
    lines = [
        "STEP 1/3: FROM python:3.11-slim",
        "Error: first problem",
        "STEP 2/3: RUN pip wheel .",
        "ERROR: Could not find a version that satisfies the requirement nope",
        "noise",
        'Error: building at STEP "RUN pip wheel .": exit status 1',
    ]
    assert error_summary(lines, limit=2) == [
        "ERROR: Could not find a version that satisfies the requirement nope",
        'Error: building at STEP "RUN pip wheel .": exit status 1',
    ]


def test_error_summary_of_a_failed_pip_wheel_prefers_leading_error_words() -> None:
    lines = [
        "[1/2] STEP 7/7: RUN python -m pip wheel --wheel-dir /wheels .",
        "  error: subprocess-exited-with-error",
        "      ERROR: Could not find a version that satisfies the requirement hatchling>=1.21",
        "      ERROR: No matching distribution found for hatchling>=1.21",
        "  note: This error originates from a subprocess, and is likely not a problem with pip.",
        "error: subprocess-exited-with-error",
        "note: This error originates from a subprocess, and is likely not a problem with pip.",
        'Error: building at STEP "RUN python -m pip wheel --wheel-dir /wheels .": exit status 1',
    ]
    assert error_summary(lines) == [
        "ERROR: Could not find a version that satisfies the requirement hatchling>=1.21",
        "ERROR: No matching distribution found for hatchling>=1.21",
        "error: subprocess-exited-with-error",
        'Error: building at STEP "RUN python -m pip wheel --wheel-dir /wheels .": exit status 1',
    ]


def test_error_summary_without_error_words_is_the_tail() -> None:
    assert error_summary([f"line {n}" for n in range(10)], limit=3) == [
        "line 7",
        "line 8",
        "line 9",
    ]


def test_error_summary_cuts_long_lines() -> None:
    (line,) = error_summary(["error: " + "x" * 1000])
    assert len(line) == 300
    assert line.endswith("...")


# -- a whole run on the fake runner ----------------------------------------------------


class Recorder:
    """A :class:`Progress` that keeps what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def start(self, service: str, refs: Sequence[str]) -> None:
        self.events.append(("start", service))

    def line(self, service: str, line: str) -> None:
        self.events.append((service, line))

    def finish(self, result: ServiceResult) -> None:
        self.events.append(("finish", f"{result.service} {result.state}"))


def _run(
    repo: Path, runner: FakeRunner, request: BuildRequest, **values: object
) -> tuple[BuildReport, Recorder]:
    progress = Recorder()
    builder = cli_builder("buildah", "buildah")
    report = asyncio.run(
        build(request, _settings(repo, **values), progress=progress, builder=builder, runner=runner)
    )
    return report, progress


def test_builds_sizes_and_reports_every_service(repo: Path) -> None:
    runner = FakeRunner({"bud": (["STEP 1/1: FROM scratch"], 0), "images": ([SIZE_JSON], 0)})
    report, progress = _run(repo, runner, BuildRequest(tags=("1.0",)))
    assert report.ok
    assert (report.builder, report.tags) == ("buildah", ["1.0"])
    assert [(r.service, r.state, r.size_bytes, r.size) for r in report.results] == [
        ("gateway", "built", 188_000_000, "188 MB"),
        ("worker", "built", 188_000_000, "188 MB"),
        ("monitor", "built", 188_000_000, "188 MB"),
    ]
    assert [command.argv[3] for command in runner.commands] == ["bud", "images"] * 3
    assert progress.events[:3] == [
        ("start", "gateway"),
        ("gateway", "STEP 1/1: FROM scratch"),
        ("finish", "gateway built"),
    ]


def test_labels_carry_the_checkout_s_revision(repo: Path) -> None:
    head = _git(repo, "rev-parse", "HEAD")
    runner = FakeRunner()
    report, _ = _run(repo, runner, BuildRequest(("gateway",)), source="https://example.com/x")
    assert report.tags == [f"{__version__}-{head[:7]}"]
    assert report.labels[f"{OCI}.revision"] == head
    assert report.labels[f"{OCI}.source"] == "https://example.com/x"
    argv = runner.commands[0].argv
    assert f"{OCI}.revision={head}" in argv
    assert argv[argv.index("--annotation") + 1].startswith(OCI)
    assert Path(argv[-1]).resolve() == repo.resolve()


def test_a_failed_build_is_summarised_and_the_rest_skipped(repo: Path) -> None:
    failure = (
        ["STEP 2/3: BOGUS nothing", 'Error: building at STEP "BOGUS ": Unknown instruction'],
        125,
    )
    runner = FakeRunner({"worker.Containerfile": failure})
    report, progress = _run(repo, runner, BuildRequest(tags=("t",)))
    assert not report.ok
    gateway, worker, monitor = report.results
    assert (gateway.state, worker.state, monitor.state) == ("built", "failed", "skipped")
    assert (worker.failed_at, worker.exit_code) == ("build", 125)
    assert worker.errors == ['Error: building at STEP "BOGUS ": Unknown instruction']
    assert ("start", "monitor") not in progress.events
    assert ("finish", "monitor skipped") in progress.events


def test_keep_going_builds_the_rest(repo: Path) -> None:
    runner = FakeRunner({"gateway.Containerfile": (["Error: no"], 1)})
    report, _ = _run(repo, runner, BuildRequest(tags=("t",), keep_going=True))
    assert [r.state for r in report.results] == ["failed", "built", "built"]


def test_push_pushes_every_tag_to_the_registry(repo: Path) -> None:
    runner = FakeRunner()
    request = BuildRequest(("monitor",), ("1.0", "latest"), push=True)
    report, _ = _run(repo, runner, request, registry="reg.example")
    pushes = [c.argv[-1] for c in runner.commands if "push" in c.argv]
    assert pushes == ["reg.example/flowops-monitor:1.0", "reg.example/flowops-monitor:latest"]
    assert report.results[0].pushed == pushes


def test_a_failed_push_is_a_failure_at_push(repo: Path) -> None:
    runner = FakeRunner({"push": (["Error: unauthorized: authentication required"], 125)})
    request = BuildRequest(("monitor",), ("1.0",), push=True)
    report, _ = _run(repo, runner, request, registry="reg.example")
    (result,) = report.results
    assert (result.state, result.failed_at, result.pushed) == ("failed", "push", [])
    assert result.errors == ["Error: unauthorized: authentication required"]


def test_push_without_a_registry_stops_before_building(repo: Path) -> None:
    runner = FakeRunner()
    with pytest.raises(ConfigError, match="--push needs a registry"):
        _run(repo, runner, BuildRequest(push=True))
    assert runner.commands == []


def test_json_of_a_report(repo: Path) -> None:
    runner = FakeRunner({"images": (["not json"], 0)})
    report, _ = _run(repo, runner, BuildRequest(("gateway",), ("t",)))
    found = report.as_json()
    assert found["ok"] is True
    assert found["results"][0] | {"seconds": None} == {
        "service": "gateway",
        "refs": ["flowops-gateway:t"],
        "state": "built",
        "size_bytes": None,
        "size": None,
        "seconds": None,
        "failed_at": None,
        "exit_code": None,
        "errors": [],
        "pushed": [],
        "sbom": None,
        "sbom_components": None,
    }


# -- docs/build.md ---------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[3] / "docs" / "build.md"


def test_docs_list_every_setting() -> None:
    from flowops.ops.builders import BuildahSettings

    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `build\.(\w+)` \|", text, flags=re.MULTILINE))
    assert documented == set(BuildSettings.model_fields)
    buildah_table = text[text.index("`build.buildah` (buildah only") :]
    buildah_keys = set(re.findall(r"^\| `(\w+)` \|", buildah_table, flags=re.MULTILINE))
    assert set(BuildahSettings.model_fields) <= buildah_keys


def test_docs_example_settings_are_valid() -> None:
    import yaml

    text = DOCS.read_text(encoding="utf-8")
    (example,) = re.findall(r"```yaml\n(build:\n.*?)```", text, flags=re.DOTALL)
    settings = section(BuildSettings, yaml.safe_load(example)["build"], "build")
    assert (settings.builder, settings.buildah.storage_driver) == ("buildah", "overlay")
