"""The gate's shared paths: one discovery for screen and enforce, pinned opens, class tags, one-line policy errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from rspolicy.cli import cli
from rspolicy.errors import ProductReadError
from rspolicy.readers.discover import FoundPackage, FoundProduct, Skipped, discover, iter_products
from rspolicy.readers.gdalopen import open_input
from rspolicy.readers.geotiff import CLASS_TAG, read_geotiff
from rspolicy.readers.xmlutil import MAX_TEXT_CHARS, parse_xml

from .conftest import REPO


def _geotiff(path: Path, gsd: float, *, dtype: str = "uint16", tags: dict[str, str] | None = None,
             size: int = 64) -> Path:
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": dtype,
               "crs": "EPSG:32650", "transform": from_origin(448_000.0, 4_417_000.0, gsd, gsd)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((1, size, size), 7, dtype=dtype))
        if tags:
            dst.update_tags(**tags)
    return path


def _decisions(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


# --- one discovery ------------------------------------------------------------------------------------------------


def test_discover_names_what_each_path_holds(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _geotiff(folder / "scene-PAN.tif", 0.8)
    (folder / "notes.txt").write_text("x")
    os.mkfifo(folder / "pipe.tif")
    found = list(discover([folder, tmp_path / "missing.tif"]))
    products = [f for f in found if isinstance(f, FoundProduct)]
    assert [p.files.main.name for p in products] == ["scene-PAN.tif"]
    assert products[0].base == folder
    skipped = {Path(s.path).name: s.reason for s in found if isinstance(s, Skipped)}
    assert "FIFO" in skipped["pipe.tif"] and "notes.txt" in skipped
    missing = found[-1]
    assert not isinstance(missing, FoundProduct | FoundPackage | Skipped)
    assert "no such file" in " ".join(missing.problems)


@pytest.mark.parametrize("command", ["screen", "enforce"])
def test_a_named_fifo_is_blocked_by_both_commands_without_opening_it(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "scene-PAN.tif"
    os.mkfifo(fifo)
    extra = ["-o", str(tmp_path / "out"), "--log", str(tmp_path / "log.jsonl")] if command == "enforce" else []
    # A subprocess with a timeout: opening a FIFO for reading would wait for a writer forever.
    proc = subprocess.run([sys.executable, "-m", "rspolicy", command, str(fifo), "--json", *extra],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 4, proc.stderr
    [decision] = _decisions(proc.stdout)
    assert decision["action"] == "block" and "FIFO" in " ".join(map(str, decision["reasons"]))  # type: ignore[arg-type]
    assert "Traceback" not in proc.stderr


def test_a_sidecar_named_alone_screens_its_image_once(tmp_path: Path) -> None:
    _geotiff(tmp_path / "scene-PAN.tif", 0.8)
    (tmp_path / "scene-PAN.tif.aux.xml").write_text(
        "<PAMDataset><Metadata><MDI key='A'>1</MDI></Metadata></PAMDataset>")
    items = list(iter_products([tmp_path / "scene-PAN.tif.aux.xml"]))
    assert len(items) == 1 and not isinstance(items[0], Skipped)
    assert items[0].raster is not None and items[0].raster.name == "scene-PAN.tif"


# --- pinned opens -------------------------------------------------------------------------------------------------


def test_open_input_reads_a_file_whose_name_is_not_utf8(tmp_path: Path) -> None:
    name = os.fsdecode(b"scene-\xff\xfe-PAN.tif")
    _geotiff(tmp_path / "plain.tif", 0.8).rename(tmp_path / name)
    with open_input(tmp_path / name) as ds:
        assert ds.width == 64 and ds.transform.a == pytest.approx(0.8)


def test_open_input_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.tif")
    with pytest.raises(ProductReadError, match="not a regular file"), open_input(tmp_path / "pipe.tif"):
        pass
    with pytest.raises(ProductReadError, match="cannot be opened"), open_input(tmp_path / "absent.tif"):
        pass


def test_open_input_consults_no_world_file(tmp_path: Path) -> None:
    image = tmp_path / "scene.tif"
    with rasterio.open(image, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, 8, 8), dtype="uint8"))
    (tmp_path / "scene.tfw").write_text("0.2\n0\n0\n-0.2\n448000\n4417000\n")
    with open_input(image) as ds:
        assert ds.transform.is_identity


# --- the class an output carries ----------------------------------------------------------------------------------


def test_class_tag_is_a_strong_hint(tmp_path: Path) -> None:
    tif = _geotiff(tmp_path / "scene.tif", 3.0, tags={CLASS_TAG: "multispectral"})
    hints = [e for e in read_geotiff(tif, "scene.tif").evidence if e.field == f"tag {CLASS_TAG}"]
    assert [(h.value, h.strength.name) for h in hints] == [("multispectral", "STRONG")]


@pytest.mark.parametrize("value", ["unknown", "PAN", "sar; drop table"])
def test_a_class_tag_naming_no_class_blocks(tmp_path: Path, value: str) -> None:
    tif = _geotiff(tmp_path / "scene.tif", 3.0, tags={CLASS_TAG: value})
    result = CliRunner().invoke(cli, ["screen", str(tif), "--json"])
    [decision] = _decisions(result.stdout)
    assert decision["action"] == "block" and result.exit_code == 4
    assert CLASS_TAG in " ".join(map(str, decision["reasons"]))  # type: ignore[arg-type]


def test_a_class_tag_cannot_loosen_complex_samples(tmp_path: Path) -> None:
    """A complex (SAR) image tagged panchromatic: conflicting strong hints make the class unknown.

    cnsa-2022 holds an unknown class to the strictest class (2.0 m at 0.6 m, coarser than SAR's 1.0 m);
    a policy that blocks an unknown class blocks it.
    """
    tif = _geotiff(tmp_path / "scene.tif", 0.6, dtype="complex64", tags={CLASS_TAG: "panchromatic"})
    result = CliRunner().invoke(cli, ["screen", str(tif), "--json"])
    [decision] = _decisions(result.stdout)
    assert (decision["product_class"], decision["action"], decision["target_gsd_m"]) == ("unknown", "resample", 2.0)
    policy = tmp_path / "block-unknown.toml"
    policy.write_text((REPO / "rules" / "cnsa-2022.toml").read_text()
                      .replace('unknown_class = "strictest"', 'unknown_class = "block"'))
    result = CliRunner().invoke(cli, ["screen", "--policy", str(policy), str(tif), "--json"])
    [decision] = _decisions(result.stdout)
    assert decision["action"] == "block", decision


def test_degraded_outputs_carry_their_decided_class(tmp_path: Path) -> None:
    tif = _geotiff(tmp_path / "scene-PAN.tif", 0.3, size=100)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["enforce", str(tif), "-o", str(out), "--log", str(tmp_path / "l.jsonl")])
    assert result.exit_code == 0, result.output  # degraded: a success
    with rasterio.open(out / "scene-PAN.tif") as ds:
        assert ds.tags()[CLASS_TAG] == "panchromatic"


# --- bounded sidecars ---------------------------------------------------------------------------------------------


def test_a_sidecar_value_longer_than_any_metadata_is_refused(tmp_path: Path) -> None:
    ok = tmp_path / "ok.xml"
    ok.write_text(f"<ProductMetaData><Note>{'x' * MAX_TEXT_CHARS}</Note></ProductMetaData>")
    parse_xml(ok)
    for where, body in (("text", f"<Note>{'x' * (MAX_TEXT_CHARS + 1)}</Note>"),
                        ("attribute", f"<Note a='{'x' * (MAX_TEXT_CHARS + 1)}'/>"),
                        ("tail", f"<Note/>{'x' * (MAX_TEXT_CHARS + 1)}")):
        bad = tmp_path / f"{where}.xml"
        bad.write_text(f"<ProductMetaData>{body}</ProductMetaData>")
        with pytest.raises(ProductReadError, match="longer than"):
            parse_xml(bad)


# --- policy errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["[[[", "limit = nan\n", "a = \"x\nb\"\n"])
def test_policy_errors_are_one_line_exit_2(tmp_path: Path, content: str) -> None:
    policy = tmp_path / "bad.toml"
    policy.write_text(content)
    tif = _geotiff(tmp_path / "scene-PAN.tif", 0.8)
    proc = subprocess.run([sys.executable, "-m", "rspolicy", "screen", str(tif), "--policy", str(policy)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rspolicy: error: --policy: ") and str(policy) in lines[0]


def test_a_gf3_meta_shared_by_two_polarisations_is_delivered_with_both(tmp_path: Path) -> None:
    """The meta.xml of a dual-polarisation GF-3 product is named by the scene, not by either image."""
    from tests.conftest import SAMPLE_DATA

    src = SAMPLE_DATA / "gf3_ufs_l2"
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["enforce", "--json", str(src), "-o", str(out), "--log",
                                      str(tmp_path / "log.jsonl")])
    assert result.exit_code == 0, result.output
    decisions = _decisions(result.stdout)
    assert len(decisions) == 2 and all(d["action"] == "allow" and not d["warnings"] for d in decisions)
    meta = next(src.glob("*.meta.xml"))
    # Delivered as it is, but for the policy's obligations stamped as the root's last element.
    delivered = (out / meta.name).read_text()
    stamp = re.search(r"<RSPolicyObligations>.*</RSPolicyObligations>\n", delivered)
    assert stamp is not None
    assert delivered.replace(stamp[0], "").encode() == meta.read_bytes()
