"""Tests of the FY/HY HDF5 reader on synthetic files and the real FY-3C attribute listing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from rspolicy.errors import ProductReadError
from rspolicy.model import Evidence, Fact, ProductClass, Strength
from rspolicy.readers.hdf5 import canonical_sensor, filename_resolution_m, normalise_satellite, read_hdf5
from rspolicy.samples.hdf5 import write_fy3_mersi, write_fy4a_agri, write_hy1c_czi

REAL = Path(__file__).resolve().parents[2] / "shared" / "real_metadata"
FY3C_DUMP = REAL / "fy3c_mwhs_l1_global_attrs_dump.txt"
FY3C_NAME = "FY3C_MWHSX_GBAL_L1_20160731_1254_015KM_MS.HDF"


def facts(evidence: list[Evidence], fact: Fact) -> list[Evidence]:
    return [e for e in evidence if e.fact is fact]


def values(evidence: list[Evidence], fact: Fact) -> list[Any]:
    return [e.value for e in facts(evidence, fact)]


def write_h5(path: Path, attrs: dict[str, Any], datasets: dict[str, tuple[int, ...]] | None = None) -> Path:
    with h5py.File(path, "w") as h5:
        for name, value in attrs.items():
            h5.attrs[name] = value
        for name, shape in (datasets or {}).items():
            h5.create_dataset(name, shape=shape, dtype="u2", chunks=True)
    return path


# --- file-name tokens ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "metres"), [
    ("FY3D_MERSI_GBAL_L1_20190101_0000_0250M_MS.HDF", 250.0),
    ("FY3D_MERSI_GBAL_L1_20190101_0000_1000M_MS.HDF", 1000.0),
    ("FY4A-_AGRI--_N_DISK_1047E_L1-_FDI-_MULT_NOM_20190101000000_20190101001459_4000M_V0001.HDF", 4000.0),
    ("FY4A-_AGRI--_N_REGC_1047E_L1-_FDI-_MULT_NOM_20190807045334_20190807045750_0500M_V0001.HDF", 500.0),
    (FY3C_NAME, 15000.0),
    ("FY3C_MWRIX_GBAL_L2_SWA_MLT_GLL_20160731_POAD_025KM_MS.HDF", 25000.0),
    ("H1C_OPER_OCT_L3A_20220804d_SST_4KM_13.h5", 4000.0),
    ("fy3d_mersi_gbal_l1_20190101_0000_0250m_ms.hdf", 250.0),
    ("/deliveries/2019/FY3D_MERSI_GBAL_L1_20190101_0000_0250M_MS.HDF", 250.0),
    # no token: the trailing numbers are an orbit and a version, "_250_" has no unit
    ("H1C_OPER_CZI_L1B_20190101T010500_00103_10.h5", None),
    ("H2B_OPER_SCA_L2B_OR_20210819T225905_20210820T004328_14133_pwp_250_07_owv.h5", None),
    ("FY4A-_AGRI--_N_DISK_1047E_L1-_FDI-_MULT_NOM_20190101000000_20190101001459_V0001.HDF", None),
])
def test_filename_resolution_token(name: str, metres: float | None) -> None:
    assert filename_resolution_m(name) == metres


@pytest.mark.parametrize(("written", "expected"), [
    ("FY3D", "FY-3D"), ("FY-3D", "FY-3D"), ("fy4a", "FY-4A"), ("FY_4B", "FY-4B"),
    ("HY1C", "HY-1C"), ("HY-2B", "HY-2B"), ("H2B", "HY-2B"), ("GF2", "GF2"),
])
def test_satellite_spellings_normalise_to_one_form(written: str, expected: str) -> None:
    assert normalise_satellite(written) == expected


@pytest.mark.parametrize(("written", "expected"), [
    ("MERSI", "MERSI"), ("MERSI-II", "MERSI"), ("MERSI-LL", "MERSI"), ("VIRRX", "VIRR"), ("MWRIX", "MWRI"),
    ("MWHS-2", "MWHS"), ("MWTS-III", "MWTS"), ("HIRAS-II", "HIRAS"), ("AGRI--", "AGRI"), ("GIIRS", "GIIRS"),
    ("LMI---", "LMI"), ("OCT", "COCTS"), ("HSCAT-B", "SCA"), ("RM", "RM"),
    ("16", None), ("GBAL", None), ("OPER", None), ("RMX1", None),
])
def test_canonical_sensor(written: str, expected: str | None) -> None:
    assert canonical_sensor(written) == expected


# --- FY-3 ----------------------------------------------------------------------------------------------------------


def test_fy3_mersi_250m(tmp_path: Path) -> None:
    path = write_fy3_mersi(tmp_path)
    assert path.name == "FY3D_MERSI_GBAL_L1_20190101_0000_0250M_MS.HDF"
    ev = read_hdf5(path, f"dir/{path.name}")

    assert {e.source for e in ev} == {f"dir/{path.name}"}
    assert values(ev, Fact.SATELLITE) == ["FY-3D"]
    assert values(ev, Fact.SENSOR) == ["MERSI"]
    assert values(ev, Fact.PRODUCT_LEVEL) == ["L1"]
    assert values(ev, Fact.ACQUISITION_TIME) == ["2019-01-01T00:00:00"]
    gsd = facts(ev, Fact.GSD)
    assert [(e.value, e.field) for e in gsd] == [(250.0, "filename"), (250.0, "File Name")]
    assert "0250M" in gsd[0].detail
    (hint,) = facts(ev, Fact.CLASS_HINT)
    assert hint.value == ProductClass.MULTISPECTRAL.value
    assert hint.strength is Strength.STRONG
    assert values(ev, Fact.WIDTH) == [16]
    assert values(ev, Fact.HEIGHT) == [20]
    assert facts(ev, Fact.WIDTH)[0].field == "/Data/EV_250_RefSB_b1"


def test_fy3_mersi_1000m_with_underscore_attribute_names(tmp_path: Path) -> None:
    path = write_fy3_mersi(tmp_path, 1000, attr_style="underscore", satellite="FY-3C")
    with h5py.File(path) as h5:
        assert "Satellite_Name" in h5.attrs and "Satellite Name" not in h5.attrs
    ev = read_hdf5(path, path.name)
    assert [(e.value, e.field) for e in facts(ev, Fact.SATELLITE)] == [("FY-3C", "Satellite_Name")]
    assert values(ev, Fact.SENSOR) == ["MERSI"]
    assert set(values(ev, Fact.GSD)) == {1000.0}
    assert values(ev, Fact.ACQUISITION_TIME) == ["2019-01-01T00:00:00"]


def test_fy3_mersi_token_015km(tmp_path: Path) -> None:
    path = write_fy3_mersi(tmp_path, 15000)
    assert "_015KM_" in path.name
    assert set(values(read_hdf5(path, path.name), Fact.GSD)) == {15000.0}


def test_renamed_file_keeps_the_finer_resolution_of_its_file_name_attribute(tmp_path: Path) -> None:
    path = write_fy3_mersi(tmp_path, 250)
    renamed = path.rename(tmp_path / path.name.replace("0250M", "1000M"))
    ev = read_hdf5(renamed, renamed.name)
    by_field = {e.field: e.value for e in facts(ev, Fact.GSD)}
    assert by_field == {"filename": 1000.0, "File Name": 250.0}


def test_file_without_a_standard_name_still_gets_sensor_from_attributes(tmp_path: Path) -> None:
    path = write_fy3_mersi(tmp_path).rename(tmp_path / "granule.h5")
    ev = read_hdf5(path, path.name)
    assert values(ev, Fact.SENSOR) == ["MERSI"]
    assert [(e.value, e.field) for e in facts(ev, Fact.GSD)] == [(250.0, "File Name")]


# --- FY-4A ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [500, 1000, 2000, 4000])
def test_fy4a_agri_resolution_token(tmp_path: Path, resolution: int) -> None:
    path = write_fy4a_agri(tmp_path, resolution)
    assert f"_{resolution:04d}M_V0001.HDF" in path.name
    ev = read_hdf5(path, path.name)
    # dSamplingAngle is an angle: it must not turn into a second GSD value
    assert set(values(ev, Fact.GSD)) == {float(resolution)}


def test_fy4a_agri_4000m(tmp_path: Path) -> None:
    path = write_fy4a_agri(tmp_path)
    assert path.name == ("FY4A-_AGRI--_N_DISK_1047E_L1-_FDI-_MULT_NOM_20190101000000_20190101001459_"
                         "4000M_V0001.HDF")
    ev = read_hdf5(path, path.name)
    (sat,) = facts(ev, Fact.SATELLITE)
    assert sat.value == "FY-4A"
    assert "FY4A" in sat.detail  # as written, kept for the auditor
    assert values(ev, Fact.SENSOR) == ["AGRI"]
    assert values(ev, Fact.PRODUCT_LEVEL) == ["L1"]
    assert values(ev, Fact.ACQUISITION_TIME) == ["2019-01-01T00:00:00"]
    assert values(ev, Fact.CLASS_HINT) == ["multispectral"]
    info_fields = {e.field for e in facts(ev, Fact.INFO)}
    assert {"dSamplingAngle", "dSteppingAngle"} <= info_fields


# --- attribute spellings and types ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "value"), [
    ("Satellite Name", np.bytes_(b"FY-3D")),
    ("Satellite_Name", "FY-3D"),
    ("Satellite_Name", np.bytes_(b"FY3D")),
    ("satellite name", np.array([b"FY-3D"])),
    ("SATELLITE-NAME", np.array(["FY3D"], dtype=h5py.string_dtype())),
    ("Satellite Name", np.array(["FY-3D"], dtype=h5py.string_dtype(length=8))),
])
def test_satellite_attribute_spellings_and_types(tmp_path: Path, key: str, value: Any) -> None:
    path = write_h5(tmp_path / "granule.h5", {key: value})
    ev = read_hdf5(path, "granule.h5")
    assert [(e.value, e.field) for e in facts(ev, Fact.SATELLITE)] == [("FY-3D", key)]


@pytest.mark.parametrize("key", ["Sensor Name", "Sensor_Name", "sensor name"])
@pytest.mark.parametrize(("value", "expected"), [
    (np.bytes_(b"MWRI"), "MWRI"), ("MWHS-II", "MWHS"), (np.array([b"HIRAS"]), "HIRAS"),
])
def test_sensor_attribute_spellings(tmp_path: Path, key: str, value: Any, expected: str) -> None:
    path = write_h5(tmp_path / "granule.h5", {key: value})
    assert values(read_hdf5(path, "granule.h5"), Fact.SENSOR) == [expected]


def test_numeric_sensor_identification_code_is_not_a_sensor(tmp_path: Path) -> None:
    path = write_h5(tmp_path / "granule.h5", {"Sensor Identification Code": np.bytes_(b"16")})
    ev = read_hdf5(path, "granule.h5")
    assert facts(ev, Fact.SENSOR) == []
    assert facts(ev, Fact.CLASS_HINT) == []


@pytest.mark.parametrize(("sensor", "product_class", "strength"), [
    ("MERSI", ProductClass.MULTISPECTRAL, Strength.STRONG),
    ("VIRR", ProductClass.MULTISPECTRAL, Strength.STRONG),
    ("AGRI", ProductClass.MULTISPECTRAL, Strength.STRONG),
    ("CZI", ProductClass.MULTISPECTRAL, Strength.STRONG),
    ("COCTS", ProductClass.MULTISPECTRAL, Strength.STRONG),
    ("MWRI", ProductClass.SAR, Strength.STRONG),
    ("MWHS", ProductClass.SAR, Strength.STRONG),
    ("MWTS", ProductClass.SAR, Strength.STRONG),
    ("SCA", ProductClass.SAR, Strength.STRONG),
    ("ALT", ProductClass.SAR, Strength.STRONG),
    ("RM", ProductClass.SAR, Strength.STRONG),
    ("HIRAS", ProductClass.HYPERSPECTRAL, Strength.STRONG),
    ("GIIRS", ProductClass.HYPERSPECTRAL, Strength.STRONG),
    ("LMI", ProductClass.MULTISPECTRAL, Strength.MEDIUM),
])
def test_class_hint_from_sensor(tmp_path: Path, sensor: str, product_class: ProductClass,
                                strength: Strength) -> None:
    path = write_h5(tmp_path / "granule.h5", {"Sensor Name": np.bytes_(sensor.encode())})
    (hint,) = facts(read_hdf5(path, "granule.h5"), Fact.CLASS_HINT)
    assert (hint.value, hint.strength, hint.field) == (product_class.value, strength, "Sensor Name")
    assert sensor in hint.detail


def test_unknown_sensor_gives_no_class_hint(tmp_path: Path) -> None:
    path = write_h5(tmp_path / "granule.h5", {"Sensor Name": np.bytes_(b"ZZZ9")})
    ev = read_hdf5(path, "granule.h5")
    assert values(ev, Fact.SENSOR) == ["ZZZ9"]
    assert facts(ev, Fact.CLASS_HINT) == []


@pytest.mark.parametrize(("attrs", "gsd"), [
    ({"Resolution": np.bytes_(b"250M")}, 250.0),
    ({"Spatial_Resolution": "1 km"}, 1000.0),
    ({"Spatial Resolution": np.bytes_(b"500 metres")}, 500.0),
    ({"Resolution(m)": np.float32(500)}, 500.0),
    ({"Resolution": np.int32(4), "Resolution Units": np.bytes_(b"km")}, 4000.0),
])
def test_resolution_attribute_with_a_unit_is_gsd(tmp_path: Path, attrs: dict[str, Any], gsd: float) -> None:
    path = write_h5(tmp_path / "granule.h5", attrs)
    (ev,) = facts(read_hdf5(path, "granule.h5"), Fact.GSD)
    assert ev.value == gsd
    assert ev.field in attrs


@pytest.mark.parametrize("value", [np.float64(0.25), np.int32(250), np.bytes_(b"0.05 degree")])
def test_resolution_attribute_without_a_length_unit_is_only_info(tmp_path: Path, value: Any) -> None:
    path = write_h5(tmp_path / "granule.h5", {"Resolution": value})
    ev = read_hdf5(path, "granule.h5")
    assert facts(ev, Fact.GSD) == []
    assert [e.field for e in facts(ev, Fact.INFO)] == ["Resolution"]


# --- unreadable files ----------------------------------------------------------------------------------------------


def _check_read_error(path: Path) -> None:
    with pytest.raises(ProductReadError) as info:
        read_hdf5(path, path.name)
    exc = info.value
    assert type(exc) is ProductReadError
    assert isinstance(exc, OSError)
    assert exc.path == str(path)
    assert str(path) in str(exc)
    assert "not a readable HDF5 file" in str(exc)


def test_garbage_hdf_is_a_read_error(tmp_path: Path) -> None:
    path = tmp_path / "FY3D_MERSI_GBAL_L1_20190101_0000_0250M_MS.HDF"
    path.write_bytes(b"this is not HDF5\n" * 64)
    _check_read_error(path)


def test_truncated_hdf_is_a_read_error(tmp_path: Path) -> None:
    path = write_fy3_mersi(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    _check_read_error(path)


def test_hdf5_signature_followed_by_garbage_is_a_read_error(tmp_path: Path) -> None:
    path = tmp_path / "FY3D_MERSI_GBAL_L1_20190101_0000_0250M_MS.HDF"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)
    _check_read_error(path)


@pytest.mark.parametrize("kind", ["empty", "missing", "directory"])
def test_empty_missing_or_directory_is_a_read_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "FY3D_MERSI_GBAL_L1_20190101_0000_0250M_MS.HDF"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    _check_read_error(path)


# --- metadata only -------------------------------------------------------------------------------------------------


def test_shapes_are_read_without_reading_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 30000 x 40000 uint16 would be 2.4 GB; chunks never written take no space
    path = write_h5(tmp_path / "FY3D_MERSI_GBAL_L1_20190101_0000_0250M_MS.HDF",
                    {"Satellite Name": np.bytes_(b"FY-3D")},
                    {"Data/EV_250_RefSB_b1": (30000, 40000), "Data/small": (10, 10)})
    assert path.stat().st_size < 100_000

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("pixel data was read")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", refuse)
    monkeypatch.setattr(h5py.Dataset, "read_direct", refuse)
    monkeypatch.setattr(h5py.Dataset, "__array__", refuse)
    ev = read_hdf5(path, path.name)
    assert values(ev, Fact.WIDTH) == [40000]
    assert values(ev, Fact.HEIGHT) == [30000]
    assert facts(ev, Fact.WIDTH)[0].field == "/Data/EV_250_RefSB_b1"


def test_writers_are_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    pairs = [
        (write_fy3_mersi(first), write_fy3_mersi(second)),
        (write_fy4a_agri(first), write_fy4a_agri(second)),
        *zip(write_hy1c_czi(first), write_hy1c_czi(second), strict=True),
    ]
    for one, two in pairs:
        assert one.name == two.name
        assert one.read_bytes() == two.read_bytes(), one.name
        assert one.stat().st_size < 64_000


# --- the real FY-3C attribute listing ------------------------------------------------------------------------------


def _dump_value(text: str) -> Any:
    """A value in netCDF-Java's listing syntax, typed as HDF5 stored it."""
    text = text.strip()
    if text.startswith('"'):
        return np.bytes_(text.strip('"').encode("utf-8"))
    if "," in text:
        items = [item.strip() for item in text.split(",")]
        assert all(item.endswith("f") for item in items), text
        return np.array([float(item[:-1]) for item in items], dtype=np.float32)
    for suffix, dtype in (("UB", np.uint8), ("US", np.uint16), ("S", np.int16), ("U", np.uint32)):
        if text.endswith(suffix):
            return dtype(int(text[: -len(suffix)]))
    if text.endswith("f"):
        return np.float32(float(text[:-1]))
    if re.fullmatch(r"-?\d+", text):
        return np.int32(int(text))
    return np.float64(float(text))


