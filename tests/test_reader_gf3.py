"""The GF-3 SAR sidecar reader, on the real sidecars and on synthetic ones."""

from __future__ import annotations

import datetime as dt
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from shapely import wkt
from shapely.geometry import Point

from rspolicy.errors import ProductReadError
from rspolicy.model import Evidence, Fact, ProductClass, Strength
from rspolicy.readers.gf3_sar import canonical_gf3_name, is_gf3_root, read_gf3_sidecar
from rspolicy.samples.gf3 import gf3_names, write_gf3_meta

from .conftest import real_file as real
from .conftest import values

FSI = "gf3_fsi_hhhv_l2_meta.xml"
UFS = "gf3_ufs_dh_l2_meta_excerpt.xml"




def at(evidence: list[Evidence], fact: Fact, field: str) -> Evidence:
    found = [e for e in evidence if e.fact is fact and e.field == field]
    assert len(found) == 1, f"expected one {fact} at {field}, got {found}"
    return found[0]


def finest(evidence: list[Evidence]) -> float:
    numbers = [e.value for e in evidence if e.fact in (Fact.GSD, Fact.NOMINAL_RESOLUTION)]
    assert numbers, "no resolution evidence"
    return min(float(v) for v in numbers if isinstance(v, float | int))


# --- real sidecars ---------------------------------------------------------------------------

def test_real_fsi_sidecar() -> None:
    ev = read_gf3_sidecar(real(FSI), "fsi.meta.xml")
    assert at(ev, Fact.NOMINAL_RESOLUTION, "productinfo/NominalResolution").value == 5.0
    assert at(ev, Fact.GSD, "imageinfo/widthspace").value == 2.5
    assert at(ev, Fact.GSD, "imageinfo/heightspace").value == 2.5
    assert at(ev, Fact.INCIDENCE_ANGLE, "processinfo/incidenceAngleNearRange").value == pytest.approx(35.280714)
    assert at(ev, Fact.INCIDENCE_ANGLE, "processinfo/incidenceAngleFarRange").value == pytest.approx(38.456128)
    assert values(ev, Fact.IMAGING_MODE) == ["FSI"]
    assert values(ev, Fact.POLARISATION) == ["HHHV"]
    assert values(ev, Fact.PRODUCT_TYPE) == ["SLP"]
    assert values(ev, Fact.PRODUCT_LEVEL) == ["2"]
    assert values(ev, Fact.PRODUCT_ID) == ["5379609"]
    assert values(ev, Fact.SATELLITE) == ["GF3"]
    assert values(ev, Fact.SENSOR) == ["SAR"]
    assert values(ev, Fact.WIDTH) == [26719]
    assert values(ev, Fact.HEIGHT) == [28763]
    assert values(ev, Fact.ACQUISITION_TIME) == ["2021-01-07 09:54:49.286464"]
    assert at(ev, Fact.INFO, "processinfo/CalibrationConst").value == "HH,HV"
    assert finest(ev) == 2.5
    assert all(e.source == "fsi.meta.xml" for e in ev)


def test_real_ufs_sidecar() -> None:
    ev = read_gf3_sidecar(real(UFS), "ufs.meta.xml")
    assert at(ev, Fact.NOMINAL_RESOLUTION, "productinfo/NominalResolution").value == 3.0
    assert at(ev, Fact.GSD, "imageinfo/widthspace").value == 1.5
    assert at(ev, Fact.GSD, "imageinfo/heightspace").value == 1.5
    assert values(ev, Fact.INCIDENCE_ANGLE) == [pytest.approx(19.030093), pytest.approx(21.663930)]
    assert values(ev, Fact.IMAGING_MODE) == ["UFS"]
    assert values(ev, Fact.POLARISATION) == ["DH"]
    # "DH" yet only HH carries a calibration constant in the real file.
    assert at(ev, Fact.INFO, "processinfo/CalibrationConst").value == "HH"
    # NominalResolution is 3 m but the pixels are 1.5 m: the finer must be there to win.
    assert finest(ev) == 1.5


