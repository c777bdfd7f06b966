"""``rspolicy screen`` through the real click group, on the bundled samples and on bad input."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner, Result

from rspolicy.cli import cli
from rspolicy.samples.gf_optical import (
    OpticalScene,
    linear_rpc,
    synthetic_pixels,
    write_image,
    write_rpb,
    write_sidecar,
)

from .conftest import SAMPLE_DATA


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sample_generate", SAMPLE_DATA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXPECTED: dict[str, str] = _generator().EXPECTED


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["screen", *args], catch_exceptions=False)


def records(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _expected_for(path: str) -> str | None:
    rel = path.split("sample_data/", 1)[-1]
    for key, action in EXPECTED.items():
        if rel == key or (key.endswith("/") and rel.startswith(key)):
            return action
    return None


def test_every_sample_gets_its_expected_decision() -> None:
    before = _digest_tree(SAMPLE_DATA)
    result = run("--json", str(SAMPLE_DATA))
    got = {r["path"]: r for r in records(result)}
    assert len(got) == len(EXPECTED)
    for path, record in got.items():
        assert _expected_for(path) == record["action"], (path, record["reasons"])
        assert record["policy"]["name"] == "cnsa-2022" and len(record["policy"]["sha256"]) == 64
    assert result.exit_code == 3  # some resample, none blocked
    assert _digest_tree(SAMPLE_DATA) == before  # screening writes nothing, not even .aux.xml


def test_sample_classes_and_resolutions() -> None:
    got = {r["path"].split("/")[-1]: r for r in records(run("--json", str(SAMPLE_DATA)))}
    pan1 = got["GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-PAN1.tiff"]
    # The RPCs are 0.81 m at the centre; at the northern edge, pixels along x are a hair finer.
    assert (pan1["product_class"], pan1["gsd_m"], pan1["satellite"]) == ("panchromatic", pytest.approx(0.81, rel=1e-4),
                                                                         "GF2")
    assert pan1["gsd_m"] <= 0.81
    mss1 = got["GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-MSS1.tiff"]
    assert (mss1["product_class"], mss1["gsd_m"]) == ("multispectral", pytest.approx(3.24, rel=1e-4))
    sl = got["GF3_KAS_SL_012345_E116.4_N39.9_20210101_L2_HH_L20000123456.tiff"]
    assert (sl["product_class"], sl["gsd_m"], sl["target_gsd_m"]) == ("sar", 0.5, 1.0)
    slc = got["GF3_SAY_SL_016789_E121.5_N31.2_20210615_L1A_HH_L10000234567.tiff"]
    assert slc["product_class"] == "sar" and slc["action"] == "resample"
    assert any(e["field"] == "DataType" and e["value"] == "sar" for e in slc["evidence"])
    pan03 = got["SVN1-01_20230315_L2A0001234567_1112300000001-PAN.tiff"]
    assert (pan03["gsd_m"], pan03["target_gsd_m"]) == (pytest.approx(0.3), 0.5)
    boundary = got["SV1-01_20200601_L2A0000123456_1012000000001-PAN.tiff"]
    assert (boundary["gsd_m"], boundary["action"]) == (0.5, "allow")
    plain = got["rgbn_epsg4326.tif"]
    assert plain["product_class"] == "multispectral" and 0.8 < plain["gsd_m"] < 0.9


def test_package_members_are_named_with_bang() -> None:
    package = next(SAMPLE_DATA.glob("*.tar.gz"))
    result = run("--json", str(package))
    paths = [r["path"] for r in records(result)]
    assert len(paths) == 2 and all(p.startswith(f"{package}!") for p in paths)
    assert result.exit_code == 0
    assert "order.xml: processing-order file" in result.stderr


def test_generator_reproduces_the_bundled_decisions(tmp_path: Path) -> None:
    _generator().generate(tmp_path)
    fresh = {r["path"].replace(str(tmp_path), ""): (r["action"], r["product_class"], r["gsd_m"])
             for r in records(run("--json", str(tmp_path)))}
    bundled = {r["path"].replace(str(SAMPLE_DATA), ""): (r["action"], r["product_class"], r["gsd_m"])
               for r in records(run("--json", str(SAMPLE_DATA)))}
    assert fresh == bundled


def test_table_and_explain() -> None:
    target = str(SAMPLE_DATA / "svn1_pan_0.3m")
    table = run(target)
    assert "RESAMPLE" in table.stdout and "0.5 m" in table.stdout and table.exit_code == 3
    explain = run("--explain", target)
    assert "rule cnsa-2022/panchromatic" in explain.stdout
    assert "ImageGSD" in explain.stdout and "geotransform" in explain.stdout


def test_exit_zero_when_all_allowed() -> None:
    assert run(str(SAMPLE_DATA / "gf2_pms1_l1a")).exit_code == 0


@pytest.mark.parametrize("args", [[], ["--policy", "no-such-policy", "x.tif"], ["--nope", "x.tif"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["screen", *args])
    assert result.exit_code == 2


def test_policy_file_option(tmp_path: Path) -> None:
    policy = tmp_path / "strict.toml"
    policy.write_text((SAMPLE_DATA.parent / "rules" / "cnsa-2022.toml").read_text()
                      .replace('name = "cnsa-2022"', 'name = "strict"').replace('{ "<" = 0.5 }', '{ "<" = 0.9 }')
                      .replace("target_m = 0.5\n", "target_m = 0.9\n"))
    result = run("--json", "--policy", str(policy), str(SAMPLE_DATA / "gf2_pms1_l1a"))
    pan = next(r for r in records(result) if r["product_class"] == "panchromatic")
    assert pan["action"] == "resample" and pan["target_gsd_m"] == 0.9 and pan["policy"]["name"] == "strict"
    assert result.exit_code == 3


# --- bad input: a blocked record naming the file and the problem, exit 4, never a traceback ---------------


def _l1a(folder: Path, name: str = "GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-PAN1", gsd: float = 0.81,
         sidecar: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    scene = OpticalScene(width=64, height=64, image_gsd=str(gsd))
    xml = folder / f"{name}.xml"
    if sidecar is None:
        write_sidecar(xml, scene)
    else:
        xml.write_text(sidecar)
    write_rpb(folder / f"{name}.rpb", linear_rpc(scene.center_lon, scene.center_lat, gsd, 64, 64))
    return write_image(folder / f"{name}.tiff", synthetic_pixels(1, 64, 64))


def _only(result: Result) -> dict[str, Any]:
    [record] = records(result)
    return record


def test_garbage_tiff_is_blocked(tmp_path: Path) -> None:
    bad = tmp_path / "scene.tif"
    bad.write_bytes(b"II*\x00 this is not a tiff")
    result = run("--json", str(bad))
    record = _only(result)
    assert record["action"] == "block" and result.exit_code == 4
    assert str(bad) in record["reasons"][0] and "not a readable raster" in record["reasons"][0]


def test_missing_file_is_blocked(tmp_path: Path) -> None:
    result = run("--json", str(tmp_path / "absent.tif"))
    assert _only(result)["action"] == "block" and "no such file" in _only(result)["reasons"][0]
    assert result.exit_code == 4


def test_malformed_sidecar_blocks_the_product(tmp_path: Path) -> None:
    image = _l1a(tmp_path, sidecar="<ProductMetaData><ImageGSD>0.8")
    result = run("--json", str(image))
    record = _only(result)
    assert record["action"] == "block" and "not well-formed XML" in " ".join(record["reasons"])
    assert result.exit_code == 4


def test_non_numeric_gsd_blocks(tmp_path: Path) -> None:
    image = _l1a(tmp_path)
    xml = image.with_suffix(".xml")
    xml.write_text(xml.read_text().replace("<ImageGSD>0.81</ImageGSD>", "<ImageGSD>0,81</ImageGSD>"))
    record = _only(run("--json", str(image)))
    assert record["action"] == "block" and any("ImageGSD" in r and xml.name in r for r in record["reasons"])


def test_xml_bomb_is_refused(tmp_path: Path) -> None:
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            "<ProductMetaData><SatelliteID>&lol2;</SatelliteID></ProductMetaData>")
    record = _only(run("--json", str(_l1a(tmp_path, sidecar=bomb))))
    assert record["action"] == "block" and "unsafe XML" in " ".join(record["reasons"])


def test_sidecar_and_geotransform_disagree_finest_wins(tmp_path: Path) -> None:
    write_sidecar(tmp_path / "SV1-01_20200601_L2A0000123456_1012000000001-PAN.xml",
                  OpticalScene(satellite="SV1-01", sensor="PAN", bands="1", image_gsd="2.0", width=64, height=64))
    from affine import Affine
    from rasterio.crs import CRS

    image = write_image(tmp_path / "SV1-01_20200601_L2A0000123456_1012000000001-PAN.tiff",
                        synthetic_pixels(1, 64, 64), crs=CRS.from_epsg(32650),
                        transform=Affine(0.3, 0, 448000, 0, -0.3, 4417000))
    record = _only(run("--json", str(image)))
    assert record["gsd_m"] == pytest.approx(0.3) and record["action"] == "resample"
    assert any("disagrees" in w for w in record["warnings"])


def test_no_class_evidence_is_held_to_the_strictest_class_or_blocked(tmp_path: Path) -> None:
    from affine import Affine
    from rasterio.crs import CRS

    image = write_image(tmp_path / "scene.tif", synthetic_pixels(1, 32, 32), crs=CRS.from_epsg(32650),
                        transform=Affine(10, 0, 448000, 0, -10, 4417000))
    result = run("--json", str(image))
    record = _only(result)
    # cnsa-2022 holds an unknown class to the strictest class: 10 m is coarser than every limit.
    assert record["product_class"] == "unknown" and record["action"] == "allow" and result.exit_code == 0
    assert any("no evidence of the product class" in r for r in record["reasons"])
    policy = tmp_path / "block-unknown.toml"
    text = (SAMPLE_DATA.parent / "rules" / "cnsa-2022.toml").read_text()
    policy.write_text(text.replace('unknown_class = "strictest"', 'unknown_class = "block"'))
    result = run("--json", "--policy", str(policy), str(image))
    record = _only(result)
    assert record["product_class"] == "unknown" and record["action"] == "block" and result.exit_code == 4


def test_no_resolution_evidence_is_blocked(tmp_path: Path) -> None:
    image = _l1a(tmp_path)
    image.with_suffix(".rpb").unlink()
    xml = image.with_suffix(".xml")
    xml.write_text(xml.read_text().replace("<ImageGSD>0.81</ImageGSD>", "<ImageGSD />"))
    record = _only(run("--json", str(image)))
    assert record["gsd_m"] is None and record["action"] == "block"
    assert any("no evidence of the ground resolution" in r for r in record["reasons"])


def test_sidecar_path_screens_its_product(tmp_path: Path) -> None:
    image = _l1a(tmp_path)
    record = _only(run("--json", str(image.with_suffix(".xml"))))
    assert record["path"] == str(image) and record["action"] == "allow"


def test_order_file_alone_is_blocked_not_crashed(tmp_path: Path) -> None:
    from rspolicy.samples.gf_optical import order_xml

    order = tmp_path / "order.xml"
    order.write_text(order_xml())
    result = run("--json", str(order))
    assert _only(result)["action"] == "block" and "not a product" in _only(result)["reasons"][0]


def _tar(path: Path, members: dict[str, bytes], *, symlink: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo("link.tiff")
            info.type, info.linkname = tarfile.SYMTYPE, symlink
            tar.addfile(info)
    return path


def test_package_with_escaping_member_is_blocked(tmp_path: Path) -> None:
    image = _l1a(tmp_path / "src")
    package = _tar(tmp_path / "pkg.tar.gz", {image.name: image.read_bytes(), "../evil.tiff": b"x"})
    result = run("--json", str(package))
    record = _only(result)
    assert record["action"] == "block" and "evil.tiff" in record["reasons"][0]
    assert not (tmp_path / "evil.tiff").exists() and result.exit_code == 4


def test_package_with_symlink_is_blocked(tmp_path: Path) -> None:
    image = _l1a(tmp_path / "src")
    result = run("--json", str(_tar(tmp_path / "pkg.tar.gz", {image.name: image.read_bytes()}, symlink="/etc/passwd")))
    assert _only(result)["action"] == "block" and result.exit_code == 4


def test_truncated_package_is_blocked(tmp_path: Path) -> None:
    image = _l1a(tmp_path / "src")
    package = _tar(tmp_path / "pkg.tar.gz", {image.name: image.read_bytes()})
    package.write_bytes(package.read_bytes()[:200])
    result = run("--json", str(package))
    assert _only(result)["action"] == "block" and result.exit_code == 4


def test_one_bad_product_does_not_hide_the_good_ones(tmp_path: Path) -> None:
    good = _l1a(tmp_path / "good")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"garbage")
    result = run("--json", str(good), str(bad))
    assert [r["action"] for r in records(result)] == ["allow", "block"] and result.exit_code == 4


@pytest.fixture
def no_pixel_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*_: object, **__: object) -> np.ndarray:
        raise AssertionError("screen read pixels")

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", refuse)
    yield


def test_full_size_l1a_is_screened_from_its_header(tmp_path: Path, no_pixel_reads: None) -> None:
    # A GF-2 PAN L1A is 29200 x 27620 uint16 (1.6 GB); SPARSE_OK writes the header without the pixels.
    name = "GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-PAN1"
    scene = OpticalScene(width=29200, height=27620)
    write_sidecar(tmp_path / f"{name}.xml", scene)
    write_rpb(tmp_path / f"{name}.rpb", linear_rpc(scene.center_lon, scene.center_lat, 0.81, 29200, 27620))
    with rasterio.open(tmp_path / f"{name}.tiff", "w", driver="GTiff", width=29200, height=27620, count=1,
                       dtype="uint16", sparse_ok=True, tiled=True) as dst:
        dst.write(np.zeros((1, 16, 16), dtype="uint16"), window=((0, 16), (0, 16)))
    record = _only(run("--json", str(tmp_path / f"{name}.tiff")))
    # Over 22 km of a linear RPC the poleward edge is a hair finer than the centre: the finest wins.
    assert record["action"] == "allow" and record["gsd_m"] == pytest.approx(0.81, rel=1e-2)
    widths = {e["value"] for e in record["evidence"] if e["fact"] == "width"}
    assert widths == {29200}


THREADS_AFTER_IMPORT = (
    "import os, rspolicy.cli, numpy; "
    "print(len(os.listdir('/proc/self/task')), os.environ['OPENBLAS_NUM_THREADS'])"
)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through Linux's /proc")
@pytest.mark.parametrize("user_setting", [None, "2"])
def test_command_process_runs_openblas_single_threaded_unless_told(user_setting: str | None) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    if user_setting is not None:
        env["OPENBLAS_NUM_THREADS"] = user_setting
    done = subprocess.run([sys.executable, "-c", THREADS_AFTER_IMPORT], env=env, capture_output=True, text=True,
                          check=True, timeout=120)
    threads, setting = done.stdout.split()
    if user_setting is None:
        assert (threads, setting) == ("1", "1")  # no idle OpenBLAS threads beside the main one
    else:
        assert setting == user_setting
