"""enforce writes only inside OUTDIR, records before it releases, and fails as a tool failure in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner, Result
from rasterio.crs import CRS

from rspolicy.cli import cli
from rspolicy.enforce import EnforceOptions, enforce
from rspolicy.errors import AuditLogError
from rspolicy.model import Action
from rspolicy.policy import load_policy
from rspolicy.results import Result as Outcome_
from rspolicy.samples.gf_optical import write_image

from .conftest import SAMPLE_DATA

PAN03 = SAMPLE_DATA / "svn1_pan_0.3m"
PACKAGE = next(SAMPLE_DATA.glob("*.tar.gz"))


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


@pytest.fixture(autouse=True)
def _no_home_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RSPOLICY_LOG", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def test_link_at_an_output_name_is_replaced_not_followed(tmp_path: Path) -> None:
    outside, out = tmp_path / "outside", tmp_path / "out"
    outside.mkdir()
    out.mkdir()
    for f in PAN03.iterdir():
        (out / f.name).symlink_to(outside / f.name)  # dangling: "exists" only as a link
    result = run("enforce", str(PAN03), "-o", str(out), "--log", str(tmp_path / "log.jsonl"))
    # lstat sees the links: an output that is there and not this log's fails the product (not a policy block)
    assert result.exit_code == 1 and "output exists" in result.stdout and result.stdout.startswith("FAILED")
    assert list(outside.iterdir()) == []
    result = run("enforce", str(PAN03), "-o", str(out), "--force", "--log", str(tmp_path / "log.jsonl"))
    assert result.exit_code == 0
    assert list(outside.iterdir()) == []
    assert all(not p.is_symlink() and p.is_file() for p in out.iterdir())


def test_link_at_a_mirrored_subfolder_is_refused(tmp_path: Path) -> None:
    src, outside, out = tmp_path / "src", tmp_path / "outside", tmp_path / "out"
    shutil.copytree(PAN03, src / "scene")
    outside.mkdir()
    out.mkdir()
    (out / "scene").symlink_to(outside, target_is_directory=True)
    outcomes = enforce([src], EnforceOptions(out, load_policy()))
    assert [o.result for o in outcomes] == [Outcome_.FAILED] and not outcomes[0].outputs
    reason = outcomes[0].reason
    assert "symbolic link" in reason and str(out / "scene") in reason
    assert list(outside.iterdir()) == []


def test_link_at_the_package_name_is_not_followed(tmp_path: Path) -> None:
    outside, out = tmp_path / "outside", tmp_path / "out"
    outside.mkdir()
    out.mkdir()
    (out / PACKAGE.name).symlink_to(outside / "stolen.tar.gz")
    outcomes = enforce([PACKAGE], EnforceOptions(out, load_policy(), force=True))
    assert any(o.outputs for o in outcomes)
    assert list(outside.iterdir()) == []
    assert (out / PACKAGE.name).is_file() and not (out / PACKAGE.name).is_symlink()


def test_record_failure_places_nothing_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rspolicy import audit

    def broken(self: Any, record: Any) -> dict[str, Any]:
        raise AuditLogError(f"{self.path}: No space left on device")

    monkeypatch.setattr(audit.AuditLog, "append", broken)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["enforce", str(PAN03), "-o", str(out), "--log", str(tmp_path / "l.jsonl")])
    assert result.exit_code == 1 and (result.exception is None or isinstance(result.exception, SystemExit))
    assert "rspolicy: error:" in result.stderr and "No space left" in result.stderr
    assert files_under(out) == []


def test_record_is_written_before_the_package_is_placed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    seen: list[bool] = []
    outcomes = enforce([PACKAGE], EnforceOptions(out, load_policy()),
                       record=lambda o: seen.append((out / PACKAGE.name).exists()))
    assert seen and not any(seen)
    released = [o for o in outcomes if o.outputs]
    assert released and all(o.outputs[-1].path == str(out.resolve() / PACKAGE.name) for o in released)


@pytest.mark.parametrize("make_bad", ["under_a_file", "read_only_parent"])
def test_unusable_outdir_is_one_line_exit_1(tmp_path: Path, make_bad: str) -> None:
    if make_bad == "under_a_file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    else:
        if os.geteuid() == 0:
            pytest.skip("root ignores folder permissions")
        (tmp_path / "ro").mkdir(mode=0o555)
        out = tmp_path / "ro" / "out"
    result = CliRunner().invoke(cli, ["enforce", str(PAN03), "-o", str(out), "--log", str(tmp_path / "l.jsonl")])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rspolicy: error:") and str(out) in lines[0]
    proc = subprocess.run([sys.executable, "-m", "rspolicy", "enforce", str(PAN03), "-o", str(out),
                           "--log", str(tmp_path / "l.jsonl")], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unwritable_log_is_one_line_exit_1(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    proc = subprocess.run([sys.executable, "-m", "rspolicy", "enforce", str(PAN03), "-o", str(tmp_path / "out"),
                           "--log", str(tmp_path / "file" / "log.jsonl")], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "rspolicy: error:" in proc.stderr
    assert files_under(tmp_path / "out") == []


def test_product_name_with_byte_0xff_is_printed_and_logged(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    name = os.fsdecode(b"scene\xff.tif")
    write_image(src / "plain.tif", np.ones((1, 8, 8), dtype=np.uint16), crs=CRS.from_epsg(32650),
                transform=Affine(10, 0, 448000, 0, -10, 4417000))
    os.rename(os.fsencode(src / "plain.tif"), os.fsencode(src / name))
    log = tmp_path / "log.jsonl"
    for extra in ([], ["--json"]):
        proc = subprocess.run([sys.executable, "-m", "rspolicy", "enforce", *extra, os.fsencode(src / name),
                               "-o", str(tmp_path / "out"), "--log", str(log), "--overwrite"],
                              capture_output=True, check=False, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
        assert proc.returncode in (0, 4), proc.stderr
        assert b"Traceback" not in proc.stderr
        if extra:
            assert "scene" in json.loads(proc.stdout)["path"]  # valid JSON: the byte is escaped
        else:
            assert b"scene\\xff" in proc.stdout
    assert all("scene\\xff" in r["input"]["path"] for r in read_log(log) if "event" not in r)
    assert run("log", "verify", str(log)).exit_code == 0


def test_degraded_slc_without_sidecar_keeps_its_decided_class(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(3)
    pixels = (rng.normal(size=(1, 64, 64)) + 1j * rng.normal(size=(1, 64, 64))).astype(np.complex64)
    write_image(src / "slc.tif", pixels, crs=CRS.from_epsg(32650), transform=Affine(0.5, 0, 448000, 0, -0.5, 4417000))
    log = tmp_path / "log.jsonl"
    result = run("enforce", "--json", str(src / "slc.tif"), "-o", str(tmp_path / "out"), "--log", str(log))
    [line] = [json.loads(x) for x in result.stdout.splitlines()]
    assert result.exit_code == 0 and line["action"] == "resample" and line["product_class"] == "sar"
    assert line["output_gsd_m"] == pytest.approx(1.0)
    assert (tmp_path / "out" / "slc.tif").is_file()


def test_allowed_product_to_rebuild_goes_through_the_writer_and_withheld_files_stay(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSPOLICY_ISOLATION", "off")  # the spies below count in this process
    import dataclasses

    import rspolicy.enforce as enforce_module
    from rspolicy.degrade import RasterOutput
    from rspolicy.model import Withheld

    src = tmp_path / "src"
    shutil.copytree(SAMPLE_DATA / "sv1_pan_0.5m", src)
    (src / "notes.aux.xml").write_text("<PAMDataset/>")
    real_read = enforce_module.read_product

    def read_with_findings(files: Any, label: Any) -> Any:
        product = real_read(files, label)
        if STAGE not in str(product.path) and product.raster is not None:
            return dataclasses.replace(product, rebuild="unknown TIFF tag 65000",
                                       withheld=(Withheld(src / "notes.aux.xml", "notes.aux.xml", "GDAL side file"),))
        return product

    rebuilt: list[tuple[Path, dict[str, str]]] = []

    def fake_rebuild(src_path: Path, dst: Path, *, tags: Any, threads: int | None, rpcs: Any = None) -> RasterOutput:
        shutil.copyfile(src_path, dst)
        rebuilt.append((src_path, dict(tags)))
        return RasterOutput(dst, 0, 0, "uint16", None)

    monkeypatch.setattr(enforce_module, "read_product", read_with_findings)
    monkeypatch.setattr(enforce_module, "rebuild_raster", fake_rebuild)
    out = tmp_path / "out"
    [outcome] = [o for o in enforce([src], EnforceOptions(out, load_policy())) if o.outputs]
    assert outcome.decision.action is Action.ALLOW
    assert [p.name for p, _ in rebuilt] == [next(src.glob("*.tif*")).name]
    assert rebuilt[0][1]["RSPOLICY_DECISION_ID"] == outcome.decision.decision_id
    assert "rebuilt by rspolicy's writer: unknown TIFF tag 65000" in outcome.notes
    assert "withheld: notes.aux.xml: GDAL side file" in outcome.notes
    assert not (out / "notes.aux.xml").exists()


STAGE = ".rspolicy-stage-"


def test_write_package_replaces_a_link_at_its_name(tmp_path: Path) -> None:
    import tarfile

    from rspolicy.readers.package import write_package

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.tar.gz").write_bytes(b"keep me")
    member = tmp_path / "a.txt"
    member.write_text("a")
    dest = tmp_path / "out.tar.gz"
    dest.symlink_to(outside / "victim.tar.gz")
    write_package([(member, "a.txt")], dest)
    assert (outside / "victim.tar.gz").read_bytes() == b"keep me"
    assert not dest.is_symlink()
    with tarfile.open(dest) as tar:
        assert tar.getnames() == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "out.tar.gz", "outside"]  # no .part left


def test_link_at_the_folder_of_a_mirrored_package_blocks_it(tmp_path: Path) -> None:
    src, outside, out = tmp_path / "src", tmp_path / "outside", tmp_path / "out"
    (src / "batch").mkdir(parents=True)
    shutil.copy(PACKAGE, src / "batch" / PACKAGE.name)
    outside.mkdir()
    out.mkdir()
    (out / "batch").symlink_to(outside, target_is_directory=True)
    outcomes = enforce([src], EnforceOptions(out, load_policy(), force=True))
    # The output side refuses (a planted link): the products failed, they were not judged by the policy.
    assert outcomes and all(o.result in (Outcome_.FAILED, Outcome_.BLOCKED) and not o.outputs for o in outcomes)
    assert any(o.result is Outcome_.FAILED for o in outcomes)
    assert all("symbolic link" in o.reason for o in outcomes if o.result is Outcome_.FAILED)
    assert list(outside.iterdir()) == []


def test_allowed_image_with_trailing_bytes_is_rebuilt_not_copied(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(SAMPLE_DATA / "sv1_pan_0.5m", src)
    [image] = src.glob("*.tiff")
    secret = b"NOT-PART-OF-ANY-IMAGE" * 8
    with image.open("ab") as fh:
        fh.write(secret)
    out = tmp_path / "out"
    outcomes = enforce([src], EnforceOptions(out, load_policy()))
    [outcome] = [o for o in outcomes if o.outputs]
    assert outcome.decision.action is Action.ALLOW
    assert any(n.startswith("rebuilt by rspolicy's writer: ") and "after the end" in n for n in outcome.notes)
    released = (out / image.name).read_bytes()
    assert secret not in released
    with rasterio.open(image) as a, rasterio.open(out / image.name) as b:
        assert (a.read() == b.read()).all() and a.transform == b.transform and a.crs == b.crs
