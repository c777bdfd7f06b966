"""The ``rspolicy`` command line: one module per command, a thin layer over the library."""

from __future__ import annotations

import io
import sys

import click

from rspolicy import __version__
from rspolicy.cli import _startup  # noqa: F401  (before anything imports numpy)
from rspolicy.cli.enforce import enforce_command
from rspolicy.cli.log import log
from rspolicy.cli.screen import screen
from rspolicy.errors import RSPolicyError

#: Exit status when a command could not complete (a log or output that cannot
#: be written); 0, 3 and 4 report decisions, 2 usage errors.
EXIT_FAILURE = 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rspolicy")
def cli() -> None:
    """Screen, degrade and log Earth-observation products before export."""


cli.add_command(screen)
cli.add_command(enforce_command)
cli.add_command(log)


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
