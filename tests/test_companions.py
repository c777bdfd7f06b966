"""rspolicy's parsers of the files GDAL would consult beside an image, checked against GDAL itself."""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.rpc import RPC

from rspolicy.errors import ProductReadError
from rspolicy.georef import rpb_text
from rspolicy.readers.companions import (
    MAX_PAM_BYTES,
    MAX_RPC_BYTES,
    CompanionKind,
    PamInfo,
    companion_kind,
    parse_pam,
    parse_rpb,
    parse_rpc_txt,
    parse_world_file,
)
from rspolicy.samples.gf_optical import linear_rpc
from tests.conftest import real_file

RPC_FIELDS = ("err_bias", "err_rand", "line_off", "samp_off", "lat_off", "long_off", "height_off", "line_scale",
              "samp_scale", "lat_scale", "long_scale", "height_scale", "line_num_coeff", "line_den_coeff",
              "samp_num_coeff", "samp_den_coeff")


def sample_rpc() -> RPC:
    """An RPC with every field distinct and non-trivial, so that a swapped field shows."""
    rpc = linear_rpc(116.4, 39.9, 0.8, 40, 30, height_off=52.5)
    rpc.err_bias = 3.25
    rpc.err_rand = 0.125
    rpc.line_num_coeff = [0.001 * (i + 1) for i in range(20)]
    rpc.line_num_coeff[2] = -1.0
    rpc.samp_den_coeff = [1.0] + [1e-5 * (i + 1) for i in range(19)]
    return rpc


def write_image(path: Path, driver: str = "GTiff") -> Path:
    """A small ungeoreferenced image: whatever georeferencing GDAL shows comes from a side file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver=driver, width=40, height=30, count=1, dtype="uint8") as ds:
            ds.write(np.arange(1200, dtype="uint8").reshape(1, 30, 40))
    return path


def open_like_gdal(path: Path) -> rasterio.DatasetReader:
    """Open with GDAL's defaults: it reads the side files."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def assert_same_rpc(ours: RPC, gdal: RPC, *, with_errors: bool = True) -> None:
    for field in RPC_FIELDS:
        if not with_errors and field.startswith("err_"):
            continue
        assert getattr(ours, field) == getattr(gdal, field), field


def rpc_txt_text(rpc: RPC, *, units: bool = True) -> str:
    """The RPC00B ``_rpc.txt`` layout, with the unit words GeoEye writes after the values."""
    unit = {"line": "pixels", "samp": "pixels", "lat": "degrees", "long": "degrees", "height": "meters"}
    lines = [f"ERR_BIAS: {rpc.err_bias}", f"ERR_RAND: {rpc.err_rand}"]
    for axis in ("line", "samp", "lat", "long", "height"):
        for kind in ("off", "scale"):
            word = f" {unit[axis]}" if units else ""
            lines.append(f"{axis.upper()}_{kind.upper()}: {getattr(rpc, f'{axis}_{kind}'):+.15E}{word}")
    for name in ("line_num_coeff", "line_den_coeff", "samp_num_coeff", "samp_den_coeff"):
        lines.extend(f"{name.upper()}_{i}: {v:+.15E}" for i, v in enumerate(getattr(rpc, name), start=1))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# What GDAL applies from each file equals what rspolicy parses from it
# ---------------------------------------------------------------------------

def test_rpb_matches_gdal(tmp_path: Path) -> None:
    image = write_image(tmp_path / "X.tiff")
    rpb = tmp_path / "X.rpb"
    rpb.write_text(rpb_text(sample_rpc()), encoding="ascii")
    with open_like_gdal(image) as ds:
        gdal = ds.rpcs
    assert gdal is not None
    ours = parse_rpb(rpb)
    assert_same_rpc(ours, gdal)
    assert ours.height_off == 52.5 and ours.err_bias == 3.25
    assert companion_kind(rpb.name, image.name) is CompanionKind.RPB


