"""Hostile sidecars and HDF5 files: whatever they hold, they read as the file says or are refused.

Each attack is made on a sidecar shaped like the real ones (written by
rspolicy.samples) and must end as a ProductReadError naming the file, never
as a finer pixel passed through, a crash or a traceback.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rspolicy.errors import ProductReadError
from rspolicy.model import Evidence, Fact, ProductClass, Strength
from rspolicy.readers import hdf5 as hdf5_reader
from rspolicy.readers.cbers import read_cbers_sidecar
from rspolicy.readers.gf3_sar import read_gf3_sidecar
from rspolicy.readers.gf_optical import read_gf_optical_sidecar
from rspolicy.readers.hdf5 import filename_resolution_m, read_hdf5
from rspolicy.readers.hy import read_hy_sidecar
from rspolicy.readers.xmlutil import (
    MAX_LENGTH_M,
    MAX_PIXEL_COUNT,
    MAX_SIDECAR_BYTES,
    MIN_LENGTH_M,
    find_text,
    parse_float,
    parse_xml,
)
from rspolicy.samples.cbers import write_cbers_prdf
from rspolicy.samples.gf3 import write_gf3_meta
from rspolicy.samples.gf_optical import OpticalScene, write_sidecar
from rspolicy.samples.hdf5 import write_fy3_mersi, write_hy1c_czi

from .conftest import REAL_METADATA, real_metadata_dir

Reader = Callable[[Path, str], list[Evidence]]


# --- the real samples ---------------------------------------------------------------------------

def real_dir() -> Path:
    """The real sidecars; skipped when absent, except in CI where they must be there."""
    return real_metadata_dir()


def test_missing_real_samples_fail_in_ci_and_skip_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.conftest.REAL_METADATA", tmp_path / "absent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        real_dir()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        real_dir()


def real_xml_names() -> list[str]:
    return sorted(p.name for p in REAL_METADATA.glob("*.xml")) if REAL_METADATA.is_dir() else ["(absent)"]


def reader_for(name: str) -> Reader | None:
    if name.startswith("gf3_"):
        return read_gf3_sidecar
    if name.startswith("cbers"):
        return read_cbers_sidecar
    if name.startswith(("gf1_", "gf2_", "gf4_")) and "order" not in name:
        return read_gf_optical_sidecar
    return None


@pytest.mark.parametrize("name", real_xml_names())
def test_every_real_sample_still_parses_and_reads(name: str) -> None:
    path = real_dir() / name
    root = parse_xml(path)
    assert root.tag
    reader = reader_for(name)
    if reader is not None:
        evidence = reader(path, name)
        assert any(e.fact is Fact.GSD for e in evidence), "a real sidecar gives its resolution"


#: What each real GF-1/2/4 sidecar says (see /work/shared/real_metadata/SOURCES.md).
GF_OPTICAL_REAL = [
    ("gf1_pms1_mss_l1a.xml", "GF1", "PMS1", 8.0, "1,2,3,4", ProductClass.MULTISPECTRAL, (4548, 4503)),
    ("gf1_pms1_pan_l1a.xml", "GF1", "PMS1", 2.0, "5", ProductClass.PANCHROMATIC, (18192, 18000)),
    ("gf1_wfv3_l1a.xml", "GF1", "WFV3", 16.0, "1,2,3,4", ProductClass.MULTISPECTRAL, (12000, 13719)),
    ("gf2_pms1_mss_l1a.xml", "GF2", "PMS1", 3.24, "1,2,3,4", ProductClass.MULTISPECTRAL, (7300, 6908)),
    ("gf2_pms1_pan_l1a.xml", "GF2", "PMS1", 0.81, "5", ProductClass.PANCHROMATIC, (29200, 27620)),
    ("gf2_pms2_mss_l1a_2018.xml", "GF2", "PMS2", 3.24, "1,2,3,4", ProductClass.MULTISPECTRAL, (7300, 6908)),
    ("gf2_pms2_pan_l1a_2018.xml", "GF2", "PMS2", 0.81, "5", ProductClass.PANCHROMATIC, (29200, 27620)),
    ("gf2_pms2_mss_l1a_2023_extended.xml", "GF2", "PMS2", 3.24, "1,2,3,4", ProductClass.MULTISPECTRAL, (7300, 6908)),
    ("gf2_pms2_pan_l1a_2023_extended.xml", "GF2", "PMS2", 0.81, "5", ProductClass.PANCHROMATIC, (29200, 27620)),
    ("gf4_pms_l1a.xml", "GF4", "PMI", 50.0, "1,2,3,4,5", ProductClass.MULTISPECTRAL, (10240, 10240)),
    ("gf4_irs_l1a.xml", "GF4", "PMI", 400.0, "1", None, (1024, 1024)),
]


@pytest.mark.parametrize("case", GF_OPTICAL_REAL, ids=[c[0] for c in GF_OPTICAL_REAL])
def test_gf_optical_reader_on_real_sidecars(case: tuple[Any, ...]) -> None:
    name, satellite, sensor, gsd, bands, hint, (width, height) = case
    path = real_dir() / name
    text = path.read_text(encoding="utf-8")
    # The expectation is the file's own text, not the reader's idea of it.
    assert re.search(rf"<ImageGSD>{gsd:g}(?:\.0*)?</ImageGSD>|<ImageGSD>{gsd}0*</ImageGSD>", text)
    ev = read_gf_optical_sidecar(path, name)
    by_fact = {fact: [e.value for e in ev if e.fact is fact] for fact in Fact}
    assert by_fact[Fact.SATELLITE] == [satellite]
    assert by_fact[Fact.SENSOR] == [sensor]
    assert by_fact[Fact.GSD] == [gsd]
    assert by_fact[Fact.BAND_NUMBERS] == [bands]
    assert (by_fact[Fact.WIDTH], by_fact[Fact.HEIGHT]) == ([width], [height])
    assert by_fact[Fact.FOOTPRINT], "the four corners give a footprint"
    hints = {e.value for e in ev if e.fact is Fact.CLASS_HINT}
    assert hints == ({hint.value} if hint else set())


def test_gf4_irs_gets_no_class_from_its_shared_sensor_id() -> None:
    # GF-4's two cameras both say PMI: the IRS sidecar must not claim a class.
    ev = read_gf_optical_sidecar(real_dir() / "gf4_irs_l1a.xml", "irs.xml")
    assert not [e for e in ev if e.fact is Fact.CLASS_HINT]


def test_wfv_sensor_hint_is_strong_on_the_real_sidecar() -> None:
    ev = read_gf_optical_sidecar(real_dir() / "gf1_wfv3_l1a.xml", "wfv.xml")
    strong = [e for e in ev if e.fact is Fact.CLASS_HINT and e.strength is Strength.STRONG]
    assert [(e.value, e.field) for e in strong] == [("multispectral", "SensorID")]


# --- sidecars shaped like the real ones ----------------------------------------------------------

def gf_optical(tmp_path: Path) -> Path:
    return write_sidecar(tmp_path / "GF2_PMS1_W91.0_N17.6_20200510_L1A0004793969-PAN1.xml", OpticalScene())


def gf3(tmp_path: Path) -> Path:
    return write_gf3_meta(tmp_path / "GF3_MYN_UFS_029108_W43.3_S22.7_20220219_L2_DH_L20006303810.meta.xml")


def cbers(tmp_path: Path) -> Path:
    return write_cbers_prdf(tmp_path / "CBERS_4A_WPM_20200730_209_139_L4_BAND0.xml")


def hy(tmp_path: Path) -> Path:
    return write_hy1c_czi(tmp_path)[1]


def edit(path: Path, pattern: str, replacement: Callable[[re.Match[str]], str]) -> Path:
    text = path.read_text(encoding="utf-8")
    new, count = re.subn(pattern, replacement, text, count=1, flags=re.S)
    assert count == 1, f"{pattern} not in {path.name}"
    path.write_text(new, encoding="utf-8")
    return path


def set_field(path: Path, tag: str, value: str) -> Path:
    """Set the first ``<tag>`` (with or without a value) to ``value``."""
    return edit(path, rf"<{tag}\s*/>|<{tag}>[^<]*</{tag}>", lambda m: f"<{tag}>{escape(value)}</{tag}>")


def repeat_field(path: Path, tag: str, value: str) -> Path:
    """Write ``<tag>`` a second time, right after the first, with ``value``."""
    return edit(path, rf"<{tag}>[^<]*</{tag}>", lambda m: f"{m.group(0)}<{tag}>{escape(value)}</{tag}>")


#: reader, sidecar writer, a resolution field (tag as written), a finer value.
RESOLUTION_FIELDS = [
    ("gf_optical/ImageGSD", read_gf_optical_sidecar, gf_optical, "ImageGSD", "0.3"),
    ("gf3/NominalResolution", read_gf3_sidecar, gf3, "NominalResolution", "0.3"),
    ("gf3/widthspace", read_gf3_sidecar, gf3, "widthspace", "0.3"),
    ("gf3/heightspace", read_gf3_sidecar, gf3, "heightspace", "0.3"),
    ("cbers/horizontalPixelSize", read_cbers_sidecar, cbers, "horizontalPixelSize", "0.3"),
    ("cbers/verticalPixelSize", read_cbers_sidecar, cbers, "verticalPixelSize", "0.3"),
    ("hy/Resolution", read_hy_sidecar, hy, "Resolution", "0.3"),
]
IDS = [case[0] for case in RESOLUTION_FIELDS]


@pytest.mark.parametrize(("name", "reader", "writer", "tag", "finer"), RESOLUTION_FIELDS, ids=IDS)
def test_a_repeated_field_with_another_value_blocks(tmp_path: Path, name: str, reader: Reader,
                                                    writer: Callable[[Path], Path], tag: str, finer: str) -> None:
    path = repeat_field(writer(tmp_path), tag, finer)
    with pytest.raises(ProductReadError, match=rf"<[\w/]*{tag}> appears 2 times with different values") as exc:
        reader(path, path.name)
    assert exc.value.path == str(path)
    assert finer in str(exc.value)


@pytest.mark.parametrize(("name", "reader", "writer", "tag", "finer"), RESOLUTION_FIELDS, ids=IDS)
def test_an_equal_repeat_reads_as_one_value(tmp_path: Path, name: str, reader: Reader,
                                            writer: Callable[[Path], Path], tag: str, finer: str) -> None:
    clean = writer(tmp_path)
    before = reader(clean, "x")
    text = clean.read_text(encoding="utf-8")
    written = re.search(rf"<{tag}>([^<]*)</{tag}>", text)
    assert written is not None
    path = repeat_field(clean, tag, written.group(1))
    assert reader(path, "x") == before


@pytest.mark.parametrize(("name", "reader", "writer", "tag", "finer"), RESOLUTION_FIELDS, ids=IDS)
def test_an_empty_copy_beside_a_value_blocks(tmp_path: Path, name: str, reader: Reader,
                                             writer: Callable[[Path], Path], tag: str, finer: str) -> None:
    # The first copy empty, the second finer: reading the first would drop the evidence.
    path = edit(writer(tmp_path), rf"<{tag}>[^<]*</{tag}>", lambda m: f"<{tag} />{m.group(0)}")
    with pytest.raises(ProductReadError, match="appears 2 times with different values"):
        reader(path, path.name)


def test_gf_optical_repeat_of_the_issue_example(tmp_path: Path) -> None:
    path = set_field(gf_optical(tmp_path), "ImageGSD", "2.0")
    repeat_field(path, "ImageGSD", "0.3")
    with pytest.raises(ProductReadError) as exc:
        read_gf_optical_sidecar(path, "x")
    assert str(exc.value) == f"{path}: <ImageGSD> appears 2 times with different values (2.0, 0.3)"


@pytest.mark.parametrize("tag", ["WidthInPixels", "SatelliteID", "SensorID", "Bands", "TopLeftLatitude"])
def test_gf_optical_every_field_read_counts_every_copy(tmp_path: Path, tag: str) -> None:
    path = gf_optical(tmp_path)
    text = path.read_text(encoding="utf-8")
    written = re.search(rf"<{tag}>([^<]*)</{tag}>", text)
    assert written is not None
    repeat_field(path, tag, "1" if written.group(1) != "1" else "2")
    with pytest.raises(ProductReadError, match=f"<{tag}> appears 2 times"):
        read_gf_optical_sidecar(path, "x")


def test_gf3_repeated_parent_block_counts(tmp_path: Path) -> None:
    # A second <productinfo> after the first: its NominalResolution must not hide.
    path = gf3(tmp_path)
    edit(path, r"</productinfo>", lambda m: "</productinfo><productinfo><NominalResolution>0.3"
                                            "</NominalResolution></productinfo>")
    with pytest.raises(ProductReadError, match=r"<productinfo/NominalResolution> appears 2 times.*0\.3"):
        read_gf3_sidecar(path, "x")


def test_gf3_polarisation_list_reads_every_mode(tmp_path: Path) -> None:
    # polarParams is a list: two different <polar> entries are the point, not an error.
    path = gf3(tmp_path)
    edit(path, r"</polar>", lambda m: "</polar><polar><polarMode>VV</polarMode></polar>")
    ev = read_gf3_sidecar(path, "x")
    polar = [(e.value, e.field) for e in ev if e.fact is Fact.POLARISATION]
    assert ("VV", "sensor/polarParams/polar/polarMode") in polar
    assert polar[0] == ("DH", "productinfo/productPolar")


def test_gf3_real_lists_are_not_scalar_fields() -> None:
    # The real FSI sidecar repeats <GPSParam> 190 and <ATTIParam> 379 times with different values.
    path = real_dir() / "gf3_fsi_hhhv_l2_meta.xml"
    assert path.read_text(encoding="utf-8").count("<GPSParam>") > 100
    assert min(float(e.value) for e in read_gf3_sidecar(path, "x") if e.fact is Fact.GSD) == 2.5


def test_hy_repeated_parent_block_counts(tmp_path: Path) -> None:
    path = hy(tmp_path)
    edit(path, r"</ProductMetaData>", lambda m: "<ProductInfo><Resolution>0.3</Resolution></ProductInfo>"
                                                "</ProductMetaData>")
    with pytest.raises(ProductReadError, match=r"<Resolution> appears 2 times with different values \(50, 0\.3\)"):
        read_hy_sidecar(path, "x")


def test_cbers_repeated_image_block_counts(tmp_path: Path) -> None:
    path = cbers(tmp_path)
    edit(path, r"</prdf>", lambda m: "<image><horizontalPixelSize>0.3</horizontalPixelSize></image></prdf>")
    with pytest.raises(ProductReadError, match=r"<image/horizontalPixelSize> appears 2 times"):
        read_cbers_sidecar(path, "x")


def test_mixed_content_is_not_read_as_its_first_text(tmp_path: Path) -> None:
    path = edit(gf_optical(tmp_path), r"<ImageGSD>[^<]*</ImageGSD>", lambda m: "<ImageGSD>2.0<b/>0.3</ImageGSD>")
    with pytest.raises(ProductReadError, match=r"<ImageGSD> is not a number: '2.00.3'"):
        read_gf_optical_sidecar(path, "x")


def test_namespaced_copy_of_a_field_counts(tmp_path: Path) -> None:
    path = edit(gf_optical(tmp_path), r"<ImageGSD>[^<]*</ImageGSD>",
                lambda m: f'{m.group(0)}<x:ImageGSD xmlns:x="urn:x">0.3</x:ImageGSD>')
    with pytest.raises(ProductReadError, match="appears 2 times"):
        read_gf_optical_sidecar(path, "x")


# --- XML constructs a sidecar never has ----------------------------------------------------------

@pytest.mark.parametrize(("where", "insert", "problem"), [
    ("before root", "<!-- <ImageGSD>0.3</ImageGSD> -->", "XML comment refused"),
    ("inside", "<!-- note -->", "XML comment refused"),
    ("after root", "<!-- x -->", "XML comment refused"),
    ("before root", '<?xml-stylesheet href="x.xsl"?>', "processing instruction 'xml-stylesheet' refused"),
    ("inside", "<?php echo 1 ?>", "processing instruction 'php' refused"),
    ("before root", '<!DOCTYPE ProductMetaData [<!ELEMENT ProductMetaData ANY>]>', "DTDForbidden"),
    ("before root", '<!DOCTYPE ProductMetaData SYSTEM "http://example.invalid/x.dtd">', "DTDForbidden"),
    ("before root", '<!DOCTYPE ProductMetaData [<!ENTITY g "0.3">]>', "DTDForbidden"),
])
def test_comments_pis_and_dtds_are_refused(tmp_path: Path, where: str, insert: str, problem: str) -> None:
    path = gf_optical(tmp_path)
    anchor = {"before root": r"<ProductMetaData>", "inside": r"<ImageGSD>", "after root": r"</ProductMetaData>"}[where]
    edit(path, anchor, lambda m: (m.group(0) + insert) if where == "after root" else (insert + m.group(0)))
    with pytest.raises(ProductReadError, match=re.escape(problem)) as exc:
        parse_xml(path)
    assert exc.value.path == str(path)
    with pytest.raises(ProductReadError):
        read_gf_optical_sidecar(path, "x")


def test_the_xml_declaration_is_not_a_processing_instruction(tmp_path: Path) -> None:
    path = gf_optical(tmp_path)
    assert path.read_text(encoding="utf-8").startswith("<?xml")
    assert find_text(parse_xml(path), "ImageGSD") == "0.81"


def test_a_file_larger_than_any_sidecar_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.xml"
    with path.open("wb") as stream:
        stream.write(b"<ProductMetaData>")
        stream.write(b" " * MAX_SIDECAR_BYTES)
        stream.write(b"</ProductMetaData>")
    with pytest.raises(ProductReadError, match="larger than"):
        parse_xml(path)


@pytest.mark.parametrize(("body", "problem"), [
    ("<a>" * 100_000 + "</a>" * 100_000, "nested more than"),
    ('<?xml version="1.0" encoding="GB2312"?><ProductMetaData/>', "not readable XML"),
    ('<?xml version="1.0" encoding="x-no-such"?><ProductMetaData/>', "XML"),
    ("", "not well-formed"),
    ("<ProductMetaData>\x00</ProductMetaData>", "not well-formed"),
    ("<ProductMetaData><ImageGSD>1</ProductMetaData>", "not well-formed"),
])
def test_broken_documents_end_as_one_line_errors(tmp_path: Path, body: str, problem: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ProductReadError, match=problem) as exc:
        parse_xml(path)
    assert "\n" not in str(exc.value)
    assert str(exc.value).startswith(str(path))


# --- numbers -------------------------------------------------------------------------------------

#: Texts that are not a sane resolution, however Python's float() reads them.
ABSURD = ["1e400", "-1e400", "nan", "NaN", "inf", "-Infinity", "1e-400", "-0", "0", "0x1p-30",
          "99999999999999999999999", "1_000", "\uff11\uff10", "\u0663", "9" * 10_000, "0.0001", "-5",
          "5e7", "1.5.2", "+", ".", "1e", "abc", "1,5", "0.5m", "²"]


@pytest.mark.parametrize("text", ABSURD, ids=[t[:12] for t in ABSURD])
@pytest.mark.parametrize(("name", "reader", "writer", "tag", "finer"), RESOLUTION_FIELDS, ids=IDS)
def test_absurd_resolution_text_blocks(tmp_path: Path, name: str, reader: Reader, writer: Callable[[Path], Path],
                                       tag: str, finer: str, text: str) -> None:
    path = set_field(writer(tmp_path), tag, text)
    if name.startswith("hy/") and text == "0.5m":
        # HY writes units: 0.5 m is a sane, if fine, value and reads as one.
        assert 0.5 in [e.value for e in reader(path, "x") if e.fact is Fact.GSD]
        return
    with pytest.raises(ProductReadError) as exc:
        reader(path, "x")
    assert exc.value.path == str(path)
    assert tag in exc.value.problem


#: (reader, writer, a pixel-count tag)
COUNT_FIELDS = [
    ("gf_optical/WidthInPixels", read_gf_optical_sidecar, gf_optical, "WidthInPixels"),
    ("gf3/width", read_gf3_sidecar, gf3, "width"),
    ("cbers/columns", read_cbers_sidecar, cbers, "columns"),
    ("hy/WidthInPixels", read_hy_sidecar, hy, "WidthInPixels"),
]


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "1e400", "nan", str(MAX_PIXEL_COUNT + 1),
                                  "99999999999999999999999", "1_0", "\uff15"])
@pytest.mark.parametrize(("name", "reader", "writer", "tag"), COUNT_FIELDS, ids=[c[0] for c in COUNT_FIELDS])
def test_absurd_pixel_counts_block(tmp_path: Path, name: str, reader: Reader, writer: Callable[[Path], Path],
                                   tag: str, text: str) -> None:
    path = set_field(writer(tmp_path), tag, text)
    with pytest.raises(ProductReadError, match=tag):
        reader(path, "x")


@pytest.mark.parametrize(("name", "reader", "writer", "tag"), COUNT_FIELDS, ids=[c[0] for c in COUNT_FIELDS])
def test_pixel_count_limits_themselves_read(tmp_path: Path, name: str, reader: Reader,
                                            writer: Callable[[Path], Path], tag: str) -> None:
    path = set_field(writer(tmp_path), tag, str(MAX_PIXEL_COUNT))
    assert MAX_PIXEL_COUNT in [e.value for e in reader(path, "x") if e.fact is Fact.WIDTH]


@pytest.mark.parametrize(("reader", "writer", "tag", "text"), [
    (read_gf3_sidecar, gf3, "incidenceAngleFarRange", "90"),
    (read_gf3_sidecar, gf3, "incidenceAngleFarRange", "0"),
    (read_gf3_sidecar, gf3, "incidenceAngleFarRange", "1e-400"),
    (read_gf3_sidecar, gf3, "incidenceAngleNearRange", "nan"),
    (read_gf_optical_sidecar, gf_optical, "TopLeftLatitude", "91"),
    (read_gf_optical_sidecar, gf_optical, "TopLeftLongitude", "1e400"),
    (read_gf_optical_sidecar, gf_optical, "TopLeftLatitude", "0x10"),
    (read_hy_sidecar, hy, "TopLeftLatitude", "-1e400"),
])
def test_absurd_angles_block(tmp_path: Path, reader: Reader, writer: Callable[[Path], Path],
                             tag: str, text: str) -> None:
    path = set_field(writer(tmp_path), tag, text)
    with pytest.raises(ProductReadError, match=tag):
        reader(path, "x")


@pytest.mark.parametrize("text", ["inf", "-1e400", "91", "nan", "0x1p-30"])
def test_absurd_cbers_footprint_latitude_blocks(tmp_path: Path, text: str) -> None:
    path = edit(cbers(tmp_path), r"(<imageData>.*?<latitude>)[^<]*(</latitude>)",
                lambda m: f"{m.group(1)}{text}{m.group(2)}")
    with pytest.raises(ProductReadError, match=r"image/imageData/UL/latitude"):
        read_cbers_sidecar(path, "x")


def test_slant_to_ground_conversion_cannot_make_an_absurd_ground_spacing(tmp_path: Path) -> None:
    # 30,000 km slant spacing is within bounds; over sin(1 deg) it is not.
    path = write_gf3_meta(tmp_path / "slc.meta.xml", product_type="SLC", widthspace="30000000",
                          incidence_far="1", incidence_near="0.5")
    with pytest.raises(ProductReadError, match="absurd"):
        read_gf3_sidecar(path, "x")


def test_width_in_metres_over_pixels_is_checked(tmp_path: Path) -> None:
    path = set_field(gf_optical(tmp_path), "WidthInMeters", "0.002")
    with pytest.raises(ProductReadError, match=r"WidthInMeters/WidthInPixels> is absurd"):
        read_gf_optical_sidecar(path, "x")


@pytest.mark.parametrize("text", ["1,2,3,\uff14", "5" * 50, "1 2 3 " * 2000, "²"])
def test_absurd_band_lists_block(tmp_path: Path, text: str) -> None:
    path = set_field(gf_optical(tmp_path), "Bands", text)
    with pytest.raises(ProductReadError, match="Bands"):
        read_gf_optical_sidecar(path, "x")


def test_hy_band_list_with_unicode_digits_is_kept_as_text(tmp_path: Path) -> None:
    path = set_field(hy(tmp_path), "Bands", "1,2,²")
    ev = read_hy_sidecar(path, "x")
    assert [e.value for e in ev if e.fact is Fact.BAND_NUMBERS] == ["1,2,²"]
    assert not [e for e in ev if e.fact is Fact.BAND_COUNT]


@pytest.mark.parametrize(("text", "metres"), [("0.001", MIN_LENGTH_M), ("40000000", MAX_LENGTH_M),
                                              (" 3.240000000000000 ", 3.24), ("+2", 2.0), (".5", 0.5)])
def test_sane_numbers_read(tmp_path: Path, text: str, metres: float) -> None:
    path = set_field(gf_optical(tmp_path), "ImageGSD", text)
    assert [e.value for e in read_gf_optical_sidecar(path, "x") if e.fact is Fact.GSD] == [metres]


def test_hy_kilometres_are_checked_after_conversion(tmp_path: Path) -> None:
    path = set_field(hy(tmp_path), "Resolution", "50000 km")
    with pytest.raises(ProductReadError, match="Resolution> is absurd"):
        read_hy_sidecar(path, "x")


# --- hypothesis: any text in a numeric field ------------------------------------------------------

_XML_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
_NUMBERISH = st.one_of(_XML_TEXT, st.from_regex(r"[+-]?[0-9_.eExXpP]{0,30}", fullmatch=True),
                       st.floats().map(repr), st.integers().map(str))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_NUMBERISH, field=st.sampled_from(["ImageGSD", "WidthInPixels", "TopLeftLatitude", "Bands"]))
def test_random_text_in_a_gf_numeric_field_only_ever_blocks(text: str, field: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = set_field(gf_optical(Path(folder)), field, text)
        try:
            ev = read_gf_optical_sidecar(path, "x")
        except ProductReadError as exc:
            assert exc.path == str(path)
            assert "\n" not in exc.problem
            return
        for e in ev:
            if e.fact is Fact.GSD:
                assert MIN_LENGTH_M <= float(e.value) <= MAX_LENGTH_M  # type: ignore[arg-type]
            if e.fact in (Fact.WIDTH, Fact.HEIGHT):
                assert 1 <= int(e.value) <= MAX_PIXEL_COUNT  # type: ignore[call-overload]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_NUMBERISH, writer=st.sampled_from([gf3, cbers, hy]))
def test_random_text_in_other_readers_resolution_fields_only_ever_blocks(
        text: str, writer: Callable[[Path], Path]) -> None:
    reader, tag = {gf3: (read_gf3_sidecar, "widthspace"), cbers: (read_cbers_sidecar, "horizontalPixelSize"),
                   hy: (read_hy_sidecar, "Resolution")}[writer]
    with tempfile.TemporaryDirectory() as folder:
        path = set_field(writer(Path(folder)), tag, text)
        try:
            ev = reader(path, "x")
        except ProductReadError:
            return
        assert all(MIN_LENGTH_M <= float(e.value) <= MAX_LENGTH_M  # type: ignore[arg-type]
                   for e in ev if e.fact is Fact.GSD)


@given(text=st.text(max_size=80))
def test_parse_float_raises_nothing_but_product_read_error(text: str) -> None:
    try:
        value = parse_float(text, Path("x.xml"), "f")
    except ProductReadError:
        return
    assert value is not None
    assert np.isfinite(value)


# --- HDF5 ----------------------------------------------------------------------------------------

def fy3(tmp_path: Path) -> Path:
    return write_fy3_mersi(tmp_path)


def add_to(path: Path, change: Callable[[h5py.File], Any]) -> Path:
    with h5py.File(path, "a") as h5:
        change(h5)
    return path


@pytest.mark.parametrize(("change", "problem"), [
    (lambda h5: h5.__setitem__("Data/ext", h5py.ExternalLink("other.h5", "/Data/EV")),
     r"/Data/ext is an external link to 'other.h5'"),
    (lambda h5: h5.create_dataset("Data/raw", (4, 4), dtype="u2", external=[("pixels.raw", 0, 32)]),
     r"/Data/raw is stored in external files \('pixels.raw'"),
    (lambda h5: h5.create_virtual_dataset("Data/virtual", _virtual_layout()),
     r"/Data/virtual is a virtual dataset"),
])
def test_hdf5_that_refers_to_other_files_is_refused(tmp_path: Path, change: Callable[[h5py.File], Any],
                                                    problem: str) -> None:
    path = add_to(fy3(tmp_path), change)
    with pytest.raises(ProductReadError, match=problem) as exc:
        read_hdf5(path, path.name)
    assert exc.value.path == str(path)


def _virtual_layout() -> h5py.VirtualLayout:
    layout = h5py.VirtualLayout(shape=(4, 4), dtype="u2")
    layout[:] = h5py.VirtualSource("other.h5", "/Data/EV", shape=(4, 4))
    return layout


def test_hdf5_user_block_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "FY3D_MERSI_GBAL_L1_20190101_0000_0250M_MS.HDF"
    with h5py.File(path, "w", userblock_size=512) as h5:
        h5.attrs["Satellite Name"] = "FY-3D"
    with pytest.raises(ProductReadError, match="user block of 512 bytes"):
        read_hdf5(path, path.name)


def test_hdf5_soft_links_and_link_cycles_are_fine(tmp_path: Path) -> None:
    def links(h5: h5py.File) -> None:
        h5["Data/soft"] = h5py.SoftLink("/Data")
        h5["Data/dangling"] = h5py.SoftLink("/nowhere")
        group = h5.create_group("Loop")
        group["again"] = group  # a hard-link cycle
        group["up"] = h5["/"]

    clean = tmp_path / "clean"
    clean.mkdir()
    before = read_hdf5(fy3(clean), "x")
    ev = read_hdf5(add_to(fy3(tmp_path), links), "x")
    assert [e for e in ev if e.fact is Fact.GSD] == [e for e in before if e.fact is Fact.GSD]
    assert [e.value for e in ev if e.fact is Fact.WIDTH] == [16]


def test_hdf5_walk_is_bounded_in_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hdf5_reader, "MAX_OBJECTS", 5)
    path = add_to(fy3(tmp_path), lambda h5: [h5.create_group(f"g{i}") for i in range(10)])
    with pytest.raises(ProductReadError, match="more than 5 objects"):
        read_hdf5(path, path.name)


def test_hdf5_root_attributes_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hdf5_reader, "MAX_ATTRIBUTES", 3)
    path = fy3(tmp_path)
    with pytest.raises(ProductReadError, match="more than 3 root attributes"):
        read_hdf5(path, path.name)


def test_hdf5_walk_is_bounded_in_depth(tmp_path: Path) -> None:
    deep = "/".join(f"g{i}" for i in range(hdf5_reader.MAX_DEPTH + 2))
    path = add_to(fy3(tmp_path), lambda h5: h5.create_group(deep))
    with pytest.raises(ProductReadError, match="nested more than"):
        read_hdf5(path, path.name)


def test_hdf5_absurd_dataset_shape_is_refused(tmp_path: Path) -> None:
    path = add_to(fy3(tmp_path), lambda h5: h5.create_dataset("Data/huge", (2, MAX_PIXEL_COUNT + 1),
                                                              dtype="u1", chunks=(1, 1024)))
    with pytest.raises(ProductReadError, match="/Data/huge is absurd"):
        read_hdf5(path, path.name)


@pytest.mark.parametrize(("value", "problem"), [
    ("1e400 m", "absurd"), ("0 m", "absurd"), ("0.0000001 km", "absurd"), ("50000 km", "absurd"),
    (np.float64("inf"), "not a finite number"), (np.float32("nan"), "not a finite number"),
])
def test_hdf5_absurd_resolution_attribute_is_refused(tmp_path: Path, value: Any, problem: str) -> None:
    def put(h5: h5py.File) -> None:
        h5.attrs["Resolution"] = value
        h5.attrs["Resolution Unit"] = "m"

    path = add_to(fy3(tmp_path), put)
    with pytest.raises(ProductReadError, match=problem) as exc:
        read_hdf5(path, path.name)
    assert "Resolution" in exc.value.problem


def test_hdf5_numeric_resolution_with_unit_out_of_range_is_refused(tmp_path: Path) -> None:
    def put(h5: h5py.File) -> None:
        h5.attrs["Resolution"] = np.uint64(2**64 - 1)
        h5.attrs["Resolution Unit"] = "km"

    path = add_to(fy3(tmp_path), put)
    with pytest.raises(ProductReadError, match="absurd"):
        read_hdf5(path, path.name)


@pytest.mark.parametrize("token", ["0000M", "00000KM", "99999KM"])
def test_hdf5_absurd_file_name_token_is_refused(tmp_path: Path, token: str) -> None:
    clean = fy3(tmp_path)
    path = clean.rename(clean.with_name(clean.name.replace("0250M", token)))
    with pytest.raises(ProductReadError, match=f"resolution token {token}"):
        read_hdf5(path, path.name)
    assert filename_resolution_m(path.name) is None


def test_hdf5_absurd_token_in_the_file_name_attribute_is_refused(tmp_path: Path) -> None:
    path = add_to(fy3(tmp_path), lambda h5: h5.attrs.__setitem__(
        "File Name", np.bytes_("FY3D_MERSI_GBAL_L1_20190101_0000_0000M_MS.HDF")))
    with pytest.raises(ProductReadError, match="File Name resolution token 0000M"):
        read_hdf5(path, path.name)


def test_hdf5_full_width_digits_are_not_a_resolution_token() -> None:
    assert filename_resolution_m("FY3D_MERSI_GBAL_L1_20190101_0000_\uff10\uff12\uff15\uff10M_MS.HDF") is None


@pytest.mark.parametrize(("reader", "writer", "tag", "anchor"), [
    (read_gf_optical_sidecar, gf_optical, "ImageGSD", "</ProductMetaData>"),
    (read_gf_optical_sidecar, gf_optical, "WidthInPixels", "</ProductMetaData>"),
    (read_gf3_sidecar, gf3, "NominalResolution", "</product>"),
    (read_gf3_sidecar, gf3, "widthspace", "</product>"),
    (read_cbers_sidecar, cbers, "verticalPixelSize", "</prdf>"),
    (read_hy_sidecar, hy, "Resolution", "</ProductMetaData>"),
])
def test_a_copy_nested_elsewhere_counts(tmp_path: Path, reader: Reader, writer: Callable[[Path], Path],
                                        tag: str, anchor: str) -> None:
    path = edit(writer(tmp_path), re.escape(anchor), lambda m: f"<Extra><{tag}>7</{tag}></Extra>{anchor}")
    with pytest.raises(ProductReadError, match=rf"<[\w/]*{tag}> appears 2 times with different values"):
        reader(path, "x")


def test_hdf5_one_attribute_written_twice_with_different_values_is_refused(tmp_path: Path) -> None:
    # "File Name" and "File_Name" are the same field; the second must not hide behind the first.
    def put(h5: h5py.File) -> None:
        h5.attrs["File_Name"] = np.bytes_("FY3D_MERSI_GBAL_L1_20190101_0000_0010M_MS.HDF")

    path = add_to(fy3(tmp_path), put)
    with pytest.raises(ProductReadError, match=r"attributes 'File Name' and 'File_Name' name one field"):
        read_hdf5(path, path.name)


def test_hdf5_equal_spellings_of_one_attribute_are_fine(tmp_path: Path) -> None:
    path = fy3(tmp_path)
    with h5py.File(path, "a") as h5:
        h5.attrs["Satellite_Name"] = h5.attrs["Satellite Name"]
    assert [e.value for e in read_hdf5(path, path.name) if e.fact is Fact.SATELLITE] == ["FY-3D"]


def test_every_real_gf_optical_sidecar_is_in_the_table() -> None:
    """A GF-1/2/4 sidecar added to ../shared/real_metadata gets tested, not passed over."""
    present = {p.name for p in real_dir().glob("gf[124]_*.xml") if "order" not in p.name}
    assert present == {c[0] for c in GF_OPTICAL_REAL}
