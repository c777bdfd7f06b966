"""The ``rspolicy`` command line: one module per command, a thin layer over the library."""

from __future__ import annotations

import importlib
import io
import sys

import click

from rspolicy import __version__
from rspolicy.cli import _startup  # noqa: F401  (before anything imports numpy)
from rspolicy.errors import RSPolicyError

#: Exit status when a command could not complete (a log or output that cannot
#: be written); 0, 3 and 4 report decisions, 2 usage errors.
EXIT_FAILURE = 1

#: Each command: the module and attribute it lives in, and the one line ``rspolicy --help`` shows for it
#: (a test holds these lines equal to the commands' own). A command's module, and what it imports
#: (rasterio, numpy, pyproj, the readers), loads only when that command runs: ``rspolicy --help`` or
#: ``rspolicy log verify`` never pay for GDAL.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "screen": ("rspolicy.cli.screen", "screen",
               "Read products' metadata (never their pixels) and decide what may leave."),
    "enforce": ("rspolicy.cli.enforce", "enforce_command",
                "Release, degrade or refuse every product under PATH..."),
    "log": ("rspolicy.cli.log", "log", "Verify, read and export the decision audit log."),
    "rules": ("rspolicy.cli.rules", "rules", "List, show, check and test export policies (rules/*.toml)."),
}


class _LazyGroup(click.Group):
    """A group whose commands are imported when they are run (or their own help is asked for)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short) for name, (_, _, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rspolicy")
def cli() -> None:
    """Screen, degrade and log Earth-observation products before export."""


def main() -> None:
    """Console entry point: one-line errors, never a traceback."""
    # File names that are not valid UTF-8 reach Python as surrogate escapes; printing one must
    # not end the run with UnicodeEncodeError (commands escape them; this is the last line of defence).
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        cli.main(prog_name="rspolicy", standalone_mode=True)
    except RSPolicyError as exc:
        click.echo(f"rspolicy: error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
