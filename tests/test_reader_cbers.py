"""The INPE CBERS ``<prdf>`` sidecar reader, on the real sidecars and on synthetic ones."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NamedTuple

import pytest
from shapely import wkt
from shapely.geometry import Point

from rspolicy.errors import ProductReadError
from rspolicy.model import Evidence, Fact, ProductClass, Strength
from rspolicy.readers.cbers import is_cbers_root, read_cbers_sidecar
from rspolicy.samples.cbers import cbers_name, write_cbers_prdf

from .conftest import real_file as real
from .conftest import values

NS = "http://www.gisplan.com.br/xmlsat"




def hint(evidence: list[Evidence]) -> Evidence:
    [found] = [e for e in evidence if e.fact is Fact.CLASS_HINT]
    return found


class RealCase(NamedTuple):
    name: str
    satellite: str
    instrument: str
    size_m: float
    cls: ProductClass
    band: str
    scene_bands: str
    columns: int
    lines: int
    centre: tuple[float, float] | None  # imageData CT, when it lies inside the data outline


REAL_CASES = [
    RealCase("cbers4_pan5m_l2_band1_inpe.xml", "CBERS-4", "PAN5M", 5.0, ProductClass.PANCHROMATIC, "1", "1",
             17208, 25536, (86.590086, 21.584140)),
    RealCase("cbers4_pan10m_l2_band2_inpe.xml", "CBERS-4", "PAN10M", 10.0, ProductClass.MULTISPECTRAL, "2", "2,3,4",
             8609, 12778, (86.581554, 21.582737)),
    RealCase("cbers4_mux_l2_band5_inpe.xml", "CBERS-4", "MUX", 20.0, ProductClass.MULTISPECTRAL, "5", "5,6,7,8",
             7345, 7037, None),
    RealCase("cbers4a_wpm_l4_band0_inpe.xml", "CBERS-4A", "WPM", 2.0, ProductClass.PANCHROMATIC, "0", "0,1,2,3,4",
             56794, 58336, (-51.037402, -20.538390)),
]


@pytest.mark.parametrize("case", REAL_CASES, ids=[case.name for case in REAL_CASES])
def test_real_sidecars(case: RealCase) -> None:
    ev = read_cbers_sidecar(real(case.name), case.name)
    assert values(ev, Fact.SATELLITE) == [case.satellite]
    assert values(ev, Fact.SENSOR) == [case.instrument]
    assert [(e.field, e.value) for e in ev if e.fact is Fact.GSD] == [
        ("image/horizontalPixelSize", case.size_m), ("image/verticalPixelSize", case.size_m)]
    assert values(ev, Fact.WIDTH) == [case.columns]
    assert values(ev, Fact.HEIGHT) == [case.lines]
    assert values(ev, Fact.BAND_NUMBERS) == [case.band]
    assert [e.value for e in ev if e.fact is Fact.INFO and e.field == "availableBands"] == [case.scene_bands]
    assert hint(ev).value == case.cls.value
    assert hint(ev).strength is Strength.STRONG
    [footprint] = [e for e in ev if e.fact is Fact.FOOTPRINT]
    assert footprint.field == "image/imageData"
    polygon = wkt.loads(str(footprint.value))
    assert polygon.is_valid
    if case.centre is not None:
        assert polygon.contains(Point(*case.centre))


def test_real_wpm_band0_is_pan_although_it_lists_five_bands() -> None:
    ev = read_cbers_sidecar(real("cbers4a_wpm_l4_band0_inpe.xml"), "wpm")
    [bands] = [e for e in ev if e.fact is Fact.BAND_NUMBERS]
    assert (bands.value, bands.field) == ("0", "image/band0")
    assert values(ev, Fact.PRODUCT_LEVEL) == ["4"]
    assert values(ev, Fact.PRODUCT_ID) == ["CBERS_4A_WPM_20200730_209_139_L4_BAND0"]
    assert values(ev, Fact.ACQUISITION_TIME) == ["2020-07-30T13:51:24.147"]
    assert "band 0" in hint(ev).detail


def test_real_mux_band_stem_matches_the_name_helper() -> None:
    ev = read_cbers_sidecar(real("cbers4_mux_l2_band5_inpe.xml"), "mux")
    assert values(ev, Fact.PRODUCT_ID) == [cbers_name("4", "MUX", "20201031", 3, 73, 2, 5)]


def layout(root: ET.Element) -> list[tuple[str, tuple[str, ...]]]:
    """Element paths and attribute names in document order, namespace dropped.

    Runs of the per-second ``attitude`` / ``ephemeris`` blocks count once,
    since the writer abbreviates them.
    """
    out: list[tuple[str, tuple[str, ...]]] = []

    def walk(element: ET.Element, prefix: str) -> None:
        for child in element:
            here = f"{prefix}/{child.tag.rsplit('}', 1)[-1]}"
            repeated = "/attitudes/" in here or "/ephemerides/" in here
            if not (repeated and here in {path for path, _ in out}):
                out.append((here, tuple(sorted(child.attrib))))
            walk(child, here)
    walk(root, "")
    return out


@pytest.mark.parametrize("case", REAL_CASES, ids=[case.name for case in REAL_CASES])
def test_synthetic_has_the_real_element_layout(tmp_path: Path, case: RealCase) -> None:
    """The writer reproduces each real file's elements (repeated per-second blocks aside)."""
    real_root = ET.parse(real(case.name)).getroot()
    number = case.satellite.removeprefix("CBERS-")
    written = write_cbers_prdf(tmp_path / case.name, number=number, instrument=case.instrument,
                               band=int(case.band), available_bands=[int(b) for b in case.scene_bands.split(",")],
                               level=2 if number == "4" else 4)
    synthetic_root = ET.parse(written).getroot()
    assert synthetic_root.tag == real_root.tag == f"{{{NS}}}prdf"
    assert synthetic_root.attrib.keys() == real_root.attrib.keys()
    assert layout(synthetic_root) == layout(real_root)


