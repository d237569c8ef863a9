"""The CLI reference (``docs/cli.md``), written from the commands' own ``--help``.

Every command and subcommand's help text is rendered by click exactly as ``--help``
prints it, so the reference cannot say what the code does not. Regenerate it with::

    python -m flowops.cli.reference > docs/cli.md

``tests/unit/cli/test_cli_reference.py`` fails when the file and the code disagree.
"""

from __future__ import annotations

from collections.abc import Iterator

import click

__all__ = ["command_paths", "reference_markdown"]

_WIDTH = 100
_HEADER = """\
# `flowops` command reference

Generated from the commands' own `--help` by `python -m flowops.cli.reference > docs/cli.md`
(a test fails when this page and the code disagree). Each component's page tells the
story: [drift](drift.md), [streaming](streaming.md), [quality](quality.md),
[gateway](gateway.md), [monitor](monitor.md), [build](build.md), [test](test.md),
[deploy](deploy.md), [Kubernetes manifests](kubernetes.md).
"""


def reference_markdown() -> str:
    """The whole reference as Markdown: one section per command, in the order of
    ``flowops --help``, each holding the command's help text as printed.

    >>> page = reference_markdown()
    >>> page.startswith("# `flowops` command reference")
    True
    >>> "## `flowops drift compare`" in page
    True
    """
    parts = [_HEADER]
    for path, context in _walk(_root()):
        help_text = context.command.get_help(context).rstrip()
        parts.append(f"## `{' '.join(path)}`\n\n```text\n{help_text}\n```\n")
    return "\n".join(parts)


def command_paths() -> list[list[str]]:
    """Every command's words, ``["flowops"]`` first.

    >>> ["flowops", "drift", "compare"] in command_paths()
    True
    """
    return [path for path, _ in _walk(_root())]


def _root() -> click.Context:
    from flowops.cli import cli

    return click.Context(cli, info_name="flowops", max_content_width=_WIDTH, terminal_width=_WIDTH)


def _walk(context: click.Context) -> Iterator[tuple[list[str], click.Context]]:
    """``context``'s command and every command under it, depth first, by name."""
    yield context.command_path.split(), context
    command = context.command
    if not isinstance(command, click.Group):
        return
    for name in command.list_commands(context):
        sub = command.get_command(context, name)
        if sub is None or sub.hidden:
            continue
        yield from _walk(click.Context(sub, info_name=name, parent=context))


if __name__ == "__main__":
    click.echo(reference_markdown(), nl=False)