@pytest.mark.parametrize(("name", "centre"), [(FSI, (-65.337281, -18.749389)), (UFS, (-43.293942, -22.679569))])
def test_real_footprint_holds_the_scene_centre(name: str, centre: tuple[float, float]) -> None:
    ev = read_gf3_sidecar(real(name), name)
    [footprint] = values(ev, Fact.FOOTPRINT)
    polygon = wkt.loads(str(footprint))
    assert polygon.is_valid
    assert polygon.contains(Point(*centre))
    # lon/lat order: longitudes of a Brazilian/Bolivian scene are < -40, latitudes > -25.
    assert all(x < -40 and -25 < y < -18 for x, y in polygon.exterior.coords)


@pytest.mark.parametrize("name", [FSI, UFS])
def test_real_class_hint_is_strong_sar(name: str) -> None:
    ev = read_gf3_sidecar(real(name), name)
    [hint] = [e for e in ev if e.fact is Fact.CLASS_HINT]
    assert hint.value == ProductClass.SAR.value
    assert hint.strength is Strength.STRONG
    assert hint.field == "product"


@pytest.mark.parametrize("name", [FSI, UFS])
def test_real_nominal_and_spacing_both_reported(name: str) -> None:
    ev = read_gf3_sidecar(real(name), name)
    info = at(ev, Fact.INFO, "productinfo/NominalResolution")
    assert "finer" in info.detail
    assert len(values(ev, Fact.NOMINAL_RESOLUTION)) == 1
    assert len(values(ev, Fact.GSD)) == 2


def test_synthetic_default_reads_exactly_like_the_real_ufs(tmp_path: Path) -> None:
    real_ev = read_gf3_sidecar(real(UFS), "x")
    synthetic_ev = read_gf3_sidecar(write_gf3_meta(tmp_path / "ufs.meta.xml"), "x")
    assert [e.to_dict() for e in synthetic_ev] == [e.to_dict() for e in real_ev]


def test_synthetic_has_the_real_element_layout(tmp_path: Path) -> None:
    def layout(root: ET.Element) -> list[tuple[str, tuple[str, ...]]]:
        out: list[tuple[str, tuple[str, ...]]] = []

        def walk(element: ET.Element, prefix: str) -> None:
            for child in element:
                here = f"{prefix}/{child.tag}"
                out.append((here, tuple(sorted(child.attrib))))
                walk(child, here)
        walk(root, "")
        return out

    real_root = ET.parse(real(UFS)).getroot()
    for mode, polar in (("UFS", "DH"), ("FSI", "HHHV")):
        synthetic_root = ET.parse(write_gf3_meta(tmp_path / f"{mode}.meta.xml", imaging_mode=mode,
                                                 polar=polar)).getroot()
        assert layout(synthetic_root) == layout(real_root)


# --- synthetic products ----------------------------------------------------------------------

def test_spotlight_nominal_one_metre_spacing_half(tmp_path: Path) -> None:
    path = write_gf3_meta(tmp_path / "sl.meta.xml", imaging_mode="SL", nominal_resolution=1.0,
                          widthspace=0.5, heightspace=0.5, width=12000, height=10000, polar="HH")
    ev = read_gf3_sidecar(path, "sl")
    assert at(ev, Fact.NOMINAL_RESOLUTION, "productinfo/NominalResolution").value == 1.0
    assert at(ev, Fact.GSD, "imageinfo/widthspace").value == 0.5
    assert at(ev, Fact.GSD, "imageinfo/heightspace").value == 0.5
    assert at(ev, Fact.IMAGING_MODE, "sensor/imagingMode").detail == "Spotlight"
    assert finest(ev) == 0.5


def test_ufs_synthetic_with_other_numbers(tmp_path: Path) -> None:
    path = write_gf3_meta(tmp_path / "ufs.meta.xml", nominal_resolution=3.0, widthspace=1.25, heightspace=1.75)
    ev = read_gf3_sidecar(path, "ufs")
    assert at(ev, Fact.GSD, "imageinfo/widthspace").value == 1.25
    assert at(ev, Fact.GSD, "imageinfo/heightspace").value == 1.75
    assert finest(ev) == 1.25