# --- synthetic products ----------------------------------------------------------------------

@pytest.mark.parametrize(("band", "cls"), [(0, ProductClass.PANCHROMATIC), (1, ProductClass.MULTISPECTRAL),
                                           (4, ProductClass.MULTISPECTRAL)])
def test_wpm_class_follows_the_band(tmp_path: Path, band: int, cls: ProductClass) -> None:
    size = 2.0 if band == 0 else 8.0
    path = write_cbers_prdf(tmp_path / f"{cbers_name('4A', 'WPM', '20200730', 209, 139, 4, band)}.xml",
                            band=band, pixel_size=size, columns=14199, lines=14584)
    ev = read_cbers_sidecar(path, "wpm")
    assert hint(ev).value == cls.value
    assert values(ev, Fact.BAND_NUMBERS) == [str(band)]
    assert values(ev, Fact.GSD) == [size, size]


@pytest.mark.parametrize(("band", "cls", "strength"), [
    (12, ProductClass.THERMAL, Strength.STRONG),
    (10, ProductClass.MULTISPECTRAL, Strength.STRONG),
    (None, ProductClass.MULTISPECTRAL, Strength.MEDIUM),
])
def test_irs_thermal_band(tmp_path: Path, band: int | None, cls: ProductClass, strength: Strength) -> None:
    path = write_cbers_prdf(tmp_path / "irs.xml", number="4", instrument="IRS", band=band,
                            available_bands=(9, 10, 11, 12), level=2, pixel_size=80.0 if band == 12 else 40.0)
    ev = read_cbers_sidecar(path, "irs")
    assert (hint(ev).value, hint(ev).strength) == (cls.value, strength)


def test_wpm_without_any_band_statement_gets_no_hint(tmp_path: Path) -> None:
    path = write_cbers_prdf(tmp_path / "wpm.xml", band=None)
    ev = read_cbers_sidecar(path, "wpm")
    assert values(ev, Fact.CLASS_HINT) == []
    [bands] = [e for e in ev if e.fact is Fact.BAND_NUMBERS]
    assert (bands.value, bands.field) == ("0,1,2,3,4", "availableBands")
    assert any(e.fact is Fact.INFO and "not identified" in e.detail for e in ev)


def test_band_from_file_name_when_the_sidecar_has_no_band_element(tmp_path: Path) -> None:
    path = write_cbers_prdf(tmp_path / "CBERS_4A_WPM_20200730_209_139_L4_BAND2.xml", band=None, pixel_size=8.0)
    ev = read_cbers_sidecar(path, "wpm")
    [bands] = [e for e in ev if e.fact is Fact.BAND_NUMBERS]
    assert (bands.value, bands.field) == ("2", "filename")
    assert hint(ev).value == ProductClass.MULTISPECTRAL.value


def test_band_element_contradicting_the_file_name_is_refused(tmp_path: Path) -> None:
    path = write_cbers_prdf(tmp_path / "CBERS_4A_WPM_20200730_209_139_L4_BAND2.xml", band=0)
    with pytest.raises(ProductReadError, match="contradicts") as caught:
        read_cbers_sidecar(path, "wpm")
    assert str(path) in str(caught.value)


