"""Evidence from the ``<ProductMetaData>`` sidecar of Haiyang products.

HY-1C/1D (CZI, COCTS) and HY-2 products ship an HDF5 file plus an XML
sidecar whose root is ``<ProductMetaData>``, as CRESDA's Gaofen sidecars
are, but with differences that matter here:

* ``SatelliteID`` is hyphenated (``HY-1C``), GF's is not (``GF2``);
* the resolution is a ``Resolution`` field in metres, with or without GF's
  ``ImageGSD``;
* sidecars from the NSOAS ground segment nest their fields in blocks
  (``ProductInfo/Resolution``, ``ImageInfo/CentreTime``,
  ``ImageInfo/Corners/TopLeft/TopLeft_Latitude``) where GF's are flat.

Both layouts are read: a field is every element of its name anywhere in the
document, and one written more than once must say the same everywhere.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from xml.etree.ElementTree import Element

from rspolicy.errors import ProductReadError
from rspolicy.model import Evidence, Fact
from rspolicy.readers.hdf5 import normalise_satellite, sensor_info
from rspolicy.readers.xmlutil import (
    check_length_m,
    element_text,
    iter_named,
    local_name,
    parse_float,
    parse_pixel_count,
    parse_xml,
    shown,
    sidecar_file,
    single_value,
)

__all__ = ["is_hy_root", "read_hy_sidecar"]

_HY_SATELLITE_RE = re.compile(r"^HY-?\d", re.IGNORECASE)
_CORNERS = ("TopLeft", "TopRight", "BottomRight", "BottomLeft")
_LENGTH_RE = re.compile(r"\s*(\S+?)\s*(m|km|meters?|metres?)?\s*", re.IGNORECASE)
#: A band number as sidecars write it, and the most a sidecar may list.
_BAND_NUMBER = re.compile(r"\d{1,4}", re.ASCII)
_MAX_BANDS = 4096


def _values(elements: list[Element], root: Element, name: str) -> str | None:
    """The one value of a field written at each of ``elements``."""
    unique = list({id(e): e for e in elements}.values())
    return single_value([element_text(e) for e in unique], sidecar_file(root), name)


def _value(root: Element, name: str) -> str | None:
    """The field ``name`` wherever it is written (flat or nested)."""
    return _values(list(iter_named(root, name)), root, name)


def _field(root: Element, *names: str) -> tuple[str, str] | None:
    """The first of ``names`` present with a value, as ``(name, text)``."""
    for name in names:
        text = _value(root, name)
        if text is not None:
            return name, text
    return None


def is_hy_root(root: Element) -> bool:
    """Whether an XML root is a Haiyang ``<ProductMetaData>`` sidecar.

    True only for ``<ProductMetaData>`` whose ``SatelliteID`` starts with
    ``HY`` followed by the series number, hyphenated or not.

    >>> import xml.etree.ElementTree as ET
    >>> is_hy_root(ET.fromstring("<ProductMetaData><SatelliteID>HY-1C</SatelliteID></ProductMetaData>"))
    True
    >>> is_hy_root(ET.fromstring("<ProductMetaData><SatelliteID>GF2</SatelliteID></ProductMetaData>"))
    False
    """
    if local_name(root.tag) != "ProductMetaData":
        return False
    satellite = _value(root, "SatelliteID")
    return satellite is not None and _HY_SATELLITE_RE.match(satellite) is not None


def read_hy_sidecar(path: Path, source: str) -> list[Evidence]:
    """Read the evidence of an HY ``<ProductMetaData>`` sidecar.

    Parameters
    ----------
    path
        The local XML file.
    source
        The label to put on the evidence.

    Returns
    -------
    list of Evidence
        SATELLITE (``HY-1C``), SENSOR (canonical: ``CZI``, ``COCTS``),
        PRODUCT_ID, PRODUCT_LEVEL, ACQUISITION_TIME (centre time, else start
        time, ISO 8601), GSD in metres from ``Resolution`` and from
        ``ImageGSD``, WIDTH, HEIGHT, BAND_NUMBERS and BAND_COUNT, FOOTPRINT
        (WKT polygon, longitude/latitude, from the four corners) and a
        CLASS_HINT for a known sensor.

    Raises
    ------
    ProductReadError
        When the file is not safe, well-formed XML, is not an HY sidecar, or
        a field that is present holds an invalid value.
    """
    root = parse_xml(path)
    if not is_hy_root(root):
        raise ProductReadError(path, "not an HY <ProductMetaData> sidecar (SatelliteID does not name an HY satellite)")
    out: list[Evidence] = []

    satellite = _field(root, "SatelliteID")
    if satellite:
        value = normalise_satellite(satellite[1])
        detail = f"written {satellite[1]!r}" if value != satellite[1] else ""
        out.append(Evidence(Fact.SATELLITE, value, source, satellite[0], detail))

    sensor = _field(root, "SensorID")
    info = None
    if sensor:
        info = sensor_info(sensor[1])
        if info is None:
            out.append(Evidence(Fact.SENSOR, sensor[1], source, sensor[0],
                                "not a known HY sensor: no class hint from it"))
        else:
            detail = f"written {sensor[1]!r}" if info.name != sensor[1] else ""
            out.append(Evidence(Fact.SENSOR, info.name, source, sensor[0], detail))

    for fact, names in ((Fact.PRODUCT_ID, ("ProductID", "ProductName")), (Fact.PRODUCT_LEVEL, ("ProductLevel",))):
        found = _field(root, *names)
        if found:
            out.append(Evidence(fact, found[1], source, found[0]))

    when = _field(root, "CenterTime", "CentreTime", "StartTime")
    if when:
        out.append(_time(when[0], when[1], source))

    for name in ("Resolution", "ImageGSD"):
        found = _field(root, name)
        if found:
            metres, unit = _metres(found[1], path, name)
            detail = f"{found[1]!r}{'' if unit else ' (metres)'}"
            out.append(Evidence(Fact.GSD, metres, source, name, detail))

    for fact, name in ((Fact.WIDTH, "WidthInPixels"), (Fact.HEIGHT, "HeightInPixels")):
        found = _field(root, name)
        if found:
            out.append(Evidence(fact, _count(found[1], path, name), source, name))

    bands = _field(root, "Bands")
    if bands:
        out.extend(_bands(bands[1], source))

    out.extend(_footprint(root, path, source))

    if sensor and info is not None:
        out.append(Evidence(Fact.CLASS_HINT, info.product_class.value, source, sensor[0], info.why, info.strength))
    return out


def _time(field: str, text: str, source: str) -> Evidence:
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
        try:
            moment = datetime.strptime(text, fmt)
        except ValueError:
            continue
        spec = "milliseconds" if moment.microsecond else "seconds"
        return Evidence(Fact.ACQUISITION_TIME, moment.isoformat(timespec=spec), source, field)
    return Evidence(Fact.ACQUISITION_TIME, text, source, field, "not a recognised time format; kept as written")


def _metres(text: str, path: Path, field: str) -> tuple[float, str]:
    """A positive length in metres, from ``50``, ``50m`` or ``1.1 km``."""
    match = _LENGTH_RE.fullmatch(text)
    if match is None:
        raise ProductReadError(path, f"<{field}> is not a length in metres: {shown(text)}")
    number = parse_float(match[1], path, field) or 0.0
    unit = match[2] or ""
    metres = number * (1000.0 if unit.lower().startswith("k") else 1.0)
    return check_length_m(metres, path, field, text), unit


def _count(text: str, path: Path, field: str) -> int:
    value = parse_pixel_count(text, path, field)
    if value is None:
        raise ProductReadError(path, f"<{field}> is not a whole number of pixels: {shown(text)}")
    return value


def _bands(text: str, source: str) -> list[Evidence]:
    items = [item for item in re.split(r"[\s,;]+", text) if item]
    # isdigit() would take full-width digits and superscripts, which int() then refuses.
    if items and len(items) <= _MAX_BANDS and all(_BAND_NUMBER.fullmatch(item) for item in items):
        numbers = ",".join(str(int(item)) for item in items)
        return [Evidence(Fact.BAND_NUMBERS, numbers, source, "Bands"),
                Evidence(Fact.BAND_COUNT, len(items), source, "Bands", f"{len(items)} band numbers listed")]
    return [Evidence(Fact.BAND_NUMBERS, text, source, "Bands", "not a list of band numbers; kept as written")]


def _corner_text(root: Element, corner: str, axis: str) -> str | None:
    """One corner coordinate in any of the known layouts.

    Flat GF style ``TopLeftLatitude``; NSOAS ``TopLeft_Latitude``, either
    anywhere or inside a ``TopLeft`` block; or ``TopLeft/Latitude``. Every
    place it is written counts, and they must agree.
    """
    elements = [*iter_named(root, f"{corner}{axis}"), *iter_named(root, f"{corner}_{axis}")]
    for block in iter_named(root, corner):
        elements.extend(child for child in block if local_name(child.tag) == axis)
    return _values(elements, root, f"{corner}{axis}")


def _footprint(root: Element, path: Path, source: str) -> list[Evidence]:
    points: list[tuple[float, float]] = []
    missing: list[str] = []
    for corner in _CORNERS:
        lat_text = _corner_text(root, corner, "Latitude")
        lon_text = _corner_text(root, corner, "Longitude")
        lat = parse_float(lat_text, path, f"{corner}Latitude", lowest=-90.0, highest=90.0, what="latitude")
        lon = parse_float(lon_text, path, f"{corner}Longitude", lowest=-180.0, highest=360.0, what="longitude")
        if lat is None or lon is None:
            missing.append(corner)
            continue
        points.append((lon, lat))
    if len(missing) == len(_CORNERS):
        return []
    if missing:
        return [Evidence(Fact.INFO, ",".join(missing), source, "corners",
                         "corner coordinates missing for these corners: no footprint")]
    import shapely  # noqa: PLC0415 - only footprints need it (30 ms to import)

    polygon = shapely.Polygon(points)
    detail = "lon/lat polygon TopLeft, TopRight, BottomRight, BottomLeft"
    if not polygon.is_valid or polygon.area == 0:
        detail += "; the corners do not form a simple polygon"
    wkt = shapely.to_wkt(polygon, rounding_precision=8, trim=True)
    return [Evidence(Fact.FOOTPRINT, wkt, source, "TopLeft..BottomLeft Latitude/Longitude", detail)]