def test_slc_slant_range_spacing_becomes_ground_range_at_far_incidence(tmp_path: Path) -> None:
    path = write_gf3_meta(tmp_path / "slc.meta.xml", imaging_mode="SL", product_type="SLC", product_level="1",
                          nominal_resolution=1.0, widthspace=0.9, heightspace=0.4,
                          incidence_near=30.0, incidence_far=40.0)
    ev = read_gf3_sidecar(path, "slc")
    ground = at(ev, Fact.GSD, "imageinfo/widthspace")
    assert ground.value == pytest.approx(0.9 / math.sin(math.radians(40.0)))
    assert ground.value == pytest.approx(1.400151, abs=1e-6)  # 0.9 / 0.6427876
    assert ground.value != pytest.approx(0.9 / math.sin(math.radians(30.0)))  # near range would say 1.8
    assert "far" in ground.detail
    raw = at(ev, Fact.INFO, "imageinfo/widthspace")
    assert raw.value == 0.9
    assert "slant" in raw.detail
    # Azimuth is along the ground track already: not projected.
    assert at(ev, Fact.GSD, "imageinfo/heightspace").value == 0.4


def test_slc_uses_the_larger_angle_when_near_and_far_are_swapped(tmp_path: Path) -> None:
    path = write_gf3_meta(tmp_path / "slc.meta.xml", product_type="SLC", widthspace=1.0,
                          incidence_near=45.0, incidence_far=25.0)
    ev = read_gf3_sidecar(path, "slc")
    assert at(ev, Fact.GSD, "imageinfo/widthspace").value == pytest.approx(1.0 / math.sin(math.radians(45.0)))


@pytest.mark.parametrize(("near", "far"), [(None, None), (30.0, None)])
def test_slc_without_far_incidence_keeps_the_slant_value(tmp_path: Path, near: float | None,
                                                         far: float | None) -> None:
    path = write_gf3_meta(tmp_path / "slc.meta.xml", product_type="SLC", widthspace=1.1,
                          incidence_near=near, incidence_far=far)
    ev = read_gf3_sidecar(path, "slc")
    ground = at(ev, Fact.GSD, "imageinfo/widthspace")
    assert ground.value == 1.1
    assert "missing" in ground.detail


def test_level1_detected_product_taken_as_written(tmp_path: Path) -> None:
    path = write_gf3_meta(tmp_path / "slp.meta.xml", product_type="SLP", product_level="1",
                          widthspace=1.1, incidence_near=30.0, incidence_far=40.0)
    ev = read_gf3_sidecar(path, "slp")
    ground = at(ev, Fact.GSD, "imageinfo/widthspace")
    assert ground.value == 1.1
    assert "as written" in ground.detail


# --- empty, malformed and hostile sidecars ---------------------------------------------------

@pytest.mark.parametrize(("field", "bad"), [
    ("productinfo/NominalResolution", "3,0"),
    ("imageinfo/widthspace", "abc"),
    ("imageinfo/heightspace", "-1.5"),
    ("imageinfo/widthspace", "inf"),
    ("imageinfo/width", "27967.5"),
    ("processinfo/incidenceAngleFarRange", "95.0"),
    ("imageinfo/corner/topLeft/latitude", "-122.5"),
])
def test_malformed_number_names_file_and_field(tmp_path: Path, field: str, bad: str) -> None:
    path = write_gf3_meta(tmp_path / "bad.meta.xml", overrides={field: bad})
    with pytest.raises(ProductReadError) as caught:
        read_gf3_sidecar(path, "bad")
    message = str(caught.value)
    assert str(path) in message
    assert field.rsplit("/", 1)[-1] in message