def test_rpc_txt_with_units_matches_gdal(tmp_path: Path) -> None:
    image = write_image(tmp_path / "X.tiff")
    rpc_txt = tmp_path / "X_rpc.txt"
    rpc_txt.write_text(rpc_txt_text(sample_rpc()), encoding="ascii")
    with open_like_gdal(image) as ds:
        gdal = ds.rpcs
    assert gdal is not None
    ours = parse_rpc_txt(rpc_txt)
    assert_same_rpc(ours, gdal)
    assert ours.lat_off == pytest.approx(39.9) and ours.line_num_coeff[2] == -1.0
    assert companion_kind(rpc_txt.name, image.name) is CompanionKind.RPC_TXT


@pytest.mark.parametrize(("image_name", "extension"), [
    ("X.tiff", "tfw"), ("X.tif", "tifw"), ("X.tiff", "tiffw"), ("X.tiff", "wld")])
def test_world_file_matches_gdal(tmp_path: Path, image_name: str, extension: str) -> None:
    # GDAL looks for <ext>w beside the image (X.tif -> X.tifw) besides .tfw and .wld.
    image = write_image(tmp_path / image_name)
    world = tmp_path / f"X.{extension}"
    # Rotated grid, 0.5 m along x, 0.75 m along y: centre of the upper-left pixel at (500000.25, 4400000.0).
    world.write_text("0.5\n0.1\n-0.2\n-0.75\n500000.25\n4400000.0\n", encoding="ascii")
    with open_like_gdal(image) as ds:
        gdal = ds.transform
    ours = parse_world_file(world)
    assert ours == gdal
    assert ours == Affine(0.5, -0.2, 500000.25 - 0.25 + 0.1, 0.1, -0.75, 4400000.0 - 0.05 + 0.375)
    assert companion_kind(world.name, image.name) is CompanionKind.WORLD


def test_pam_georeferencing_and_rpc_written_by_gdal(tmp_path: Path) -> None:
    image = write_image(tmp_path / "X.png", driver="PNG")
    rpc = sample_rpc()
    with rasterio.Env(GDAL_PAM_ENABLED="YES"), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(image, "r+") as ds:
            ds.transform = Affine(0.5, 0.0, 440720.0, 0.0, -0.5, 3751320.0)
            ds.crs = CRS.from_epsg(32650)
            ds.update_tags(ACQUISITION="2024-01-01")
            ds.update_tags(ns="RPC", **rpc.to_gdal())
    pam = tmp_path / "X.png.aux.xml"
    assert pam.exists()
    with open_like_gdal(image) as ds:
        gdal_transform, gdal_crs, gdal_rpc = ds.transform, ds.crs, ds.rpcs
    info = parse_pam(pam)
    assert isinstance(info, PamInfo)
    assert info.geotransform == gdal_transform == Affine(0.5, 0.0, 440720.0, 0.0, -0.5, 3751320.0)
    assert info.srs_wkt is not None and CRS.from_wkt(info.srs_wkt) == gdal_crs
    assert info.rpc is not None and gdal_rpc is not None
    # GDAL does not write the error estimates into metadata (rasterio's to_gdal drops them).
    assert_same_rpc(info.rpc, gdal_rpc, with_errors=False)
    assert info.rpc.line_num_coeff == rpc.line_num_coeff
    assert info.gcps == () and info.gcp_srs_wkt is None
    assert info.other == ("Metadata",)
    assert companion_kind(pam.name, image.name) is CompanionKind.PAM


def test_pam_gcps_written_by_gdal(tmp_path: Path) -> None:
    image = write_image(tmp_path / "X.png", driver="PNG")
    written = [GroundControlPoint(row=0.5, col=0.5, x=116.0, y=40.0, z=0.0),
               GroundControlPoint(row=29.5, col=0.5, x=116.0, y=39.99, z=12.5),
               GroundControlPoint(row=0.5, col=39.5, x=116.01, y=40.0, z=0.0)]
    with rasterio.Env(GDAL_PAM_ENABLED="YES"), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(image, "r+") as ds:
            ds.gcps = (written, CRS.from_epsg(4326))
    with open_like_gdal(image) as ds:
        gdal_gcps, gdal_crs = ds.gcps
    info = parse_pam(tmp_path / "X.png.aux.xml")
    assert len(info.gcps) == len(gdal_gcps) == 3
    for ours, gdal in zip(info.gcps, gdal_gcps, strict=True):
        assert (ours.row, ours.col, ours.x, ours.y, ours.z) == (gdal.row, gdal.col, gdal.x, gdal.y, gdal.z)
        assert ours.id == gdal.id
    assert info.gcps[1].z == 12.5 and info.gcps[2].col == 39.5
    assert info.gcp_srs_wkt is not None and CRS.from_wkt(info.gcp_srs_wkt) == gdal_crs
    assert info.geotransform is None and info.rpc is None


