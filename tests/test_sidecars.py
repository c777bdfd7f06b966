"""Rewritten sidecars state the degraded grid's true spacing, and read back through the project's readers."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import pytest

from rspolicy.classify import classify
from rspolicy.degrade import DegradePlan, RasterOutput
from rspolicy.model import Evidence, Fact, ProductClass, ProductEvidence
from rspolicy.readers.cbers import read_cbers_sidecar
from rspolicy.readers.gf3_sar import read_gf3_sidecar
from rspolicy.readers.gf_optical import read_gf_optical_sidecar
from rspolicy.readers.hy import read_hy_sidecar
from rspolicy.samples.cbers import write_cbers_prdf
from rspolicy.samples.gf3 import write_gf3_meta
from rspolicy.samples.gf_optical import OpticalScene, write_sidecar
from rspolicy.samples.hdf5 import write_hy1c_czi
from rspolicy.sidecars import GridChange, rewrite_sidecar

# Far-range incidence of the sample GF-3 sidecar (rspolicy.samples.gf3 default), degrees.
GF3_FAR_INCIDENCE = 21.663930


def _change(plan: DegradePlan, width: int, height: int, dtype: str = "uint16") -> GridChange:
    return GridChange.of(plan, RasterOutput(Path("out.tiff"), width, height, dtype, None))


def _values(evidence: list[Evidence], fact: Fact) -> dict[str, object]:
    return {e.field: e.value for e in evidence if e.fact is fact}


def _class(evidence: list[Evidence], source: Path) -> ProductClass:
    product = ProductEvidence(str(source), None, (source,), tuple(evidence))
    return classify(product).classification.product_class


def test_optical_image_gsd_is_the_finer_output_spacing(tmp_path: Path) -> None:
    src = write_sidecar(tmp_path / "GF2_PMS1_PAN.xml", OpticalScene(image_gsd="0.3", width=1000, height=900))
    plan = DegradePlan(Fraction(5, 3), Fraction(8, 5), 0.32, 0.3, 0.5, None)  # 0.512 m x 0.5 m
    change = _change(plan, 625, 540)
    dst = tmp_path / "out" / src.name
    dst.parent.mkdir()
    assert rewrite_sidecar(src, dst, change)
    evidence = read_gf_optical_sidecar(dst, str(dst))
    assert _values(evidence, Fact.GSD)["ImageGSD"] == pytest.approx(0.5, abs=1e-9)
    assert _values(evidence, Fact.WIDTH)["WidthInPixels"] == 625
    assert _values(evidence, Fact.HEIGHT)["HeightInPixels"] == 540
    assert _class(evidence, dst) is ProductClass.PANCHROMATIC
    # Only the grid fields changed: every other line is byte-identical.
    old, new = src.read_text().splitlines(), dst.read_text().splitlines()
    assert [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b] == [
        i for i, line in enumerate(old) if "ImageGSD" in line or "InPixels" in line]


def test_hy_resolution_and_image_gsd_are_the_output_spacing(tmp_path: Path) -> None:
    _, src = write_hy1c_czi(tmp_path, resolution_m=50, image_gsd=50)
    plan = DegradePlan(Fraction(2), Fraction(12, 5), 50.0, 50.0, 100.0, None)  # 120 m x 100 m
    dst = tmp_path / "out.xml"
    assert rewrite_sidecar(src, dst, _change(plan, 7, 8))
    gsd = _values(read_hy_sidecar(dst, str(dst)), Fact.GSD)
    assert gsd["Resolution"] == pytest.approx(100.0) and gsd["ImageGSD"] == pytest.approx(100.0)
    assert _class(read_hy_sidecar(dst, str(dst)), dst) is ProductClass.MULTISPECTRAL


def test_cbers_pixel_sizes_per_axis(tmp_path: Path) -> None:
    src = write_cbers_prdf(tmp_path / "c.xml", columns=1000, lines=900, pixel_size=2.0)
    plan = DegradePlan(Fraction(17, 8), Fraction(2), 2.0, 2.0, 4.0, None)  # 4 m across, 4.25 m along
    dst = tmp_path / "out.xml"
    assert rewrite_sidecar(src, dst, _change(plan, 500, 424))
    evidence = read_cbers_sidecar(dst, str(dst))
    gsd = _values(evidence, Fact.GSD)
    assert gsd["image/horizontalPixelSize"] == pytest.approx(4.0, abs=1e-9)
    assert gsd["image/verticalPixelSize"] == pytest.approx(4.25, abs=1e-9)
    assert _values(evidence, Fact.WIDTH)["image/columns"] == 500
    assert _class(evidence, dst) is ProductClass.PANCHROMATIC


def _gf3_slc(tmp_path: Path) -> tuple[Path, float]:
    slant = 0.3
    src = write_gf3_meta(tmp_path / "GF3.meta.xml", product_type="SLC", product_level="1A", widthspace=slant,
                         heightspace=0.8, nominal_resolution=1.0, width=4000, height=5000)
    ground = slant / math.sin(math.radians(GF3_FAR_INCIDENCE))
    return src, ground


def test_gf3_intensity_becomes_a_detected_product_with_ground_spacing(tmp_path: Path) -> None:
    src, ground = _gf3_slc(tmp_path)
    plan = DegradePlan(Fraction(5, 4), Fraction(37, 30), ground, 0.8, 1.0, "intensity")
    dst = tmp_path / "out.meta.xml"
    assert rewrite_sidecar(src, dst, _change(plan, 3244, 4000, "float32"))
    text = dst.read_text()
    assert "<productType>SLP</productType>" in text and "<imagebit>32bit</imagebit>" in text
    evidence = read_gf3_sidecar(dst, str(dst))
    gsd = _values(evidence, Fact.GSD)
    assert gsd["imageinfo/widthspace"] == pytest.approx(plan.output_x_m, abs=1e-8)
    assert gsd["imageinfo/heightspace"] == pytest.approx(plan.output_y_m, abs=1e-9) == pytest.approx(1.0)
    assert _values(evidence, Fact.PRODUCT_TYPE)["productinfo/productType"] == "SLP"
    # No longer read as slant range: the spacing is not divided by the incidence again.
    assert [e.fact for e in evidence if e.field == "imageinfo/widthspace"] == [Fact.GSD]
    assert _values(evidence, Fact.NOMINAL_RESOLUTION)["productinfo/NominalResolution"] >= 1.0  # type: ignore[operator]
    assert _class(evidence, dst) is ProductClass.SAR


def test_gf3_coherent_stays_complex_in_slant_range(tmp_path: Path) -> None:
    src, ground = _gf3_slc(tmp_path)
    plan = DegradePlan(Fraction(5, 4), Fraction(37, 30), ground, 0.8, 1.0, "coherent")
    dst = tmp_path / "out.meta.xml"
    assert rewrite_sidecar(src, dst, _change(plan, 3244, 4000, "complex64"))
    text = dst.read_text()
    assert "<productType>SLC</productType>" in text and "<imagebit>32bit</imagebit>" in text
    gsd = _values(read_gf3_sidecar(dst, str(dst)), Fact.GSD)
    # The reader turns the rewritten slant spacing into the output grid's ground spacing.
    assert gsd["imageinfo/widthspace"] == pytest.approx(plan.output_x_m, rel=1e-7)
    assert gsd["imageinfo/heightspace"] == pytest.approx(plan.output_y_m, abs=1e-9)


def test_detected_gf3_spacing_per_axis(tmp_path: Path) -> None:
    src = write_gf3_meta(tmp_path / "GF3.meta.xml", widthspace=0.5, heightspace=0.6, nominal_resolution=1.0)
    plan = DegradePlan(Fraction(5, 3), Fraction(2), 0.5, 0.6, 1.0, "amplitude")
    dst = tmp_path / "out.meta.xml"
    assert rewrite_sidecar(src, dst, _change(plan, 100, 100))
    evidence = read_gf3_sidecar(dst, str(dst))
    gsd = _values(evidence, Fact.GSD)
    assert gsd["imageinfo/widthspace"] == pytest.approx(1.0) and gsd["imageinfo/heightspace"] == pytest.approx(1.0)
    assert _values(evidence, Fact.PRODUCT_TYPE)["productinfo/productType"] == "SLP"
    assert "<imagebit>16bit</imagebit>" in dst.read_text()


def test_grid_change_without_spacing_keeps_the_factor_rule(tmp_path: Path) -> None:
    src = write_sidecar(tmp_path / "s.xml", OpticalScene(image_gsd="0.3"))
    dst = tmp_path / "out.xml"
    # The five-argument form callers used before the output spacing was carried.
    assert rewrite_sidecar(src, dst, GridChange(Fraction(5, 3), Fraction(2), 300, 256, 0.5))
    assert _values(read_gf_optical_sidecar(dst, str(dst)), Fact.GSD)["ImageGSD"] == pytest.approx(0.5)


def test_unknown_sidecar_is_not_rewritten(tmp_path: Path) -> None:
    src = tmp_path / "other.xml"
    src.write_text("<catalogue><gsd>0.3</gsd></catalogue>", encoding="utf-8")
    dst = tmp_path / "out.xml"
    assert not rewrite_sidecar(src, dst, GridChange(Fraction(2), Fraction(2), 1, 1, 0.5))
    assert not dst.exists()


def test_every_copy_of_a_repeated_field_is_rewritten(tmp_path: Path) -> None:
    """A field given twice with one value reads as that value; a stale copy beside a rewritten one would conflict."""
    src = write_sidecar(tmp_path / "GF2_PMS1_PAN.xml", OpticalScene(image_gsd="0.3", width=1000, height=1000))
    text = src.read_text()
    twice = "<ImageGSD>0.3</ImageGSD>\n    <ImageGSD>0.3</ImageGSD>"
    src.write_text(text.replace("<ImageGSD>0.3</ImageGSD>", twice, 1))
    assert read_gf_optical_sidecar(src, str(src))  # the same value twice is not a conflict
    plan = DegradePlan(Fraction(5, 3), Fraction(5, 3), 0.3, 0.3, 0.5, None)
    dst = tmp_path / "out" / src.name
    dst.parent.mkdir()
    assert rewrite_sidecar(src, dst, _change(plan, 600, 600))
    assert dst.read_text().count("<ImageGSD>0.5</ImageGSD>") == 2 and "<ImageGSD>0.3<" not in dst.read_text()
    assert _values(read_gf_optical_sidecar(dst, str(dst)), Fact.GSD)["ImageGSD"] == pytest.approx(0.5)
