"""``rspolicy enforce``: degraded outputs that are compliant, georeferenced and atomic."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner, Result
from rasterio.crs import CRS
from rasterio.transform import RPCTransformer

from rspolicy.cli import cli
from rspolicy.enforce import STAGE_PREFIX, EnforceOptions, enforce
from rspolicy.model import Action
from rspolicy.policy import load_policy
from rspolicy.samples.gf_optical import (
    OpticalScene,
    linear_rpc,
    synthetic_pixels,
    write_image,
    write_rpb,
    write_sidecar,
)

from .conftest import SAMPLE_DATA

PAN03 = SAMPLE_DATA / "svn1_pan_0.3m"


def default_log(tmp_path: Path) -> Path:
    """The log enforce writes by default inside a test (see conftest's private home)."""
    return tmp_path / "state" / "rspolicy" / "decisions.jsonl"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["enforce", *args], catch_exceptions=False)


def screen_json(*paths: Path) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, ["screen", "--json", *map(str, paths)], catch_exceptions=False)
    return [json.loads(line) for line in result.stdout.splitlines()]


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_sample_products_come_out_compliant(tmp_path: Path) -> None:
    before = tree(SAMPLE_DATA)
    result = run(str(SAMPLE_DATA), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0
    assert tree(SAMPLE_DATA) == before  # inputs untouched
    records = screen_json(tmp_path / "out")
    assert len(records) == 15
    assert {r["action"] for r in records} == {"allow"}
    assert not list((tmp_path / "out").glob(f"{STAGE_PREFIX}*"))


def test_pan_03_degraded_exactly(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(str(PAN03), "-o", str(out)).exit_code == 0
    src_tif = next(PAN03.glob("*.tiff"))
    dst_tif = out / src_tif.name
    with rasterio.open(src_tif) as src, rasterio.open(dst_tif) as dst:
        assert dst.transform.a == pytest.approx(0.5, abs=1e-12) and dst.transform.e == pytest.approx(-0.5, abs=1e-12)
        assert (dst.transform.c, dst.transform.f) == (src.transform.c, src.transform.f)  # origin kept
        assert (dst.width, dst.height) == (300, 300)  # 500 px at 0.3 m -> 300 px at 0.5 m
        assert dst.crs == src.crs and dst.dtypes == src.dtypes
        tags = dst.tags()
        assert tags["RSPOLICY_TARGET_GSD_M"] == "0.5" and tags["RSPOLICY_POLICY"].startswith("cnsa-2022")
        assert len(tags["RSPOLICY_POLICY_SHA256"]) == 64 and tags["RSPOLICY_DECISION_ID"]
        # the first output pixel is the exact mean of the 5/3 x 5/3 input area it covers
        a = src.read(1, window=((0, 2), (0, 2))).astype(float)
        w = np.array([1.0, 2 / 3])
        expected = (w[:, None] * w[None, :] * a).sum() / (w.sum() ** 2)
        assert abs(int(dst.read(1)[0, 0]) - expected) <= 0.5
    src_xml = next(PAN03.glob("*.xml")).read_text().splitlines()
    dst_text = (out / next(PAN03.glob("*.xml")).name).read_text()
    # The policy's obligations are stamped as the root's last element, on a line of their own.
    stamp = re.search(r"<RSPolicyObligations>.*</RSPolicyObligations>\n", dst_text)
    assert stamp is not None and "<Credit>Data provided by China National Space Administration</Credit>" in stamp[0]
    dst_xml = dst_text.replace(stamp[0], "").splitlines()
    changed = {a.strip().split(">")[0] for a, b in zip(src_xml, dst_xml, strict=True) if a != b}
    assert changed == {"<ImageGSD", "<WidthInPixels", "<HeightInPixels"}
    assert "<ImageGSD>0.5</ImageGSD>" in "\n".join(dst_xml)
    assert "<WidthInPixels>300</WidthInPixels>" in "\n".join(dst_xml)


def test_gf3_sidecar_rewritten(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(str(SAMPLE_DATA / "gf3_sl_l2"), "-o", str(out)).exit_code == 0  # degraded
    meta = next(out.glob("*.meta.xml")).read_text()
    assert "<widthspace>1</widthspace>" in meta and "<heightspace>1</heightspace>" in meta
    assert "<NominalResolution>1</NominalResolution>" in meta
    assert "<width>200</width>" in meta and "<height>200</height>" in meta


def test_complex_slc_is_averaged_in_intensity(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(str(SAMPLE_DATA / "gf3_sl_slc"), "-o", str(out)).exit_code == 0  # degraded
    with rasterio.open(next(out.glob("*.tiff"))) as dst:
        assert dst.dtypes[0] == "float32"
        assert "intensity" in dst.tags()["RSPOLICY_RESAMPLING"]
        # speckle of N(0,100) I and Q: mean intensity 2 * 100**2
        assert float(dst.read(1).mean()) == pytest.approx(20000, rel=0.1)


def _l1a_pan(folder: Path, gsd: float, *, rpb_from: Path | None = None, size: int = 300) -> Path:
    name = "GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-PAN1"
    folder.mkdir(parents=True, exist_ok=True)
    scene = OpticalScene(width=size, height=size, image_gsd=str(gsd), center_lon=116.5, center_lat=39.9)
    write_sidecar(folder / f"{name}.xml", scene)
    if rpb_from is None:
        write_rpb(folder / f"{name}.rpb", linear_rpc(116.5, 39.9, gsd, size, size, height_off=50.0))
    else:
        shutil.copy(rpb_from, folder / f"{name}.rpb")
    return write_image(folder / f"{name}.tiff", synthetic_pixels(1, size, size))


def _check_rpc_ground_points(src: Path, dst: Path, factor: Fraction) -> None:
    """A ground point projects to the same place (within a fraction of an output pixel) before and after.

    ``factor`` is the least the plan may use; the factor checked is the one the output records (a measured
    spacing a hair finer than the nominal one takes the next factor the kernel can do exactly).
    """
    with rasterio.open(src) as s, rasterio.open(dst) as d:
        assert d.rpcs is not None
        row_text, col_text = d.tags()["RSPOLICY_FACTORS"].removeprefix("row ").split(", col ")
        assert Fraction(row_text) == Fraction(col_text) and factor <= Fraction(row_text) <= factor * Fraction(101, 100)
        factor = Fraction(row_text)
        with RPCTransformer(s.rpcs) as ts, RPCTransformer(d.rpcs) as td:
            rows, cols = np.meshgrid(np.linspace(10, s.height - 10, 5), np.linspace(10, s.width - 10, 5))
            lons, lats = ts.xy(rows.ravel(), cols.ravel(), zs=[s.rpcs.height_off] * rows.size, offset="ul")
            r_out, c_out = td.rowcol(lons, lats, zs=[s.rpcs.height_off] * rows.size, op=lambda x: x)
            expected_r = rows.ravel() / float(factor)
            expected_c = cols.ravel() / float(factor)
            assert np.max(np.abs(np.asarray(r_out) - expected_r)) < 0.01
            assert np.max(np.abs(np.asarray(c_out) - expected_c)) < 0.01


def test_rpc_only_l1a_is_rescaled(tmp_path: Path) -> None:
    src = _l1a_pan(tmp_path / "in", 0.3)
    out = tmp_path / "out"
    assert run(str(src), "-o", str(out)).exit_code == 0
    dst = out / src.name
    _check_rpc_ground_points(src, dst, Fraction(5, 3))
    rpb = dst.with_suffix(".rpb").read_text()
    assert "lineScale" in rpb and rpb != src.with_suffix(".rpb").read_text()
    [record] = screen_json(dst)
    assert record["action"] == "allow" and 0.5 <= record["gsd_m"] <= 0.5 * 1.01


def test_real_rpc_is_rescaled(tmp_path: Path, real_metadata: Path) -> None:
    # The real GF-2 PAN RPCs (0.8 m) on an image whose sidecar claims 0.4 m: the finest (0.4 m) decides.
    src = _l1a_pan(tmp_path / "in", 0.4, rpb_from=real_metadata / "gf2_pms1_pan_l1a.rpb", size=400)
    out = tmp_path / "out"
    assert run(str(src), "-o", str(out)).exit_code == 0
    _check_rpc_ground_points(src, out / src.name, Fraction(5, 4))


def test_geographic_and_gcp_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(str(SAMPLE_DATA / "plain_geotiff"), "-o", str(out)).exit_code == 0  # degraded
    with rasterio.open(out / "rgbn_epsg4326.tif") as d, \
            rasterio.open(SAMPLE_DATA / "plain_geotiff" / "rgbn_epsg4326.tif") as s:
        factor = d.transform.a / s.transform.a
        assert factor >= 2.0 / 0.8550586139 and d.transform.a == pytest.approx(s.transform.a * factor)
        assert (d.transform.c, d.transform.f) == (s.transform.c, s.transform.f)
        assert d.count == 4 and d.crs == CRS.from_epsg(4326)


def test_failure_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSPOLICY_ISOLATION", "off")  # the spies below count in this process
    from rspolicy import degrade

    calls = {"n": 0}
    original = degrade._write

    def failing(dst: Any, piece: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        original(dst, piece)

    monkeypatch.setattr(degrade, "STRIP_BYTES", 20_000)  # many strips
    monkeypatch.setattr(degrade, "_write", failing)
    out = tmp_path / "out"
    result = run(str(PAN03), "-o", str(out))
    # A full disk is not a policy decision: the product failed (exit 1), and the log says so as a failure.
    assert result.exit_code == 1 and "No space left" in result.stdout and result.stdout.startswith("FAILED")
    assert calls["n"] == 2
    assert [p for p in out.rglob("*") if p.is_file()] == []  # no partial file, no stage left
    [record] = [json.loads(line) for line in default_log(tmp_path).read_text().splitlines()]
    assert record["event"] == "failed" and "No space left" in record["error"]
    assert record["result"]["action"] == "resample"  # the decision taken before the failure, for the auditor


def test_outputs_are_on_disk_and_recorded_before_they_are_moved_into_place(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSPOLICY_ISOLATION", "off")  # the spies below count in this process
    import os

    import rspolicy.enforce as enforce_module

    flushed: set[str] = set()
    renamed: list[str] = []
    recorded: list[str] = []
    original_fsync, original_replace = enforce_module._fsync, os.replace

    def fsync(path: Path) -> None:
        original_fsync(path)
        flushed.add(os.fspath(path))

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        assert os.fspath(src) in flushed, f"{src} moved into place before it was flushed"
        assert recorded, f"{src} moved into place before its record was written"
        assert "dst_dir_fd" in kwargs  # renamed relative to the output folder, never through a path
        renamed.append(os.fspath(dst))
        original_replace(src, dst, **kwargs)

    def record(outcome: Any) -> None:
        assert not renamed and all(not Path(o.path).exists() for o in outcome.outputs)
        recorded.extend(o.path for o in outcome.outputs)

    monkeypatch.setattr(enforce_module, "_fsync", fsync)
    monkeypatch.setattr(enforce_module.os, "replace", replace)
    out = tmp_path / "out"
    [outcome] = enforce([PAN03], EnforceOptions(out, load_policy()), record=record)
    assert outcome.decision.action is Action.RESAMPLE
    written = sorted(os.fspath(p) for p in out.rglob("*") if p.is_file())
    assert sorted(renamed) == sorted(Path(w).name for w in written) and len(written) == 2  # image and sidecar
    assert sorted(recorded) == written
    # The digests computed beside the re-screen are those of the files now in place.
    assert {o.path: o.sha256 for o in outcome.outputs} == {
        w: hashlib.sha256(Path(w).read_bytes()).hexdigest() for w in written}


def test_rescreen_guard_deletes_a_leaking_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rspolicy.enforce as enforce_module

    def stale_copy(src: Path, dst: Path, change: Any) -> bool:
        shutil.copy(src, dst)  # a buggy writer that leaves ImageGSD 0.3 in the sidecar
        return True

    monkeypatch.setattr(enforce_module, "rewrite_sidecar", stale_copy)
    out = tmp_path / "out"
    result = run("--json", str(PAN03), "-o", str(out))
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["action"] == "block" and "failed its re-screen" in record["reasons"][-1]
    assert record["target_gsd_m"] is None  # a blocked product has no target
    # The re-screen names the staged files by their names in the output, as a recipient would see them.
    sidecar = next(PAN03.glob("*.xml")).name
    assert f"from {sidecar} ImageGSD" in record["reasons"][-1], record["reasons"][-1]
    assert result.exit_code == 4
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_rerun_skips_completed_and_foreign_outputs_fail(tmp_path: Path) -> None:
    out = tmp_path / "out"
    log = default_log(tmp_path)
    assert run(str(PAN03), "-o", str(out)).exit_code == 0
    first, records = tree(out), log.read_text()
    again = run(str(PAN03), "-o", str(out))
    assert again.exit_code == 0 and again.stdout.startswith("SKIPPED")
    assert tree(out) == first and log.read_text() == records  # no new decision
    # The same outputs under another log are not this log's: the product fails, nothing is replaced.
    other = run(str(PAN03), "-o", str(out), "--log", str(tmp_path / "other.jsonl"))
    assert other.exit_code == 1 and "--force" in other.stdout and other.stdout.startswith("FAILED")
    assert tree(out) == first
    forced = run(str(PAN03), "-o", str(out), "--force")
    assert forced.exit_code == 0 and forced.stdout.startswith("DEGRADED")
    assert len(log.read_text().splitlines()) == len(records.splitlines()) + 2  # decision and released


def test_package_in_package_out(tmp_path: Path) -> None:
    src = tmp_path / "src" / "GF2_PKG"
    _l1a_pan(src, 0.3)
    blocked = src / "mystery.tif"  # no georeferencing: no evidence of its resolution, blocked
    write_image(blocked, synthetic_pixels(1, 16, 16))
    (src / "order.xml").write_text("<InterfaceFile><FileBody/></InterfaceFile>")
    package = tmp_path / "delivery.tar.gz"
    with tarfile.open(package, "w:gz") as tar:
        tar.add(src, arcname="GF2_PKG")
    before = hashlib.sha256(package.read_bytes()).hexdigest()
    out = tmp_path / "out"
    result = run("--json", str(package), "-o", str(out))
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["action"] for r in records) == ["block", "resample"] and result.exit_code == 4
    with tarfile.open(out / "delivery.tar.gz") as tar:
        names = sorted(tar.getnames())
    stem = "GF2_PKG/GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-PAN1"
    assert names == [f"{stem}.rpb", f"{stem}.tiff", f"{stem}.xml"]
    assert hashlib.sha256(package.read_bytes()).hexdigest() == before
    delivered = screen_json(out / "delivery.tar.gz")
    assert [r["action"] for r in delivered] == ["allow"]


def test_cog_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = tree(SAMPLE_DATA)
    assert run(str(SAMPLE_DATA / "gf3_sl_l2"), "-o", str(out), "--format", "cog").exit_code == 0
    with rasterio.open(next(out.glob("*.tiff"))) as d:
        assert d.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert d.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"  # integer amplitude
        assert d.res == (1.0, 1.0)
        assert "amplitude" in d.tags()["RSPOLICY_RESAMPLING"] and d.tags()["RSPOLICY_DECISION_ID"]
    # the image, its sidecar, and nothing else: no .part, no temporary folder, no .aux.xml
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 and names[0].endswith(".meta.xml") and names[1].endswith(".tiff")
    assert tree(SAMPLE_DATA) == before


def test_hdf5_needing_resample_is_blocked(tmp_path: Path) -> None:
    policy = tmp_path / "coarse.toml"
    policy.write_text((SAMPLE_DATA.parent / "rules" / "cnsa-2022.toml").read_text()
                      .replace('name = "cnsa-2022"', 'name = "coarse"')
                      .replace('class = "multispectral", gsd_m = { "<" = 2.0 }',
                               'class = "multispectral", gsd_m = { "<" = 500.0 }')
                      .replace("target_m = 2.0", "target_m = 500.0", 1))
    outcomes = enforce([SAMPLE_DATA / "fy3d_mersi"], EnforceOptions(tmp_path / "out", load_policy(policy)))
    assert [o.decision.action for o in outcomes] == [Action.BLOCK]
    assert "HDF5" in outcomes[0].decision.reasons[-1]
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))