# ---------------------------------------------------------------------------
# Real distributor files
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gf1_pms1_mss_l1a.rpb", "gf2_pms1_pan_l1a.rpb"])
def test_real_rpb_files_parse_as_gdal_reads_them(tmp_path: Path, name: str) -> None:
    source = real_file(name)
    rpc = parse_rpb(source)
    image = write_image(tmp_path / "scene.tiff")
    (tmp_path / "scene.rpb").write_bytes(source.read_bytes())
    with open_like_gdal(image) as ds:
        gdal = ds.rpcs
    assert gdal is not None
    assert_same_rpc(rpc, gdal)
    assert rpc.line_den_coeff[0] == 1.0 and rpc.height_scale == 5000.0
    assert 0 < abs(rpc.lat_off) < 90 and rpc.line_scale > 1000


# ---------------------------------------------------------------------------
# Each failure names the file and the field
# ---------------------------------------------------------------------------

def refused(path: Path, parser: object, *expected: str) -> str:
    assert callable(parser)
    with pytest.raises(ProductReadError) as caught:
        parser(path)
    message = str(caught.value)
    assert caught.value.path == str(path)
    assert "\n" not in message
    for word in expected:
        assert word in message, message
    return message


def valid_rpb() -> str:
    return rpb_text(sample_rpc())


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda t: t.replace("\tlineScale", "\tnotAScale"), ["notAScale", "unknown key"]),
    (lambda t: _drop_line(t, "sampScale"), ["IMAGE.sampScale", "missing"]),
    (lambda t: t.replace("\tlineOffset = 15", "\tlineOffset = 16.0;\n\tlineOffset = 15"), ["lineOffset", "twice"]),
    (lambda t: t.replace("\theightScale = 500.000000000000000", "\theightScale = 0.0"), ["heightScale", "zero"]),
    (lambda t: t.replace("\tlatScale =", "\tlatScale = nan;\n\tlatScale2 =", 1), ["latScale", "not a number"]),
    (lambda t: t.replace("\theightOffset = 52.5", "\theightOffset = 1e999;\n\tx = 5"), ["heightOffset", "finite"]),
    (lambda t: t.replace("\theightOffset = 52.5", "\theightOffset = 5_2.5"), ["line"]),
    (lambda t: t.replace(",\n\t\t\t+2.000000000000000E-03", "", 1), ["IMAGE.lineNumCoef", "19 coefficients"]),
    (lambda t: t.replace("+2.000000000000000E-03", "+2.0E-03,\n\t\t\t+2.0E-03", 1),
     ["IMAGE.lineNumCoef", "21 coefficients"]),
    (lambda t: t + "satId = \"again\";\n", ["trailing text after END"]),
    (lambda t: t.replace("END;", ""), ["END"]),
    (lambda t: t.replace("\tlineOffset = 15.000000000000000;", "\tlineOffset = 15.0 pixels;"), ["line"]),
    (lambda t: t.replace("\tlineOffset = 15.000000000000000;", "\tlineOffset = (15.0);"), ["lineOffset", "number"]),
])
def test_rpb_failures_name_the_field(tmp_path: Path, edit: object, expected: list[str]) -> None:
    assert callable(edit)
    text = edit(valid_rpb())
    assert text != valid_rpb()
    path = tmp_path / "X.rpb"
    path.write_text(text, encoding="utf-8")
    refused(path, parse_rpb, *expected)


def _drop_line(text: str, key: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith(key)) + "\n"


def test_rpb_same_key_twice_with_same_value_is_accepted(tmp_path: Path) -> None:
    text = valid_rpb().replace("\tlineOffset = 15.000000000000000;",
                               "\tlineOffset = 15.000000000000000;\n\tLINEOFFSET = 15.000000000000000;")
    path = tmp_path / "X.rpb"
    path.write_text(text, encoding="ascii")
    assert parse_rpb(path).line_off == 15.0


