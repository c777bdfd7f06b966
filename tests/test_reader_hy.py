"""Tests of the HY <ProductMetaData> sidecar reader."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import shapely

from rspolicy.errors import ProductReadError
from rspolicy.model import Evidence, Fact, ProductClass, Strength
from rspolicy.readers.hy import is_hy_root, read_hy_sidecar
from rspolicy.readers.xmlutil import parse_xml
from rspolicy.samples.hdf5 import write_hy1c_czi

REAL = Path(__file__).resolve().parents[2] / "shared" / "real_metadata"


def facts(evidence: list[Evidence], fact: Fact) -> list[Evidence]:
    return [e for e in evidence if e.fact is fact]


def values(evidence: list[Evidence], fact: Fact) -> list[Any]:
    return [e.value for e in facts(evidence, fact)]


def sidecar(tmp_path: Path, **kwargs: Any) -> Path:
    return write_hy1c_czi(tmp_path, **kwargs)[1]


def edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


#: An NSOAS-style nested sidecar: fields grouped in blocks, British "Centre",
#: corners as Corners/TopLeft/TopLeft_Latitude.
NESTED = """<?xml version="1.0" encoding="UTF-8"?>
<ProductMetaData>
  <SatelliteID>HY-1D</SatelliteID>
  <SensorID>CZI</SensorID>
  <OrbitID>05959</OrbitID>
  <ReceiveStation>BJ</ReceiveStation>
  <ProductName>H1D_OPER_CZI_L1B_20210301T023000_05959_10</ProductName>
  <SatelliteInfo><OrbitFlag>D</OrbitFlag><WorkMode>NORMAL</WorkMode></SatelliteInfo>
  <ProductInfo>
    <ProductLevel>L1B</ProductLevel>
    <ProductFormat>HDF5</ProductFormat>
    <Resolution>50</Resolution>
  </ProductInfo>
  <ImageInfo>
    <StartTime>2021-03-01 02:30:00</StartTime>
    <EndTime>2021-03-01 02:35:00</EndTime>
    <CentreTime>2021-03-01 02:32:30.500</CentreTime>
    <CentreLocation><Latitude>30.0</Latitude><Longitude>122.0</Longitude></CentreLocation>
    <Corners>
      <TopLeft><TopLeft_Latitude>31.0</TopLeft_Latitude><TopLeft_Longitude>121.0</TopLeft_Longitude></TopLeft>
      <TopRight><TopRight_Latitude>31.0</TopRight_Latitude><TopRight_Longitude>123.0</TopRight_Longitude></TopRight>
      <BottomRight><Latitude>29.0</Latitude><Longitude>123.0</Longitude></BottomRight>
      <BottomLeft><Latitude>29.0</Latitude><Longitude>121.0</Longitude></BottomLeft>
    </Corners>
  </ImageInfo>
