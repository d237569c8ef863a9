"""docs/cli.md is the commands' own help, regenerated; and no command's --help pays for
Faust, MLflow or kubernetes-asyncio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowops.cli import _COMMANDS
from flowops.cli.reference import command_paths, reference_markdown

DOCS = Path(__file__).resolve().parents[3] / "docs" / "cli.md"
HEAVY = ("faust", "mlflow", "kubernetes_asyncio", "scipy")


def test_docs_cli_md_is_the_commands_help() -> None:
    assert DOCS.read_text(encoding="utf-8") == reference_markdown(), (
        "docs/cli.md is out of date: python -m flowops.cli.reference > docs/cli.md"
    )


def test_every_command_has_a_section_with_an_example_or_usage() -> None:
    page = reference_markdown()
    for name in _COMMANDS:
        assert f"## `flowops {name}`" in page
    assert page.count("Usage: flowops") == page.count("## `flowops")


@pytest.mark.parametrize("command", [" ".join(path) for path in command_paths()])
def test_help_starts_without_faust_mlflow_or_kubernetes(command: str) -> None:
    args = [*command.split(), "--help"]
    code = (
        "import sys\n"
        "from flowops.cli import main\n"
        f"sys.argv = {args!r}\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
        f"print('heavy:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "heavy:"
