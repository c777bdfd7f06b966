"""CRESDA optical sidecars: ``<ProductMetaData>`` of GF-1/1B/C/D, GF-2, GF-4, GF-6, GF-7, ZY-3, SuperView.

Traps the real files hold, each handled here:

- ``<Bands>`` lists band *numbers*, not a count: a GF-1/GF-2 PAN sidecar says
  ``<Bands>5</Bands>`` (band 5 is the panchromatic band of the PMS cameras),
  the MSS twin says ``1,2,3,4``.
- GF-4's visible camera and its infrared camera both say ``<SensorID>PMI``;
  only the file name (``GF4_PMS_`` / ``GF4_IRS_``) tells them apart, so the
  sensor ID alone gives no class.
- ``ImageGSD`` is written as ``0.81``, ``3.240000000000000`` or ``16``.
- Empty elements are written both ``<X />`` and ``<X></X>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from xml.etree.ElementTree import Element

from rspolicy.errors import ProductReadError
from rspolicy.model import Evidence, Fact, ProductClass, Strength
from rspolicy.readers.xmlutil import (
    check_length_m,
    find_text_anywhere,
    local_name,
    parse_float,
    parse_length_m,
    parse_pixel_count,
    parse_xml,
    shown,
)

#: Cameras whose sidecars number the panchromatic band 5 and the
#: multispectral bands 1-4 (GF-1, GF-1B/C/D, GF-2 and GF-6 PMS).
_PMS_CAMERA = re.compile(r"^PMS\d?$", re.I)

#: Sensor IDs that only ever hold one kind of imagery.
_SENSOR_CLASSES: tuple[tuple[re.Pattern[str], ProductClass, str], ...] = (
    (re.compile(r"^WFV\d?$", re.I), ProductClass.MULTISPECTRAL, "wide-field multispectral camera"),
    (re.compile(r"^(?:MUX|MSS|BWDMUX|FWDMUX)\d?$", re.I), ProductClass.MULTISPECTRAL, "multispectral camera"),
    (re.compile(r"^(?:PAN|NAD|FWD|BWD|BWDPAN|FWDPAN)\d?$", re.I), ProductClass.PANCHROMATIC,
     "panchromatic camera"),
    (re.compile(r"^(?:IRS|TIR|IRMSS)\d?$", re.I), ProductClass.THERMAL, "infrared camera"),
    (re.compile(r"^AHSI$", re.I), ProductClass.HYPERSPECTRAL, "hyperspectral imager"),
)

_CORNERS = ("TopLeft", "TopRight", "BottomRight", "BottomLeft")

#: A band number as sidecars write it, and the most bands a sidecar may list
#: (hyperspectral AHSI has 330).
_BAND_NUMBER = re.compile(r"\d{1,4}", re.ASCII)
_MAX_BANDS = 4096


def is_gf_optical_root(root: Element) -> bool:
    """True for a CRESDA ``<ProductMetaData>`` optical sidecar."""
    return local_name(root.tag) == "ProductMetaData"


def read_gf_optical_sidecar(path: Path, source: str) -> list[Evidence]:
    """Evidence from a ``<ProductMetaData>`` optical sidecar.

    Parameters
    ----------
    path
        The sidecar XML.
    source
        The label to put on the evidence.

    Returns
    -------
    list of Evidence
        Satellite, sensor, product id and level, acquisition time, ImageGSD
        (and WidthInMeters / WidthInPixels when given), size, band numbers,
        a class hint from the band numbers or sensor, and the footprint.

    Raises
    ------
    ProductReadError
        When the file is not a ``ProductMetaData`` sidecar or a field that
        must be a number is not one.
    """
    root = parse_xml(path)
    if not is_gf_optical_root(root):
        raise ProductReadError(path, f"not a <ProductMetaData> sidecar (root is <{local_name(root.tag)}>)")
    out: list[Evidence] = []

    def text(field: str) -> str | None:
        # The fields are flat, but a copy nested anywhere counts as well.
        return find_text_anywhere(root, field, file=path)

    def add(fact: Fact, field: str, value: str | float | int | None, detail: str = "") -> None:
        if value is not None:
            out.append(Evidence(fact, value, source, field, detail))

    satellite = text("SatelliteID")
    sensor = text("SensorID")
    add(Fact.SATELLITE, "SatelliteID", satellite)
    add(Fact.SENSOR, "SensorID", sensor)
    add(Fact.PRODUCT_ID, "ProductID", text("ProductID"))
    add(Fact.PRODUCT_LEVEL, "ProductLevel", text("ProductLevel"))
    add(Fact.ACQUISITION_TIME, "CenterTime", text("CenterTime") or text("StartTime"))

    gsd = parse_length_m(text("ImageGSD"), path, "ImageGSD")
    add(Fact.GSD, "ImageGSD", gsd, "ground sampling distance stated by the distributor")
    width = parse_pixel_count(text("WidthInPixels"), path, "WidthInPixels")
    height = parse_pixel_count(text("HeightInPixels"), path, "HeightInPixels")
    add(Fact.WIDTH, "WidthInPixels", width)
    add(Fact.HEIGHT, "HeightInPixels", height)
    for axis, pixels in (("Width", width), ("Height", height)):
        metres = parse_length_m(text(f"{axis}InMeters"), path, f"{axis}InMeters")
        if metres is not None and pixels:
            field = f"{axis}InMeters/{axis}InPixels"
            add(Fact.GSD, field, check_length_m(metres / pixels, path, field),
                f"{metres:g} m over {pixels} pixels")

    band_text = text("Bands")
    bands = _parse_band_numbers(band_text, path)
    if bands:
        add(Fact.BAND_NUMBERS, "Bands", ",".join(str(b) for b in bands),
            f"band numbers (not a count): {len(bands)} band(s)")
    out.extend(_class_hints(sensor, bands, source))
    footprint = _footprint(text, path)
    add(Fact.FOOTPRINT, "TopLeft..BottomLeft Latitude/Longitude", footprint)
    return out


def _parse_band_numbers(text: str | None, path: Path) -> tuple[int, ...]:
    if text is None:
        return ()
    parts = [p for p in re.split(r"[,\s;]+", text) if p]
    # Band numbers are small ASCII integers; int() would also take "1_0",
    # full-width digits and thousand-digit strings.
    if len(parts) > _MAX_BANDS or not all(_BAND_NUMBER.fullmatch(p) for p in parts):
        raise ProductReadError(path, f"<Bands> is not a list of band numbers: {shown(text)}")
    return tuple(int(p) for p in parts)


def _class_hints(sensor: str | None, bands: tuple[int, ...], source: str) -> list[Evidence]:
    hints: list[Evidence] = []
    if sensor:
        for pattern, product_class, meaning in _SENSOR_CLASSES:
            if pattern.match(sensor):
                hints.append(Evidence(Fact.CLASS_HINT, product_class.value, source, "SensorID",
                                      f"{sensor}: {meaning}", Strength.STRONG))
                break
    if sensor and _PMS_CAMERA.match(sensor) and bands:
        if set(bands) == {5}:
            hints.append(Evidence(Fact.CLASS_HINT, ProductClass.PANCHROMATIC.value, source, "Bands",
                                  f"{sensor} band 5 is the panchromatic band", Strength.MEDIUM))
        elif set(bands) <= {1, 2, 3, 4}:
            hints.append(Evidence(Fact.CLASS_HINT, ProductClass.MULTISPECTRAL.value, source, "Bands",
                                  f"{sensor} bands {','.join(map(str, bands))} are multispectral", Strength.MEDIUM))
    elif len(bands) >= 3:
        hints.append(Evidence(Fact.CLASS_HINT, ProductClass.MULTISPECTRAL.value, source, "Bands",
                              f"{len(bands)} spectral bands listed", Strength.MEDIUM))
    return hints


def _footprint(text: Callable[[str], str | None], path: Path) -> str | None:
    points: list[tuple[float, float]] = []
    for corner in _CORNERS:
        lat = parse_float(text(f"{corner}Latitude"), path, f"{corner}Latitude",
                          lowest=-90.0, highest=90.0, what="latitude")
        lon = parse_float(text(f"{corner}Longitude"), path, f"{corner}Longitude",
                          lowest=-180.0, highest=360.0, what="longitude")
        if lat is None or lon is None:
            return None
        points.append((lon, lat))
    from shapely.geometry import Polygon  # noqa: PLC0415 - only footprints need it (30 ms to import)

    return str(Polygon(points).wkt)