def test_null_fields_are_skipped(tmp_path: Path) -> None:
    path = write_gf3_meta(tmp_path / "null.meta.xml", nominal_resolution=None,
                          overrides={"productinfo/productPolar": "NULL", "productinfo/productType": ""})
    ev = read_gf3_sidecar(path, "null")
    assert values(ev, Fact.NOMINAL_RESOLUTION) == []
    assert values(ev, Fact.PRODUCT_TYPE) == []
    # productPolar NULL: the sensor's polarMode stands in.
    assert [(e.field, e.value) for e in ev if e.fact is Fact.POLARISATION] == [
        ("sensor/polarParams/polar/polarMode", "DH")]
    assert at(ev, Fact.GSD, "imageinfo/widthspace").value == 1.5


def test_no_resolution_at_all_still_reads(tmp_path: Path) -> None:
    path = write_gf3_meta(tmp_path / "nores.meta.xml", nominal_resolution=None, widthspace=None,
                          heightspace=None, overrides={"imageinfo/corner": None})
    ev = read_gf3_sidecar(path, "nores")
    assert values(ev, Fact.GSD) == []
    assert values(ev, Fact.NOMINAL_RESOLUTION) == []
    assert values(ev, Fact.FOOTPRINT) == []
    assert values(ev, Fact.CLASS_HINT) == [ProductClass.SAR.value]


def test_polarisations_that_disagree_are_both_reported(tmp_path: Path) -> None:
    path = write_gf3_meta(tmp_path / "pol.meta.xml", polar="HHHV",
                          overrides={"sensor/polarParams/polar/polarMode": "VVVH"})
    ev = read_gf3_sidecar(path, "pol")
    assert values(ev, Fact.POLARISATION) == ["HHHV", "VVVH"]


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.meta.xml"
    entities = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    bomb.write_text(f'<?xml version="1.0"?><!DOCTYPE product [<!ENTITY lol0 "lol">{entities}]>'
                    f"<product><satellite>GF3</satellite><sensor><sensorID>&lol9;</sensorID></sensor></product>")
    with pytest.raises(ProductReadError, match="unsafe XML") as caught:
        read_gf3_sidecar(bomb, "bomb")
    assert str(bomb) in str(caught.value)


def test_external_entity_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("7.0")
    xxe = tmp_path / "xxe.meta.xml"
    xxe.write_text(f'<?xml version="1.0"?><!DOCTYPE product [<!ENTITY x SYSTEM "file://{secret}">]>'
                   "<product><satellite>GF3</satellite><productinfo>"
                   "<NominalResolution>&x;</NominalResolution></productinfo></product>")
    with pytest.raises(ProductReadError, match="unsafe XML"):
        read_gf3_sidecar(xxe, "xxe")


def test_truncated_xml_is_a_read_error(tmp_path: Path) -> None:
    path = write_gf3_meta(tmp_path / "cut.meta.xml")
    path.write_text(path.read_text()[:5000])
    with pytest.raises(ProductReadError, match="not well-formed"):
        read_gf3_sidecar(path, "cut")


def test_other_product_sidecars_are_not_gf3(tmp_path: Path) -> None:
    path = write_gf3_meta(tmp_path / "gf2.meta.xml", satellite="GF2")
    with pytest.raises(ProductReadError, match="not a GF-3"):
        read_gf3_sidecar(path, "gf2")



def test_a_real_cbers_sidecar_is_not_gf3() -> None:
    cbers = real("cbers4_pan5m_l2_band1_inpe.xml")
    with pytest.raises(ProductReadError, match="not a GF-3"):
        read_gf3_sidecar(cbers, "cbers")