def test_dual_camera_sidecar_reads_both_cameras(tmp_path: Path) -> None:
    path = write_cbers_prdf(tmp_path / "wfi.xml", instrument="WFI", band=13, available_bands=(13, 14, 15, 16),
                            pixel_size=55.0, cameras=("leftCamera", "rightCamera"))
    root = ET.parse(path).getroot()
    assert root.find(f"{{{NS}}}image") is None  # nothing at top level: only the camera blocks
    ev = read_cbers_sidecar(path, "wfi")
    assert [e.field for e in ev if e.fact is Fact.GSD] == [
        "leftCamera/image/horizontalPixelSize", "leftCamera/image/verticalPixelSize",
        "rightCamera/image/horizontalPixelSize", "rightCamera/image/verticalPixelSize"]
    assert values(ev, Fact.GSD) == [55.0] * 4
    assert {e.value for e in ev if e.fact is Fact.CLASS_HINT} == {ProductClass.MULTISPECTRAL.value}
    assert values(ev, Fact.PRODUCT_ID) == ["CBERS_4A_WFI_20200730_209_139_L4_LEFT_BAND13",
                                           "CBERS_4A_WFI_20200730_209_139_L4_RIGHT_BAND13"]


def test_axes_are_read_separately(tmp_path: Path) -> None:
    path = write_cbers_prdf(tmp_path / "wpm.xml", horizontal_pixel_size=2.0, vertical_pixel_size=2.5)
    ev = read_cbers_sidecar(path, "wpm")
    assert [(e.field, e.value) for e in ev if e.fact is Fact.GSD] == [
        ("image/horizontalPixelSize", 2.0), ("image/verticalPixelSize", 2.5)]


def test_bounding_box_stands_in_for_missing_image_data(tmp_path: Path) -> None:
    path = write_cbers_prdf(tmp_path / "wpm.xml", overrides={"image/imageData": None})
    [footprint] = [e for e in read_cbers_sidecar(path, "wpm") if e.fact is Fact.FOOTPRINT]
    assert footprint.field == "image/boundingBox"


# --- empty, malformed and hostile sidecars ---------------------------------------------------

@pytest.mark.parametrize(("field", "bad"), [
    ("image/verticalPixelSize", "2,0"),
    ("image/horizontalPixelSize", "0"),
    ("image/columns", "56794.5"),
    ("image/lines", "many"),
    ("image/imageData/UL/latitude", "north"),
])
def test_malformed_number_names_file_and_field(tmp_path: Path, field: str, bad: str) -> None:
    path = write_cbers_prdf(tmp_path / "bad.xml", overrides={field: bad})
    with pytest.raises(ProductReadError) as caught:
        read_cbers_sidecar(path, "bad")
    assert str(path) in str(caught.value)
    assert field in str(caught.value)


def test_empty_pixel_size_is_skipped(tmp_path: Path) -> None:
    path = write_cbers_prdf(tmp_path / "empty.xml", overrides={"image/verticalPixelSize": "",
                                                               "image/horizontalPixelSize": "NULL"})
    ev = read_cbers_sidecar(path, "empty")
    assert values(ev, Fact.GSD) == []
    assert hint(ev).value == ProductClass.PANCHROMATIC.value


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.xml"
    entities = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    bomb.write_text(f'<?xml version="1.0"?><!DOCTYPE prdf [<!ENTITY lol0 "lol">{entities}]>'
                    f'<prdf xmlns="{NS}"><satellite><name>CBERS</name><number>&lol9;</number></satellite></prdf>')
    with pytest.raises(ProductReadError, match="unsafe XML") as caught:
        read_cbers_sidecar(bomb, "bomb")
    assert str(bomb) in str(caught.value)


def test_gf3_sidecar_is_not_cbers() -> None:
    with pytest.raises(ProductReadError, match="not an INPE CBERS"):
        read_cbers_sidecar(real("gf3_ufs_dh_l2_meta_excerpt.xml"), "gf3")


@pytest.mark.parametrize(("xml", "expected"), [
    (f'<prdf xmlns="{NS}"><satellite><name>CBERS</name></satellite></prdf>', True),
    ("<prdf><satellite><name>CBERS</name></satellite></prdf>", True),
    (f'<prdf xmlns="{NS}"><leftCamera><satellite><name>CBERS</name></satellite></leftCamera></prdf>', True),
    (f'<prdf xmlns="{NS}"><satellite><name>AMAZONIA</name></satellite></prdf>', False),
    ('<prdf xmlns="urn:other"><satellite><name>CBERS</name></satellite></prdf>', False),
    (f'<product xmlns="{NS}"><satellite><name>CBERS</name></satellite></product>', False),
])
def test_is_cbers_root(xml: str, expected: bool) -> None:
    assert is_cbers_root(ET.fromstring(xml)) is expected