def _fy3c_dump() -> list[tuple[str, Any]]:
    if not FY3C_DUMP.is_file():
        pytest.skip(f"real metadata not available: {FY3C_DUMP}")
    attrs = []
    for line in FY3C_DUMP.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^:\s*(\S+)\s*=\s*(.+)$", line)
        if match:
            attrs.append((match[1], _dump_value(match[2])))
    return attrs


@pytest.fixture(params=["underscore", "space"])
def fy3c_file(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, list[str]]:
    """An HDF5 file with every attribute of the real listing: as listed, or with real HDF5 spaces."""
    attrs = _fy3c_dump()
    names = [name if request.param == "underscore" else name.replace("_", " ") for name, _ in attrs]
    path = tmp_path / FY3C_NAME
    write_h5(path, dict(zip(names, (value for _, value in attrs), strict=True)))
    return path, names


def test_fy3c_dump_builds_a_file_with_every_listed_attribute(fy3c_file: tuple[Path, list[str]]) -> None:
    path, names = fy3c_file
    assert len(names) >= 40
    with h5py.File(path) as h5:
        assert sorted(h5.attrs) == sorted(names)
        assert h5.attrs[names[0]].dtype == np.uint8  # Data_Quality = 0UB
        assert h5.attrs[next(n for n in names if n.startswith("Chs"))].shape == (15,)


