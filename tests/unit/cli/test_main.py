"""The top-level `flowops` command: help, version, error rendering, `python -m`."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from flowops import __version__
from flowops.cli import cli


def test_help_lists_commands_and_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "drift" in result.output
    assert "Exit codes" in result.output


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["nope"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_python_dash_m_runs_the_same_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowops", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"flowops, version {__version__}"


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from flowops.cli import main\n"
        "sys.argv = ['flowops', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('numpy', 'scipy', 'pydantic', 'rich', 'yaml') if m in sys.modules]\n"
        "print('heavy:' + ','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "heavy:"


def test_flowops_errors_become_one_line_and_their_exit_code() -> None:
    from flowops.cli import LazyGroup
    from flowops.errors import InputError

    @click.group(cls=LazyGroup)
    def group() -> None:
        """A group with one failing command."""

    @group.command()
    def fail() -> None:
        raise InputError("not a number: 'x'", path="data.csv", column="age", row=4)

    group.add_command(fail)
    result = CliRunner().invoke(group, ["fail"])
    assert result.exit_code == 2
    assert result.output == "flowops: error: data.csv: row 4: column 'age': not a number: 'x'\n"
    assert result.exception is None or isinstance(result.exception, SystemExit)
