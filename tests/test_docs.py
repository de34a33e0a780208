"""The README's command reference and settings table are generated from the code; drift fails."""

from __future__ import annotations

from pathlib import Path

from curation.clidoc import render

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_matches_cli_and_settings():
    current = README.read_text()
    assert render(current) == current, "README.md is out of date: run 'make docs' (python -m curation.clidoc --write README.md)"


def test_every_command_has_an_example():
    import click

    from curation.cli import main
    from curation.clidoc import _walk

    missing = [" ".join(path) for path, cmd in _walk(main, ["beltcurate"])
               if not isinstance(cmd, click.Group) and "Example" not in (cmd.help or "")]
    assert not missing, f"commands without an Example block in --help: {missing}"
