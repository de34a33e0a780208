"""The ``beltcurate`` command line: a thin click skin over the library.

Each command parses options, calls one library function and prints its result as text or, with
``--json``, as one JSON document on stdout. Errors the user can fix are printed on stderr as one
line and give exit code 1 (see EXIT_CODES).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

# OpenMP threads busy-wait by default; on shared 2-core machines that made torch/faiss work
# 10-50x slower. Must be set before torch/faiss/sklearn are imported (they are imported lazily).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

EXIT_CODES = {
    0: "success",
    1: "failed: the error line names the input and the fix",
    2: "usage error (bad option or argument)",
    3: "another run holds the lock (refresh already running)",
    4: "nothing to do (refresh found no new frames and no new labels; only with --strict-exit)",
}

# Command modules, imported when the group is built; each exposes `commands` (a list of click
# commands or groups). Library imports happen inside the command functions so --help stays fast.
COMMAND_MODULES = (
    "curation.commands.core",
    "curation.commands.datasets",
    "curation.commands.labelstudio",
    "curation.commands.review",
    "curation.commands.scoring",
    "curation.commands.selection",
    "curation.commands.simulate",
    "curation.commands.refresh",
)


@dataclass
class App:
    """What every command gets: settings (lazy), the catalog (lazy) and output helpers."""

    config_path: str | None = None
    _settings: Any = None
    _catalog: Any = None
    json_output: bool = False
    extras: dict = field(default_factory=dict)

    @property
    def settings(self):
        if self._settings is None:
            from curation.settings import load_settings

            self._settings = load_settings(self.config_path)
        return self._settings

    @property
    def catalog(self):
        if self._catalog is None:
            from curation.catalog import open_catalog

            self._catalog = open_catalog(self.settings)
        return self._catalog

    def emit(self, data: dict, text: Callable[[dict], str] | str | None = None) -> None:
        """Print a result: JSON on stdout with --json, else the human text."""
        if self.json_output:
            click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))
        elif callable(text):
            click.echo(text(data))
        elif text is not None:
            click.echo(text)
        else:
            for key, value in data.items():
                click.echo(f"{key}: {value}")

    @property
    def show_progress(self) -> bool:
        return not self.json_output and sys.stderr.isatty()


pass_app = click.make_pass_decorator(App)


def json_option(func):
    """Add ``--json`` to a command; it sets ``app.json_output``."""

    def callback(ctx: click.Context, _param, value: bool):
        if value:
            ctx.ensure_object(App).json_output = True
        return value

    return click.option(
        "--json", "json_flag", is_flag=True, expose_value=False, callback=callback,
        is_eager=True, help="Print the result as JSON on stdout (for automation).",
    )(func)


class CurationGroup(click.Group):
    """Turns CurationError into a one-line message and its exit code."""

    def invoke(self, ctx: click.Context):
        from curation.errors import CurationError

        try:
            return super().invoke(ctx)
        except CurationError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=CurationGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="BELTCURATE_CONFIG",
              help="beltcurate.toml to read (default: ./beltcurate.toml if present).")
@click.version_option(package_name="beltcurate")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Pick the conveyor-belt frames worth labeling, get them labeled, export datasets.

    \b
    The loop: ingest -> score -> select -> push -> (annotators) -> pull -> export -> review
    \b
    Examples:
      beltcurate synth demo/frames --frames 500
      beltcurate ingest demo/frames/images/west --site west --camera cam1
      beltcurate config show
    """
    app = ctx.ensure_object(App)
    app.config_path = config_path


def _register() -> None:
    import importlib

    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        for command in module.commands:
            main.add_command(command)


_register()