def test_fy3c_real_attributes_are_handled(fy3c_file: tuple[Path, list[str]]) -> None:
    path, names = fy3c_file
    ev = read_hdf5(path, path.name)
    sat_field = next(n for n in names if n.lower().startswith("satellite"))

    assert [(e.value, e.field) for e in facts(ev, Fact.SATELLITE)] == [("FY-3C", sat_field)]
    # the listing lost its Sensor_Name line; the code is numeric ("16"): the name tells MWHS
    assert values(ev, Fact.SENSOR) == ["MWHS"]
    assert values(ev, Fact.PRODUCT_LEVEL) == ["L1"]
    assert values(ev, Fact.ACQUISITION_TIME) == ["2016-07-31", "2016-07-31T12:54:00"]
    gsd = facts(ev, Fact.GSD)
    assert {e.value for e in gsd} == {15000.0}
    assert "filename" in {e.field for e in gsd}
    assert any(e.field.replace("_", " ") == "File Name" for e in gsd)
    (hint,) = facts(ev, Fact.CLASS_HINT)
    assert (hint.value, hint.strength) == (ProductClass.SAR.value, Strength.STRONG)
    assert not [e for e in facts(ev, Fact.INFO) if "cannot read" in e.detail]


def test_fy3c_renamed_file_is_identified_from_its_attributes(fy3c_file: tuple[Path, list[str]]) -> None:
    path, _ = fy3c_file
    renamed = path.rename(path.with_name("download.h5"))
    ev = read_hdf5(renamed, renamed.name)
    assert values(ev, Fact.SATELLITE) == ["FY-3C"]
    assert values(ev, Fact.SENSOR) == ["MWHS"]
    assert values(ev, Fact.GSD) == [15000.0]
    assert {e.field.replace("_", " ") for e in facts(ev, Fact.GSD)} == {"File Name"}
    assert values(ev, Fact.CLASS_HINT) == ["sar"]


