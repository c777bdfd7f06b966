"""What enforce records about what it released, and what it says when placing fails."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rspolicy.cli import cli

from .conftest import SAMPLE_DATA

PAN03 = SAMPLE_DATA / "svn1_pan_0.3m"


def _records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_record_gives_every_released_file_its_true_size_and_digest(tmp_path: Path) -> None:
    import hashlib

    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    result = CliRunner().invoke(cli, ["enforce", str(PAN03), "-o", str(out), "--log", str(log)])
    assert result.exit_code == 0
    decision, released = _records(log)
    assert released["event"] == "released" and released["decision_id"] == decision["decision_id"]
    files = decision["output"]["files"]
    assert sorted(Path(f["path"]).name for f in files) == sorted(p.name for p in out.iterdir())
    for f in files:
        data = Path(f["path"]).read_bytes()
        assert (f["size"], f["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())


def test_a_conflicting_shared_sidecar_is_named_by_its_output_path(tmp_path: Path) -> None:
    import tarfile

    from tests.test_fail_closed import _gf3_package

    package, _hh, hv = _gf3_package(tmp_path)
    loose = tmp_path / "loose"
    with tarfile.open(package) as tar:
        tar.extractall(loose, filter="data")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["enforce", "--json", str(loose), "-o", str(out), "--log",
                                      str(tmp_path / "log.jsonl")])
    [blocked] = [json.loads(line) for line in result.stdout.splitlines() if hv in line]
    meta = next((loose / "p").glob("*.meta.xml")).name
    assert blocked["reasons"][-1].startswith(f"{out / 'p' / meta}: a sidecar shared with another product")


def test_a_file_that_cannot_be_placed_after_its_record_is_one_line_naming_the_product(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Placing fails after the record: exit 1, the product named, and the next run reconciles the record."""
    from rspolicy.enforce import OutputFolder

    def full(self: OutputFolder, src: Path, rel: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(OutputFolder, "place", full)
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    result = CliRunner().invoke(cli, ["enforce", str(PAN03), "-o", str(out), "--log", str(log)])
    assert result.exit_code == 1
    product = next(PAN03.glob("*.tiff"))
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"rspolicy: error: {product}: recorded but could not be moved into place "
                           "(No space left on device)"), line
    monkeypatch.undo()
    verify = subprocess.run([sys.executable, "-m", "rspolicy", "log", "verify", str(log)], capture_output=True,
                            text=True, check=False)
    assert verify.returncode == 1 and "release not completed" in verify.stdout + verify.stderr