def test_rpb_without_error_estimates_is_read_like_gdal(tmp_path: Path) -> None:
    image = write_image(tmp_path / "X.tiff")
    rpb = tmp_path / "X.rpb"
    rpb.write_text(_drop_line(_drop_line(valid_rpb(), "errBias"), "errRand"), encoding="ascii")
    with open_like_gdal(image) as ds:
        gdal = ds.rpcs
    ours = parse_rpb(rpb)
    assert ours.err_bias is None and ours.err_rand is None
    assert gdal is not None
    assert_same_rpc(ours, gdal, with_errors=False)


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda t: _drop_line(t, "LINE_NUM_COEFF_7:"), ["LINE_NUM_COEFF_7", "missing"]),
    (lambda t: _drop_line(t, "LONG_OFF:"), ["LONG_OFF", "missing"]),
    (lambda t: t + "LAT_OFF: +1.0 degrees\n", ["LAT_OFF", "twice"]),
    (lambda t: t + "LINE_NUM_COEFF_21: 0.0\n", ["LINE_NUM_COEFF_21", "unknown key"]),
    (lambda t: t.replace(" pixels\nSAMP_OFF", " degrees\nSAMP_OFF", 1), ["LINE_SCALE", "not one number"]),
    (lambda t: t.replace(" degrees\nLAT_SCALE", " degrees extra\nLAT_SCALE", 1), ["LAT_OFF", "not one number"]),
    (lambda t: _set_line(t, "LAT_SCALE", "LAT_SCALE: 0.0 degrees"), ["LAT_SCALE", "zero"]),
    (lambda t: _set_line(t, "SAMP_DEN_COEFF_5", "SAMP_DEN_COEFF_5: inf"), ["SAMP_DEN_COEFF_5", "not a number"]),
    (lambda t: t.replace("LINE_OFF:", "  LINE_OFF:"), ["line 3", "KEY: value"]),
    (lambda t: _set_line(t, "LAT_OFF", "LAT_OFF: +95.0 degrees"), ["LAT_OFF", "latitude"]),
])
def test_rpc_txt_failures_name_the_field(tmp_path: Path, edit: object, expected: list[str]) -> None:
    assert callable(edit)
    original = rpc_txt_text(sample_rpc())
    text = edit(original)
    assert text != original
    path = tmp_path / "X_rpc.txt"
    path.write_text(text, encoding="utf-8")
    refused(path, parse_rpc_txt, *expected)


def _set_line(text: str, key: str, replacement: str) -> str:
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(key + ":"))
    lines[index] = replacement
    return "\n".join(lines) + "\n"


def test_rpc_txt_without_units_and_with_crlf_parses(tmp_path: Path) -> None:
    path = tmp_path / "X_rpc.txt"
    path.write_bytes(rpc_txt_text(sample_rpc(), units=False).replace("\n", "\r\r\n").encode("ascii"))
    ours = parse_rpc_txt(path)
    assert_same_rpc(ours, parse_rpc_txt_reference())


def parse_rpc_txt_reference() -> RPC:
    """The sample RPC after the %.15E round trip of rpc_txt_text."""
    rpc = sample_rpc()
    for field in RPC_FIELDS:
        value = getattr(rpc, field)
        if isinstance(value, list):
            setattr(rpc, field, [float(f"{v:+.15E}") for v in value])
        elif not field.startswith("err_"):
            setattr(rpc, field, float(f"{value:+.15E}"))
    return rpc


