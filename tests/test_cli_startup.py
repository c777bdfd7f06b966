"""The command line loads a command's modules only when that command runs."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from rspolicy.cli import COMMANDS, cli


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_lists_each_command_with_its_own_short_help(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    assert command.name == name
    assert command.get_short_help_str(limit=1000) == COMMANDS[name][2]


def test_group_help_names_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name, (_, _, short) in COMMANDS.items():
        assert name in result.output
        assert short.split()[0] in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["screan"])
    assert result.exit_code == 2
    assert "No such command 'screan'" in result.output


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)), file=sys.stderr)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(done.stderr.split())


@pytest.mark.parametrize(("argv", "absent"), [
    (["--help"], {"rasterio", "numpy", "pyproj", "shapely", "rspolicy.readers.discover", "rspolicy.enforce"}),
    (["log", "--help"], {"rasterio", "numpy", "pyproj", "rspolicy.readers.discover"}),
    (["screen", "--help"], {"rspolicy.enforce", "rspolicy.degrade", "rspolicy.cog", "rspolicy.resample", "shapely",
                            "tifffile"}),
])
def test_a_command_does_not_import_what_it_does_not_use(argv: list[str], absent: set[str]) -> None:
    code = ("import sys\nfrom rspolicy.cli import cli\n"
            f"try:\n    cli.main({argv!r}, prog_name='rspolicy')\nexcept SystemExit:\n    pass")
    loaded = _loaded_after(code)
    assert "click" in loaded
    assert not absent & loaded, sorted(absent & loaded)
