"""Synthetic Fengyun and Haiyang HDF5 products.

The files are a few kilobytes: the attributes, names and group layout of
real deliveries, with tiny datasets. Sources of each shape:

* FY-3 root attributes: the global-attribute listing of a real
  ``FY3C_MWHSX_GBAL_L1_20160731_1254_015KM_MS.HDF`` (every name and HDF5
  type in it, with the spaces real HDF5 names have), plus "Sensor Name" and
  the "Observing Beginning/Ending Time" pair that real FY-3 L1 files carry.
* FY-4A AGRI L1: the attributes and ``NOMChannelNN`` / ``CALChannelNN``
  datasets that public FY-4A readers use.
* HY-1C CZI L1B: the NSOAS file name, the ``Geophysical Data`` and
  ``Navigation Data`` groups, and a GF-style ``<ProductMetaData>`` sidecar.
  No real HY-1C root-attribute listing was available, so the HDF5 file has
  no invented root attributes; its name carries satellite, sensor and time.

Every writer is deterministic: same arguments, same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import escape

import h5py
import numpy as np

__all__ = [
    "AttrStyle",
    "fy3_root_attributes",
    "resolution_token",
    "write_fy3_mersi",
    "write_fy4a_agri",
    "write_hy1c_czi",
]

#: How attribute names are spelt: as real HDF5 (spaces) or as netCDF-Java
#: shows them, which some re-writing tools keep (underscores).
AttrStyle = Literal["space", "underscore"]

#: FY-4A AGRI channels present at each resolution (L1 FDI files).
_AGRI_CHANNELS: Mapping[int, tuple[int, ...]] = {
    500: (2,),
    1000: (1, 2, 3),
    2000: (1, 2, 3, 4, 5, 6, 7),
    4000: tuple(range(1, 15)),
}


def resolution_token(resolution_m: int) -> str:
    """The NSMC file-name resolution token for a spacing in metres.

    >>> resolution_token(250), resolution_token(4000), resolution_token(15000)
    ('0250M', '4000M', '015KM')
    """
    if resolution_m <= 0:
        raise ValueError(f"resolution must be positive, not {resolution_m}")
    if resolution_m >= 10_000 and resolution_m % 1000 == 0:
        return f"{resolution_m // 1000:03d}KM"
    return f"{resolution_m:04d}M"


def _string(text: str) -> np.bytes_:
    # NSMC writes fixed-length ASCII strings, which h5py reads back as bytes
    return np.bytes_(text.encode("ascii"))


def _write_attrs(target: Any, attrs: Iterable[tuple[str, Any]], style: AttrStyle) -> None:
    for name, value in attrs:
        target.attrs[name.replace(" ", "_") if style == "underscore" else name] = value


def _dataset(group: Any, name: str, data: np.ndarray, attrs: Iterable[tuple[str, Any]] = ()) -> None:
    # No timestamps in object headers, so that the bytes are reproducible
    ds = group.create_dataset(name, data=data, track_times=False)
    for key, value in attrs:
        ds.attrs[key] = value


def fy3_root_attributes(satellite: str, sensor: str, file_name: str, start: datetime, end: datetime,
                        *, dataset_name: str, wavenumbers: Iterable[float]) -> list[tuple[str, Any]]:
    """The FY-3 L1 root attribute set, in the order and with the types of the real listing.

    Parameters
    ----------
    satellite
        As NSMC writes it (``FY-3D``).
    sensor
        The sensor name (``MERSI``).
    file_name
        The standard file name, stored in "File Name".
    start, end
        Observation start and end (UTC).
    dataset_name
        The "Dataset Name" text.
    wavenumbers
        "Chs Central Wavenumber" values (cm-1).

    Returns
    -------
    list of (name, value)
        Names with spaces, values typed as HDF5 stores them.
    """
    return [
        ("Data Quality", np.uint8(0)),
        ("QA Scan Flag", np.uint8(100)),
        ("AscendingNodeLongitude", np.float64(7.8674994e7)),
        ("EarthSun Distance Ratio", np.float64(1.0150490217543118)),
        ("Eccentricity", np.float64(229274.0)),
        ("EpochTime", np.float64(float(start.strftime("%y%m%d")))),
        ("MeanAnomaly", np.float64(5.0740469e7)),
        ("MeanMotion", np.float64(103417.0)),
        ("OrbitalInclination", np.float64(2.7390342e7)),
        ("PerigeeArgument", np.float64(3.1474906e7)),
        ("Orbit Number", np.uint32(14789)),
        ("Chs Central Wavenumber", np.asarray(list(wavenumbers), dtype=np.float32)),
        ("Orbit Point Latitude", np.array([17.54117, 13.823394, 2.0225449, -1.6095531], dtype=np.float32)),
        ("Orbit Point Longitude", np.array([-49.302296, -25.325314, -77.701645, -54.58242], dtype=np.float32)),
        ("Count CaliErr scnlines", np.int32(0)),
        ("Count GeolErr scnlines", np.int32(0)),
        ("Count Missing scnlines", np.int32(0)),
        ("Count scnlines", np.int32(2385)),
        ("Count scnlines calibrated", np.int32(2385)),
        ("Count Scnlines SP View Lunar Contaminated", np.int16(0)),
        ("Count TimeSeqErr", np.int32(0)),
        ("Incomplete Scans", np.uint32(0)),
        ("Number Of Day mode scans", np.uint32(0)),
        ("Number Of Scans", np.uint32(2385)),
        ("Number of Night mode scans", np.uint32(0)),
        ("AdditionalAnotation", _string("Product creator:synthetic sample")),
        ("Dataset Name", _string(dataset_name)),
        ("Coefficient Index Revision Date", _string("2013-08-01")),
        ("Data Creating Date", _string(end.strftime("%Y-%m-%d"))),
        ("Observing Beginning Date", _string(start.strftime("%Y-%m-%d"))),
        ("Observing Ending Date", _string(end.strftime("%Y-%m-%d"))),
        ("Software Revision Date", _string("2013-08-10")),
        ("Day Or Night Flag", _string("D")),
        ("File Alias Name", _string(f"{sensor}_L1")),
        ("File Name", _string(file_name)),
        ("Orbit Direction", _string("A")),
        ("Reference Ellipsoid Model ID", _string("WGS84")),
        ("Responser", _string("NSMC")),
        ("Satellite Name", _string(satellite)),
        ("Sensor Identification Code", _string(sensor)),
        ("Sensor Name", _string(sensor)),
        ("Observing Beginning Time", _string(start.strftime("%H:%M:%S.000"))),
        ("Observing Ending Time", _string(end.strftime("%H:%M:%S.000"))),
    ]


def write_fy3_mersi(
    dirpath: Path,
    resolution_m: int = 250,
    *,
    satellite: str = "FY-3D",
    start: datetime = datetime(2019, 1, 1, 0, 0),
    attr_style: AttrStyle = "space",
    rows: int = 20,
    cols: int = 16,
) -> Path:
    """Write an FY-3 MERSI L1 granule.

    Parameters
    ----------
    dirpath
        Directory to write into (must exist).
    resolution_m
        The grid spacing named in the file name and "File Name" (250 or 1000
        for real MERSI files; any positive value is accepted).
    satellite
        As NSMC writes it; the file name uses it without the hyphen.
    start
        Observation start; the granule lasts five minutes.
    attr_style
        Spaces (real HDF5) or underscores in attribute names.
    rows, cols
        The size of the tiny earth-view datasets.

    Returns
    -------
    Path
        ``FY3D_MERSI_GBAL_L1_YYYYMMDD_HHMM_0250M_MS.HDF`` in ``dirpath``.
    """
    end = start + timedelta(minutes=5)
    name = (f"{satellite.replace('-', '')}_MERSI_GBAL_L1_{start:%Y%m%d}_{start:%H%M}_"
            f"{resolution_token(resolution_m)}_MS.HDF")
    path = Path(dirpath) / name
    counts = (np.arange(rows * cols, dtype=np.uint16).reshape(rows, cols) * 7) % 4096
    band_attrs = [("FillValue", np.uint16(65535)), ("Slope", np.array([1.0], dtype=np.float32)),
                  ("Intercept", np.array([0.0], dtype=np.float32)), ("units", _string("NO")),
                  ("valid_range", np.array([0, 4095], dtype=np.uint16))]
    with h5py.File(path, "w") as h5:
        _write_attrs(h5, fy3_root_attributes(
            satellite, "MERSI", name, start, end, dataset_name=f"{satellite} MERSI L1 {resolution_m}m",
            wavenumbers=(21276.6, 18181.8, 15384.6, 11560.7)), attr_style)
        data = h5.create_group("Data")
        if resolution_m < 1000:
            for band in (1, 2, 3, 4):
                _dataset(data, f"EV_250_RefSB_b{band}", counts,
                         [*band_attrs, ("long_name", _string(f"250m Earth View Science Data band {band}"))])
        else:
            _dataset(data, "EV_1KM_RefSB", np.stack([counts] * 3),
                     [*band_attrs, ("long_name", _string("1km Earth View Science Data"))])
        geo = h5.create_group("Geolocation")
        lat = np.linspace(40.0, 39.0, rows * cols, dtype=np.float32).reshape(rows, cols)
        _dataset(geo, "Latitude", lat, [("units", _string("degree"))])
    return path


def write_fy4a_agri(
    dirpath: Path,
    resolution_m: int = 4000,
    *,
    satellite: str = "FY4A",
    start: datetime = datetime(2019, 1, 1, 0, 0),
    attr_style: AttrStyle = "space",
    size: int = 8,
) -> Path:
    """Write an FY-4A AGRI L1 full-disk (FDI) file.

    Parameters
    ----------
    dirpath
        Directory to write into.
    resolution_m
        500, 1000, 2000 or 4000: chooses the channels and the file-name token.
    satellite
        As NSMC writes it in FY-4 files (``FY4A``, no hyphen).
    start
        Observation start; a full disk takes 14 min 59 s.
    attr_style
        Spaces (real HDF5) or underscores in attribute names.
    size
        Rows and columns of the tiny ``NOMChannelNN`` datasets.

    Returns
    -------
    Path
        ``FY4A-_AGRI--_N_DISK_1047E_L1-_FDI-_MULT_NOM_<start>_<end>_4000M_V0001.HDF``.
    """
    if resolution_m not in _AGRI_CHANNELS:
        raise ValueError(f"AGRI L1 resolutions are {sorted(_AGRI_CHANNELS)}, not {resolution_m}")
    end = start + timedelta(minutes=14, seconds=59)
    name = (f"{satellite}-_AGRI--_N_DISK_1047E_L1-_FDI-_MULT_NOM_{start:%Y%m%d%H%M%S}_{end:%Y%m%d%H%M%S}_"
            f"{resolution_token(resolution_m)}_V0001.HDF")
    path = Path(dirpath) / name
    # Sampling angle in microradians: 4 km at nadir from geostationary height is ~112 urad
    angle = 112.0 * resolution_m / 4000
    attrs: list[tuple[str, Any]] = [
        ("File Name", _string(name)),
        ("Satellite Name", _string(satellite)),
        ("Sensor Name", _string("AGRI")),
        ("Sensor Identification Code", _string("AGRI")),
        ("Observing Beginning Date", _string(f"{start:%Y-%m-%d}")),
        ("Observing Beginning Time", _string(f"{start:%H:%M:%S}.000")),
        ("Observing Ending Date", _string(f"{end:%Y-%m-%d}")),
        ("Observing Ending Time", _string(f"{end:%H:%M:%S}.000")),
        ("OBIType", _string("DISK")),
        ("NOMCenterLat", np.float64(0.0)),
        ("NOMCenterLon", np.float64(104.7)),
        ("NOMSatHeight", np.float64(42164000.0)),
        ("dEA", np.float64(6378.137)),
        ("dObRecFlat", np.float64(298.257223563)),
        ("Semimajor axis of ellipsoid", np.float64(6378137.0)),
        ("Semiminor axis of ellipsoid", np.float64(6356752.3)),
        ("dSamplingAngle", np.float64(angle)),
        ("dSteppingAngle", np.float64(angle)),
        ("RegLength", np.float64(size)),
        ("RegWidth", np.float64(size)),
        ("Begin Line Number", np.int32(0)),
        ("End Line Number", np.int32(size - 1)),
        ("Begin Pixel Number", np.int32(0)),
        ("End Pixel Number", np.int32(size - 1)),
    ]
    counts = (np.arange(size * size, dtype=np.uint16).reshape(size, size) * 13) % 4096
    lut = np.linspace(0.0, 1.2, 16, dtype=np.float32)
    with h5py.File(path, "w") as h5:
        _write_attrs(h5, attrs, attr_style)
        data = h5.create_group("Data")
        calibration = h5.create_group("Calibration")
        for channel in _AGRI_CHANNELS[resolution_m]:
            channel_attrs = [("FillValue", np.uint16(65535)), ("units", _string("DN")),
                             ("valid_range", np.array([0, 4095], dtype=np.uint16)),
                             ("band_names", _string(f"band{channel}(band number is range from 1 to 14)"))]
            _dataset(data, f"NOMChannel{channel:02d}", counts, channel_attrs)
            _dataset(calibration, f"CALChannel{channel:02d}", lut, [("units", _string("NUL"))])
    return path


#: Corner coordinates (lat, lon) of the sample HY-1C scene, off the Bohai coast.
_HY_CORNERS = {
    "TopLeft": (39.62, 118.91),
    "TopRight": (39.41, 119.73),
    "BottomRight": (38.98, 119.52),
    "BottomLeft": (39.19, 118.70),
}


def write_hy1c_czi(
    dirpath: Path,
    *,
    satellite: str = "HY-1C",
    start: datetime = datetime(2019, 1, 1, 1, 5, 0),
    resolution_m: float | None = 50,
    image_gsd: float | None = None,
    size: int = 16,
) -> tuple[Path, Path]:
    """Write an HY-1C CZI L1B product: an HDF5 file and its XML sidecar.

    Parameters
    ----------
    dirpath
        Directory to write into.
    satellite
        ``SatelliteID`` of the sidecar; the file name uses the NSOAS short
        form (``H1C``).
    start
        Scene start; the sidecar's centre and end times follow it.
    resolution_m
        The sidecar's ``Resolution`` (metres); None leaves the field empty.
    image_gsd
        A GF-style ``ImageGSD`` as well, when given.
    size
        Rows and columns of the tiny band datasets.

    Returns
    -------
    tuple of Path
        ``H1C_OPER_CZI_L1B_<start>_00103_10.h5`` and the ``.xml`` beside it.
    """
    short = "H" + satellite.upper().replace("HY", "").replace("-", "")
    stem = f"{short}_OPER_CZI_L1B_{start:%Y%m%dT%H%M%S}_00103_10"
    h5_path = Path(dirpath) / f"{stem}.h5"
    xml_path = Path(dirpath) / f"{stem}.xml"
    radiance = np.linspace(20.0, 120.0, size * size, dtype=np.float32).reshape(size, size)
    lat = np.linspace(39.62, 38.98, size * size).reshape(size, size)
    lon = np.linspace(118.70, 119.73, size * size).reshape(size, size)
    with h5py.File(h5_path, "w") as h5:
        physical = h5.create_group("Geophysical Data")
        for i, band in enumerate(("L_460", "L_560", "L_650", "L_825")):
            _dataset(physical, band, radiance + i, [("units", _string("W/(m2 sr um)"))])
        navigation = h5.create_group("Navigation Data")
        # NSOAS stores degrees x 10^4 as integers
        _dataset(navigation, "Latitude", np.round(lat * 1e4).astype(np.int32), [("Slope", np.float32(1e-4))])
        _dataset(navigation, "Longitude", np.round(lon * 1e4).astype(np.int32), [("Slope", np.float32(1e-4))])
    text = _hy_sidecar(satellite, stem, start, resolution_m=resolution_m, image_gsd=image_gsd, size=size)
    xml_path.write_text(text, encoding="utf-8")
    return h5_path, xml_path


def _hy_sidecar(satellite: str, stem: str, start: datetime, *, resolution_m: float | None,
                image_gsd: float | None, size: int) -> str:
    """The sidecar text, field for field in the order of a GF ``<ProductMetaData>``."""
    centre = start + timedelta(seconds=150)
    end = start + timedelta(seconds=300)
    fields: list[tuple[str, str]] = [
        ("SatelliteID", satellite),
        ("SensorID", "CZI"),
        ("ReceiveTime", f"{start + timedelta(minutes=40):%Y-%m-%d %H:%M:%S}"),
        ("OrbitID", "00103"),
        ("ProduceType", "STANDARD"),
        ("SceneID", "0010301"),
        ("ProductID", stem),
        ("ProductLevel", "L1B"),
        ("ProductQuality", ""),
        ("ProductQualityReport", ""),
        ("ProductFormat", "HDF5"),
        ("ProduceTime", f"{start + timedelta(hours=2):%Y-%m-%d %H:%M:%S}"),
        ("Bands", "1,2,3,4"),
        ("ScenePath", ""),
        ("SceneRow", ""),
        ("SatPath", ""),
        ("SatRow", ""),
        ("SceneCount", "1"),
        ("SceneShift", "1"),
        ("StartTime", f"{start:%Y-%m-%d %H:%M:%S}"),
        ("EndTime", f"{end:%Y-%m-%d %H:%M:%S}"),
        ("CenterTime", f"{centre:%Y-%m-%d %H:%M:%S}"),
        ("Resolution", "" if resolution_m is None else f"{resolution_m:g}"),
    ]
    if image_gsd is not None:
        fields.append(("ImageGSD", f"{image_gsd:g}"))
    fields += [
        ("WidthInPixels", str(size)),
        ("HeightInPixels", str(size)),
        ("WidthInMeters", ""),
        ("HeightInMeters", ""),
        ("CloudPercent", "0"),
        ("EarthEllipsoid", "WGS84"),
    ]
    for corner, (lat, lon) in _HY_CORNERS.items():
        fields += [(f"{corner}Latitude", f"{lat:g}"), (f"{corner}Longitude", f"{lon:g}")]
    lines = ['<?xml version="1.0" encoding="UTF-8" ?>', "<ProductMetaData>"]
    for tag, text in fields:
        lines.append(f"    <{tag}>{escape(text)}</{tag}>" if text else f"    <{tag} />")
    lines.append("</ProductMetaData>")
    return "\n".join(lines) + "\n"