@pytest.mark.parametrize(("text", "expected"), [
    ("0.5\n0\n0\n-0.5\n100\n", ["5 values", "six"]),
    ("0.5\n0\n0\n-0.5\n100\n200\n7\n", ["7 values", "six"]),
    ("0.5 0\n0\n-0.5\n100\n200\n", ["one a line"]),
    ("0.5\n\n0\n0\n-0.5\n100\n200\n", ["one a line"]),
    ("0.5\n0\n0\n-0.5\n1e400\n200\n", ["line 5", "not finite"]),
    ("0x10\n0\n0\n-0.5\n100\n200\n", ["line 1", "not a number"]),
    ("0.5\n0\n0\nNaN\n100\n200\n", ["line 4", "not a number"]),
    ("0.5\n0\n0\n0\n100\n200\n", ["degenerate"]),
])
def test_world_file_failures(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "X.tfw"
    path.write_text(text, encoding="ascii")
    refused(path, parse_world_file, *expected)


def test_world_file_trailing_blank_lines_and_crlf_are_accepted_but_not_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "X.wld"
    path.write_bytes(b"2\r\n0\r\n0\r\n-2\r\n11\r\n21\r\n\r\n\r\n")
    assert parse_world_file(path) == Affine(2.0, 0.0, 10.0, 0.0, -2.0, 22.0)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    refused(path, parse_world_file, "byte-order mark")


PAM_HEAD = "<PAMDataset>\n"
UTM_WKT = CRS.from_epsg(32650).to_wkt()
GEO_WKT_LAT_FIRST = CRS.from_epsg(4326).to_wkt()


def pam_text(*elements: str) -> str:
    return PAM_HEAD + "\n".join(elements) + "\n</PAMDataset>\n"


GEOTRANSFORM = "<GeoTransform>440720, 0.5, 0, 3751320, 0, -0.5</GeoTransform>"


@pytest.mark.parametrize(("text", "expected"), [
    ("<PAMDatasetX></PAMDatasetX>", ["not <PAMDataset>"]),
    (pam_text("<GeoTransform>1, 2, 3, 4, 5</GeoTransform>"), ["<GeoTransform>", "5 values"]),
    (pam_text("<GeoTransform>1, 2, 0, 4, 0, nan</GeoTransform>"), ["<GeoTransform>", "not a number"]),
    (pam_text("<GeoTransform>1, 0, 0, 4, 0, 0</GeoTransform>"), ["<GeoTransform>", "degenerate"]),
    (pam_text(GEOTRANSFORM, GEOTRANSFORM.replace("GeoTransform", "geotransform")), ["GeoTransform", "twice"]),
    (pam_text("<SRS>not a crs</SRS>"), ["<SRS>", "coordinate reference system"]),
    (pam_text("<SRS></SRS>"), ["<SRS>", "empty"]),
    (pam_text(f'<SRS dataAxisToSRSAxisMapping="1,2">{GEO_WKT_LAT_FIRST}</SRS>'),
     ["<SRS>", "dataAxisToSRSAxisMapping"]),
    (pam_text('<GCPList><GCP Id="1" Line="0.5" X="116" Y="40"/></GCPList>'), ["<GCP> 1", "Pixel"]),
    (pam_text('<GCPList><GCP Pixel="0.5" Line="inf" X="116" Y="40"/></GCPList>'), ["<GCP> 1 Line"]),
    (pam_text('<GCPList><GCP Pixel="0.5" Line="1" X="116" Y="40" W="2"/></GCPList>'), ["unknown attribute"]),
    (pam_text('<Metadata domain="RPC"><MDI key="LINE_OFF">1</MDI><MDI key="LINE_OFF">2</MDI></Metadata>'),
     ["LINE_OFF", "twice"]),
    (pam_text('<Metadata domain="RPC"><MDI key="LINE_OFF">1</MDI></Metadata>'), ["RPC item", "missing"]),
    (pam_text('<Metadata domain="RPC"><MDI key="BOGUS">1</MDI></Metadata>'), ["BOGUS", "not an RPC field"]),
    (pam_text('<Metadata domain="RPC"/>', '<Metadata domain="rpc"/>'), ["RPC", "twice"]),
    ("<PAMDataset><GeoTransform>", ["not well-formed"]),
    # Digits and blanks Python's float() and str.split() take but GDAL does not.
    (pam_text("<GeoTransform>\u0661, 0.5, 0, 4, 0, -0.5</GeoTransform>"), ["<GeoTransform>", "not a number"]),
    (pam_text('<Metadata domain="RPC"><MDI key="LINE_NUM_COEFF">1.0\u00a00.0</MDI></Metadata>'),
     ["LINE_NUM_COEFF", "not a number"]),
])
def test_pam_failures_name_the_element(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "X.tiff.aux.xml"
    path.write_text(text, encoding="utf-8")
    refused(path, parse_pam, *expected)


def test_pam_rpc_domain_checks_polynomials(tmp_path: Path) -> None:
    items = dict(sample_rpc().to_gdal())
    items["SAMP_NUM_COEFF"] = " ".join(["0.5"] * 19)
    body = "".join(f'<MDI key="{k}">{v}</MDI>' for k, v in items.items())
    path = tmp_path / "X.aux.xml"
    path.write_text(pam_text(f'<Metadata domain="RPC">{body}</Metadata>'), encoding="utf-8")
    refused(path, parse_pam, "SAMP_NUM_COEFF", "19 coefficients")


def test_pam_lists_what_it_does_not_use(tmp_path: Path) -> None:
    path = tmp_path / "X.aux.xml"
    path.write_text(pam_text(
        f'<SRS dataAxisToSRSAxisMapping="1,2">{UTM_WKT}</SRS>', GEOTRANSFORM,
        '<Metadata><MDI key="AREA_OR_POINT">Point</MDI></Metadata>',
        '<Metadata domain="xml:ESRI" format="xml"><GeodataXform/></Metadata>',
        '<Metadata domain="a&#10;b"/>',
        '<PAMRasterBand band="1"><NoDataValue>0</NoDataValue></PAMRasterBand>'), encoding="utf-8")
    info = parse_pam(path)
    assert info.geotransform == Affine(0.5, 0.0, 440720.0, 0.0, -0.5, 3751320.0)
    assert info.other == ("Metadata", 'Metadata domain="xml:ESRI"', "Metadata domain=\"'a\\nb'\"",
                          'PAMRasterBand band="1"')


def test_pam_entity_expansion_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "X.aux.xml"
    path.write_text('<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>\n'
                    "<PAMDataset><SRS>&lol2;</SRS></PAMDataset>\n", encoding="utf-8")
    refused(path, parse_pam, "unsafe XML")


def test_pam_declaring_another_encoding_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "X.aux.xml"
    path.write_bytes(b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<PAMDataset></PAMDataset>\n')
    refused(path, parse_pam, "ISO-8859-1", "not UTF-8")


PARSERS = {"X.rpb": parse_rpb, "X_rpc.txt": parse_rpc_txt, "X.tfw": parse_world_file, "X.aux.xml": parse_pam}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_non_utf8_and_nul_are_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\xff\xfe1\n")
    refused(path, PARSERS[name], "not UTF-8" if name.endswith(".xml") else "not ASCII")
    if not name.endswith(".xml"):
        # Valid UTF-8, but a line separator GDAL does not split on.
        path.write_bytes("1\u20282\n".encode())
        refused(path, PARSERS[name], "not ASCII", "0xe2")
    path.write_bytes(b"1\x002\n")
    refused(path, PARSERS[name], "control character")


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_oversized_files_are_refused_unread(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    limit = MAX_PAM_BYTES if name.endswith(".xml") else MAX_RPC_BYTES
    with path.open("wb") as handle:
        handle.truncate(limit + 1)  # sparse: the parser must refuse it from its size alone
    refused(path, PARSERS[name], str(limit + 1), "bytes")


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_fifo_directory_and_missing_file_are_refused_without_hanging(tmp_path: Path, name: str) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / name
    os.mkfifo(fifo)
    refused(fifo, PARSERS[name], "not a regular file")
    directory = tmp_path / "d" / name
    directory.mkdir(parents=True)
    refused(directory, PARSERS[name])
    refused(tmp_path / "missing" / name, PARSERS[name], "cannot open")


# ---------------------------------------------------------------------------
# Any bytes: ProductReadError or a sound result, never anything else, never a hang
# ---------------------------------------------------------------------------

def _valid_world() -> bytes:
    return b"0.5\n0.0\n0.0\n-0.5\n440720.25\n3751319.75\n"


def _valid_pam() -> bytes:
    items = "".join(f'<MDI key="{k}">{v}</MDI>' for k, v in sample_rpc().to_gdal().items())
    return pam_text(f"<SRS>{UTM_WKT}</SRS>", GEOTRANSFORM,
                    '<GCPList><GCP Id="1" Pixel="0.5" Line="0.5" X="116" Y="40"/></GCPList>',
                    f'<Metadata domain="RPC">{items}</Metadata>').encode()


VALID = {
    "X.rpb": lambda: valid_rpb().encode(),
    "X_rpc.txt": lambda: rpc_txt_text(sample_rpc()).encode(),
    "X.tfw": _valid_world,
    "X.aux.xml": _valid_pam,
}


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["flip", "insert", "delete", "replace"]))
        if operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8)
                                           | st.sampled_from([b";", b"(", b")", b",", b"=", b"nan", b"<", b"&", b"\n"]))
        elif position < len(data):
            if operation == "flip":
                data[position] ^= 1 << draw(st.integers(0, 7))
            elif operation == "delete":
                del data[position:position + draw(st.integers(1, 16))]
            else:
                data[position] = draw(st.integers(0, 255))
    return bytes(data)