</ProductMetaData>
"""


def test_hy1c_czi_sidecar(tmp_path: Path) -> None:
    path = sidecar(tmp_path)
    ev = read_hy_sidecar(path, f"pkg!{path.name}")

    assert {e.source for e in ev} == {f"pkg!{path.name}"}
    assert [(e.value, e.field) for e in facts(ev, Fact.SATELLITE)] == [("HY-1C", "SatelliteID")]
    assert values(ev, Fact.SENSOR) == ["CZI"]
    assert values(ev, Fact.PRODUCT_ID) == [path.stem]
    assert values(ev, Fact.PRODUCT_LEVEL) == ["L1B"]
    assert [(e.value, e.field) for e in facts(ev, Fact.ACQUISITION_TIME)] == [("2019-01-01T01:07:30", "CenterTime")]
    assert [(e.value, e.field) for e in facts(ev, Fact.GSD)] == [(50.0, "Resolution")]
    assert values(ev, Fact.WIDTH) == [16]
    assert values(ev, Fact.HEIGHT) == [16]
    assert values(ev, Fact.BAND_NUMBERS) == ["1,2,3,4"]
    assert values(ev, Fact.BAND_COUNT) == [4]
    (hint,) = facts(ev, Fact.CLASS_HINT)
    assert (hint.value, hint.strength) == (ProductClass.MULTISPECTRAL.value, Strength.STRONG)

    (footprint,) = values(ev, Fact.FOOTPRINT)
    polygon = shapely.from_wkt(footprint)
    assert polygon.geom_type == "Polygon"
    assert polygon.is_valid
    # lon/lat order, corners TopLeft, TopRight, BottomRight, BottomLeft
    assert list(polygon.exterior.coords)[:4] == [(118.91, 39.62), (119.73, 39.41), (119.52, 38.98), (118.70, 39.19)]


def test_sidecar_field_order_follows_gf(tmp_path: Path) -> None:
    root = parse_xml(sidecar(tmp_path))
    tags = [child.tag for child in root]
    assert tags[:3] == ["SatelliteID", "SensorID", "ReceiveTime"]
    assert tags.index("CenterTime") < tags.index("Resolution") < tags.index("WidthInPixels")
    assert tags[-8:] == [f"{c}{a}" for c in ("TopLeft", "TopRight", "BottomRight", "BottomLeft")
                         for a in ("Latitude", "Longitude")]


def test_image_gsd_in_addition_to_resolution(tmp_path: Path) -> None:
    ev = read_hy_sidecar(sidecar(tmp_path, image_gsd=48.5), "x.xml")
    assert [(e.value, e.field) for e in facts(ev, Fact.GSD)] == [(50.0, "Resolution"), (48.5, "ImageGSD")]


def test_image_gsd_instead_of_resolution(tmp_path: Path) -> None:
    ev = read_hy_sidecar(sidecar(tmp_path, resolution_m=None, image_gsd=50), "x.xml")
    assert [(e.value, e.field) for e in facts(ev, Fact.GSD)] == [(50.0, "ImageGSD")]


@pytest.mark.parametrize(("text", "metres"), [("50", 50.0), ("50m", 50.0), ("50 M", 50.0), ("1.1 km", 1100.0),
                                              ("1100.0", 1100.0), ("5e1", 50.0)])
def test_resolution_units(tmp_path: Path, text: str, metres: float) -> None:
    path = edit(sidecar(tmp_path), "<Resolution>50</Resolution>", f"<Resolution>{text}</Resolution>")
    assert values(read_hy_sidecar(path, "x.xml"), Fact.GSD) == [metres]


@pytest.mark.parametrize("text", ["fifty", "-50", "0", "50 degrees", "inf"])
def test_invalid_resolution_is_a_read_error(tmp_path: Path, text: str) -> None:
    path = edit(sidecar(tmp_path), "<Resolution>50</Resolution>", f"<Resolution>{text}</Resolution>")
    with pytest.raises(ProductReadError) as info:
        read_hy_sidecar(path, "x.xml")
    assert info.value.path == str(path)
    assert "Resolution" in str(info.value)


def test_corner_out_of_range_is_a_read_error(tmp_path: Path) -> None:
    path = edit(sidecar(tmp_path), "<TopLeftLatitude>39.62</TopLeftLatitude>",
                "<TopLeftLatitude>139.62</TopLeftLatitude>")
    with pytest.raises(ProductReadError, match="TopLeftLatitude"):
        read_hy_sidecar(path, "x.xml")


def test_missing_corner_gives_no_footprint(tmp_path: Path) -> None:
    path = edit(sidecar(tmp_path), "<BottomLeftLongitude>118.7</BottomLeftLongitude>", "<BottomLeftLongitude />")
    ev = read_hy_sidecar(path, "x.xml")
    assert facts(ev, Fact.FOOTPRINT) == []
    assert [e.value for e in facts(ev, Fact.INFO) if e.field == "corners"] == ["BottomLeft"]


def test_nested_nsoas_layout(tmp_path: Path) -> None:
    path = tmp_path / "H1D_OPER_CZI_L1B_20210301T023000_05959_10.xml"
    path.write_text(NESTED, encoding="utf-8")
    ev = read_hy_sidecar(path, path.name)
    assert values(ev, Fact.SATELLITE) == ["HY-1D"]
    assert values(ev, Fact.SENSOR) == ["CZI"]
    assert values(ev, Fact.PRODUCT_ID) == ["H1D_OPER_CZI_L1B_20210301T023000_05959_10"]
    assert values(ev, Fact.PRODUCT_LEVEL) == ["L1B"]
    assert [(e.value, e.field) for e in facts(ev, Fact.ACQUISITION_TIME)] == [("2021-03-01T02:32:30.500", "CentreTime")]
    assert values(ev, Fact.GSD) == [50.0]
    (footprint,) = values(ev, Fact.FOOTPRINT)
    assert shapely.from_wkt(footprint).bounds == (121.0, 29.0, 123.0, 31.0)
    assert values(ev, Fact.CLASS_HINT) == ["multispectral"]


@pytest.mark.parametrize(("xml", "expected"), [
    ("<ProductMetaData><SatelliteID>HY-1C</SatelliteID></ProductMetaData>", True),
    ("<ProductMetaData><SatelliteID>HY1D</SatelliteID></ProductMetaData>", True),
    ("<ProductMetaData><SatelliteID> hy-2b </SatelliteID></ProductMetaData>", True),
    ('<ProductMetaData xmlns="urn:x"><SatelliteID>HY-1C</SatelliteID></ProductMetaData>', True),
    ("<ProductMetaData><SatelliteID>GF2</SatelliteID></ProductMetaData>", False),
    ("<ProductMetaData><SatelliteID>GF1</SatelliteID><SensorID>CZI</SensorID></ProductMetaData>", False),
    ("<ProductMetaData><SatelliteID>HYPERION</SatelliteID></ProductMetaData>", False),
    ("<ProductMetaData><SatelliteID /></ProductMetaData>", False),
    ("<ProductMetaData><SensorID>CZI</SensorID></ProductMetaData>", False),
    ("<InterfaceFile><SatelliteID>HY-1C</SatelliteID></InterfaceFile>", False),
])
def test_is_hy_root(xml: str, expected: bool) -> None:
    assert is_hy_root(ET.fromstring(xml)) is expected


@pytest.mark.parametrize("name", ["gf2_pms1_pan_l1a.xml", "gf1_wfv3_l1a.xml", "gf4_pms_l1a.xml"])
def test_real_gf_sidecar_is_not_hy(name: str) -> None:
    path = REAL / name
    if not path.is_file():
        pytest.skip(f"real metadata not available: {path}")
    assert not is_hy_root(parse_xml(path))
    with pytest.raises(ProductReadError, match="not an HY"):
        read_hy_sidecar(path, name)


def test_gf_sidecar_written_like_an_hy_one_is_not_hy(tmp_path: Path) -> None:
    path = edit(sidecar(tmp_path), "<SatelliteID>HY-1C</SatelliteID>", "<SatelliteID>GF2</SatelliteID>")
    assert not is_hy_root(parse_xml(path))
    with pytest.raises(ProductReadError) as info:
        read_hy_sidecar(path, "x.xml")
    assert info.value.path == str(path)


def test_malformed_and_unsafe_xml_are_read_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_text("<ProductMetaData><SatelliteID>HY-1C</Satellite", encoding="utf-8")
    with pytest.raises(ProductReadError, match="not well-formed"):
        read_hy_sidecar(broken, "broken.xml")
    unsafe = tmp_path / "unsafe.xml"
    unsafe.write_text('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "HY-1C">]>'
                      "<ProductMetaData><SatelliteID>&a;</SatelliteID></ProductMetaData>", encoding="utf-8")
    with pytest.raises(ProductReadError, match="unsafe"):
        read_hy_sidecar(unsafe, "unsafe.xml")


def test_unknown_sensor_gives_no_class_hint(tmp_path: Path) -> None:
    path = edit(sidecar(tmp_path), "<SensorID>CZI</SensorID>", "<SensorID>ABC</SensorID>")
    ev = read_hy_sidecar(path, "x.xml")
    assert values(ev, Fact.SENSOR) == ["ABC"]
    assert facts(ev, Fact.CLASS_HINT) == []


def test_hy1d_file_names_use_the_short_form(tmp_path: Path) -> None:
    h5_path, xml_path = write_hy1c_czi(tmp_path, satellite="HY-1D")
    assert h5_path.name.startswith("H1D_OPER_CZI_L1B_")
    assert xml_path.with_suffix(".h5") == h5_path
    assert values(read_hy_sidecar(xml_path, "x.xml"), Fact.SATELLITE) == ["HY-1D"]