@pytest.mark.parametrize(("xml", "expected"), [
    ("<product><satellite>GF3</satellite></product>", True),
    ("<product><satellite>GF-3</satellite></product>", True),
    ("<product><satellite>gaofen-3b</satellite></product>", True),
    ("<product><satellite>GF3C</satellite></product>", True),
    ("<product><satellite>GF2</satellite></product>", False),
    ("<product><satellite>GF-30</satellite></product>", False),
    ("<product><sensor><sensorID>SAR</sensorID></sensor><imageinfo><widthspace>1</widthspace></imageinfo></product>",
     True),
    ("<product><sensor><sensorID>SAR</sensorID></sensor></product>", False),
    ("<ProductMetaData><SatelliteID>GF3</SatelliteID></ProductMetaData>", False),
])
def test_is_gf3_root(xml: str, expected: bool) -> None:
    assert is_gf3_root(ET.fromstring(xml)) is expected


def test_satellite_value_kept_as_written(tmp_path: Path) -> None:
    ev = read_gf3_sidecar(write_gf3_meta(tmp_path / "x.meta.xml", satellite="GF-3"), "x")
    [sat] = [e for e in ev if e.fact is Fact.SATELLITE]
    assert sat.value == "GF-3"
    assert canonical_gf3_name("GF3") == canonical_gf3_name("GF-3") == "GF-3"
    assert "GF-3" in sat.detail


def test_footprint_across_the_antimeridian(tmp_path: Path) -> None:
    corners = ((179.9, -16.0), (-179.8, -16.05), (179.85, -16.3), (-179.85, -16.35))
    ev = read_gf3_sidecar(write_gf3_meta(tmp_path / "fiji.meta.xml", corners=corners), "fiji")
    [footprint] = [e for e in ev if e.fact is Fact.FOOTPRINT]
    polygon = wkt.loads(str(footprint.value))
    assert polygon.bounds[2] - polygon.bounds[0] < 1.0
    assert "antimeridian" in footprint.detail


def test_self_crossing_corners_give_no_footprint(tmp_path: Path) -> None:
    # topRight and bottomLeft swapped: the ring crosses itself.
    corners = ((10.0, 1.0), (10.0, 0.0), (11.0, 1.0), (11.0, 0.0))
    corners_bowtie = (corners[0], corners[3], corners[1], corners[2])
    ev = read_gf3_sidecar(write_gf3_meta(tmp_path / "bow.meta.xml", corners=corners_bowtie), "bow")
    assert values(ev, Fact.FOOTPRINT) == []
    assert "simple polygon" in at(ev, Fact.INFO, "imageinfo/corner").detail


# --- file names ------------------------------------------------------------------------------

def test_names_match_the_real_ufs_delivery() -> None:
    names = gf3_names("MYN", "UFS", 29108, -43.293942, -22.679569, "20220219", "L2", "DH", 6303810)
    assert names.meta == "GF3_MYN_UFS_029108_W43.3_S22.7_20220219_L2_DH_L20006303810.meta.xml"
    assert names.tiffs == {
        "HH": "GF3_MYN_UFS_029108_W43.3_S22.7_20220219_L2_HH_L20006303810.tiff",
        "HV": "GF3_MYN_UFS_029108_W43.3_S22.7_20220219_L2_HV_L20006303810.tiff",
    }


def test_names_match_the_real_fsi_delivery() -> None:
    names = gf3_names("SAY", "FSI", 23228, -65.337281, -18.749389, dt.date(2021, 1, 7), 2, "HHHV", 5379609)
    assert names.meta == "GF3_SAY_FSI_023228_W65.3_S18.7_20210107_L2_HHHV_L20005379609.meta.xml"
    assert names.thumbs["HV"] == "GF3_SAY_FSI_023228_W65.3_S18.7_20210107_L2_HV_L20005379609.thumb.jpg"
    assert names.browse["HH"] == "GF3_SAY_FSI_023228_W65.3_S18.7_20210107_L2_HH_L20005379609.jpg"


def test_names_level_one_and_quad_pol() -> None:
    names = gf3_names("KAS", "QPSI", 11444, 118.9, 31.4, "20181012", "L1A", "AHV", 3514912)
    assert names.stem == "GF3_KAS_QPSI_011444_E118.9_N31.4_20181012_L1A_AHV_L10003514912"
    assert sorted(names.tiffs) == ["HH", "HV", "VH", "VV"]
