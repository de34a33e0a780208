"""Generate the README's command reference and configuration table from the code itself.

``python -m curation.clidoc --write README.md`` rewrites the text between the markers;
``tests/test_docs.py`` fails when README.md and the code drift apart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import click

BEGIN_COMMANDS, END_COMMANDS = "<!-- commands:begin -->", "<!-- commands:end -->"
BEGIN_SETTINGS, END_SETTINGS = "<!-- settings:begin -->", "<!-- settings:end -->"


def _walk(command: click.Command, path: list[str]):
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from _walk(command.commands[name], [*path, name])


def _context(path: list[str]) -> tuple[click.Command, click.Context]:
    """The context chain a real invocation builds, so subcommands inherit the group's settings
    (``-h``/``--help``, width) exactly as they do on the command line."""
    from curation.cli import main

    command: click.Command = main
    ctx = main.make_context(path[0], ["--help"], resilient_parsing=True, terminal_width=100, max_content_width=100)
    for name in path[1:]:
        command = command.commands[name]  # type: ignore[attr-defined]
        ctx = click.Context(command, info_name=name, parent=ctx)
    return command, ctx


def command_reference() -> str:
    from curation.cli import main

    parts = []
    for path, _ in _walk(main, ["beltcurate"]):
        command, ctx = _context(path)
        parts.append(f"### `{' '.join(path)}`\n\n```text\n{command.get_help(ctx).rstrip()}\n```\n")
    return "\n".join(parts)


def settings_reference() -> str:
    from curation.settings import SETTINGS

    rows = ["| setting | environment | default | what it does |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        default = "" if s.default is None else s.default
        text = s.help.replace("|", "\\|")
        rows.append(f"| `{s.name}` | `{s.env_var}` | `{default}` | {text} |")
    return "\n".join(rows) + "\n"


def _replace(text: str, begin: str, end: str, body: str) -> str:
    if begin not in text or end not in text:
        raise SystemExit(f"markers {begin} / {end} not found")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}{end}{tail}"


def render(readme: str) -> str:
    readme = _replace(readme, BEGIN_COMMANDS, END_COMMANDS, command_reference())
    return _replace(readme, BEGIN_SETTINGS, END_SETTINGS, settings_reference())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, help="README to update in place")
    args = parser.parse_args(argv)
    if args.write:
        args.write.write_text(render(args.write.read_text()))
    else:
        sys.stdout.write(command_reference())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