def _assert_sound(result: object) -> None:
    if isinstance(result, RPC):
        for field in RPC_FIELDS:
            value = getattr(result, field)
            values = value if isinstance(value, list) else [value]
            assert all(v is None or math.isfinite(v) for v in values), field
        assert len(result.line_num_coeff) == 20 and result.line_scale != 0 and result.lat_scale != 0
    elif isinstance(result, Affine):
        assert all(math.isfinite(v) for v in result[:6]) and result.determinant != 0
    else:
        assert isinstance(result, PamInfo)
        if result.rpc is not None:
            _assert_sound(result.rpc)
        if result.geotransform is not None:
            _assert_sound(result.geotransform)


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_files_never_raise_anything_else(name: str, data: st.DataObject) -> None:
    content = data.draw(mutated(VALID[name]()))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        try:
            result = PARSERS[name](path)
        except ProductReadError as exc:
            assert exc.path == str(path) and "\n" not in str(exc)
            return
        _assert_sound(result)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_unmutated_valid_files_parse(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(VALID[name]())
    _assert_sound(PARSERS[name](path))


# ---------------------------------------------------------------------------
# companion_kind
# ---------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "kind"), [
    ("X.rpb", CompanionKind.RPB), ("X.RPB", CompanionKind.RPB), ("x.Rpb", CompanionKind.RPB),
    ("X_rpc.txt", CompanionKind.RPC_TXT), ("X_RPC.TXT", CompanionKind.RPC_TXT),
    ("X.tfw", CompanionKind.WORLD), ("X.tifw", CompanionKind.WORLD), ("X.tiffw", CompanionKind.WORLD),
    ("X.wld", CompanionKind.WORLD), ("X.TFW", CompanionKind.WORLD),
    ("X.tiff.aux.xml", CompanionKind.PAM), ("X.aux.xml", CompanionKind.PAM),
    ("X.tiff.ovr", CompanionKind.OVERVIEW), ("X.ovr", CompanionKind.OVERVIEW), ("X.OVR", CompanionKind.OVERVIEW),
    ("X.tiff.msk", CompanionKind.MASK), ("X.msk", CompanionKind.MASK),
    ("X.jpg", CompanionKind.BROWSE), ("X.jpeg", CompanionKind.BROWSE), ("X.png", CompanionKind.BROWSE),
    ("X.bmp", CompanionKind.BROWSE), ("X.GIF", CompanionKind.BROWSE),
    ("X.xml", CompanionKind.XML_SIDECAR), ("X.tiff.ovr.aux.xml", CompanionKind.OTHER),
    ("X.imd", CompanionKind.OTHER), ("X.tiff.aux", CompanionKind.OTHER),
    ("X.tiff", None), ("x.TIFF", None), ("Y.rpb", None), ("XY.rpb", None),
])
def test_companion_kind_of_each_name_gdal_consults(name: str, kind: CompanionKind | None) -> None:
    assert companion_kind(name, "X.tiff") is kind


def test_companion_kind_follows_the_image_extension() -> None:
    assert companion_kind("scene.tfw", "scene.tif") is CompanionKind.WORLD
    assert companion_kind("scene.tifw", "scene.tif") is CompanionKind.WORLD
    assert companion_kind("GF2_PAN1.rpb", "GF2_PAN1.TIFF") is CompanionKind.RPB
    assert companion_kind("GF2_PAN1.rpb", "GF2_MSS1.tiff") is None