# --- HY through the HDF5 reader ------------------------------------------------------------------------------------


def test_hy1c_h5_is_identified_from_its_name(tmp_path: Path) -> None:
    h5_path, _ = write_hy1c_czi(tmp_path)
    ev = read_hdf5(h5_path, h5_path.name)
    assert values(ev, Fact.SATELLITE) == ["HY-1C"]
    assert values(ev, Fact.SENSOR) == ["CZI"]
    assert values(ev, Fact.PRODUCT_LEVEL) == ["L1B"]
    assert values(ev, Fact.ACQUISITION_TIME) == ["2019-01-01T01:05:00"]
    assert values(ev, Fact.CLASS_HINT) == ["multispectral"]
    assert facts(ev, Fact.GSD) == []  # "_10" is a version, not a resolution


def test_hy2b_scatterometer_name(tmp_path: Path) -> None:
    path = write_h5(tmp_path / "H2B_OPER_SCA_L2B_OR_20210819T225905_20210820T004328_14133_pwp_250_07_owv.h5",
                    {"Instrument_ShorName": np.bytes_(b"HSCAT-B")})
    ev = read_hdf5(path, path.name)
    assert values(ev, Fact.SATELLITE) == ["HY-2B"]
    assert values(ev, Fact.SENSOR) == ["SCA"]
    assert values(ev, Fact.PRODUCT_LEVEL) == ["L2B"]
    assert values(ev, Fact.CLASS_HINT) == ["sar"]
    assert facts(ev, Fact.GSD) == []
