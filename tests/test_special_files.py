"""Files rspolicy reads that are not regular files: refused at once with one line, never read.

A FIFO blocks an open until a writer comes, and a device such as /dev/zero never ends. Every
file rspolicy reads on a user's word (log, policy, zone, config, STAC document, sidecar) goes
through :func:`rspolicy.safeio.open_regular`; these tests would hang without it, so each runs
under an alarm.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from rspolicy.cli import cli
from rspolicy.safeio import open_regular, read_regular

from .conftest import SAMPLE_DATA

REPO = Path(__file__).resolve().parent.parent
PAN03 = SAMPLE_DATA / "svn1_pan_0.3m"


@pytest.fixture(autouse=True)
def _alarm() -> Iterator[None]:
    def hung(signum: int, frame: object) -> None:
        raise TimeoutError("blocked on a file that is not a regular file")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(params=["fifo", "device", "folder"])
def not_regular(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "fifo":
        path = tmp_path / "special"
        os.mkfifo(path)
        return path
    if request.param == "device":
        return Path("/dev/zero")
    path = tmp_path / "folder"
    path.mkdir()
    return path


def _link(where: Path, target: Path) -> Path:
    where.parent.mkdir(parents=True, exist_ok=True)
    where.symlink_to(target)
    return where


def test_open_regular_refuses_before_reading(tmp_path: Path, not_regular: Path) -> None:
    with pytest.raises(OSError, match=r"not a regular file|Is a directory"):
        open_regular(not_regular)
    with pytest.raises(OSError, match=r"not a regular file|Is a directory"):
        read_regular(_link(tmp_path / "link", not_regular), 10)


def _fails_in_one_line(args: list[str], *needles: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if "error" in line.lower()]
    assert errors, result.output
    assert all(n in result.output for n in needles), result.output


def test_a_policy_file_that_is_not_regular(tmp_path: Path, not_regular: Path) -> None:
    policy = _link(tmp_path / "p" / "mine.toml", not_regular)
    _fails_in_one_line(["screen", str(PAN03), "--policy", str(policy)], "mine.toml")


def test_a_zone_file_that_is_not_regular(tmp_path: Path, not_regular: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    shutil.copy(REPO / "rules" / "us-kyl-bingaman.toml", folder / "kb.toml")
    _link(folder / "zones" / "israel.geojson", not_regular)
    _fails_in_one_line(["screen", str(PAN03), "--policy", str(folder / "kb.toml")], "israel.geojson")


def test_a_config_file_that_is_not_regular(tmp_path: Path, not_regular: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    _link(tmp_path / "xdg" / "rspolicy" / "config.toml", not_regular)
    _fails_in_one_line(["screen", str(PAN03)], "config.toml")


def test_a_log_that_is_not_regular(tmp_path: Path, not_regular: Path) -> None:
    log = _link(tmp_path / "logs" / "decisions.jsonl", not_regular)
    _fails_in_one_line(["enforce", str(PAN03), "-o", str(tmp_path / "out"), "--log", str(log)])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.tif*"))


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_stac_document_or_sidecar_that_is_not_regular_blocks_its_product(tmp_path: Path, kind: str) -> None:
    not_regular = Path("/dev/zero")
    if kind == "fifo":
        not_regular = tmp_path / "special"
        os.mkfifo(not_regular)
    stac = _link(tmp_path / "items.json", not_regular)
    folder = tmp_path / "scene"
    shutil.copytree(PAN03, folder)
    (sidecar,) = folder.glob("*.xml")
    sidecar.unlink()
    _link(sidecar, not_regular)
    for named in (stac, folder):
        result = CliRunner().invoke(cli, ["screen", str(named), "--json"])
        assert "Traceback" not in result.output
        assert '"action":"block"' in result.output.replace(" ", ""), result.output
