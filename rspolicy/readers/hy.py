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

Both layouts are read: each field is looked up as a child of the root
first, then anywhere in the document.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from xml.etree.ElementTree import Element

import shapely
from shapely.geometry import Polygon

from rspolicy.errors import ProductReadError
from rspolicy.model import Evidence, Fact
from rspolicy.readers.hdf5 import normalise_satellite, sensor_info
from rspolicy.readers.xmlutil import local_name, parse_float, parse_positive, parse_xml

__all__ = ["is_hy_root", "read_hy_sidecar"]

_HY_SATELLITE_RE = re.compile(r"^HY-?\d", re.IGNORECASE)
_CORNERS = ("TopLeft", "TopRight", "BottomRight", "BottomLeft")
_LENGTH_RE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(m|km|meters?|metres?)?\s*", re.IGNORECASE)
#: Values distributors write for "no value" (as in xmlutil).
_EMPTY = {"", "null", "none", "nan", "n/a", "-"}


def _element(root: Element, name: str) -> Element | None:
    """The field ``name``: a child of the root, else the first descendant."""
    for child in root:
        if local_name(child.tag) == name:
            return child
    return next((node for node in root.iter() if local_name(node.tag) == name), None)


def _text(node: Element | None) -> str | None:
    if node is None or node.text is None:
        return None
    text = node.text.strip()
    return None if text.lower() in _EMPTY else text


def _field(root: Element, *names: str) -> tuple[str, str] | None:
    """The first of ``names`` present with a value, as ``(name, text)``."""
    for name in names:
        text = _text(_element(root, name))
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
    satellite = _text(_element(root, "SatelliteID"))
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
        raise ProductReadError(path, f"<{field}> is not a length in metres: {text!r}")
    number = parse_positive(match[1], path, field) or 0.0
    unit = match[2] or ""
    return number * (1000.0 if unit.lower().startswith("k") else 1.0), unit


def _count(text: str, path: Path, field: str) -> int:
    value = parse_positive(text, path, field)
    if value is None or value != int(value):
        raise ProductReadError(path, f"<{field}> is not a whole number of pixels: {text!r}")
    return int(value)


def _bands(text: str, source: str) -> list[Evidence]:
    items = [item for item in re.split(r"[\s,;]+", text) if item]
    if items and all(item.isdigit() for item in items):
        numbers = ",".join(str(int(item)) for item in items)
        return [Evidence(Fact.BAND_NUMBERS, numbers, source, "Bands"),
                Evidence(Fact.BAND_COUNT, len(items), source, "Bands", f"{len(items)} band numbers listed")]
    return [Evidence(Fact.BAND_NUMBERS, text, source, "Bands", "not a list of band numbers; kept as written")]


def _corner_text(root: Element, corner: str, axis: str) -> str | None:
    """One corner coordinate in any of the known layouts.

    Flat GF style ``TopLeftLatitude``; NSOAS ``TopLeft_Latitude``, either
    anywhere or inside a ``TopLeft`` block; or ``TopLeft/Latitude``.
    """
    for name in (f"{corner}{axis}", f"{corner}_{axis}"):
        text = _text(_element(root, name))
        if text is not None:
            return text
    block = _element(root, corner)
    if block is not None:
        for child in block:
            if local_name(child.tag) in (axis, f"{corner}_{axis}"):
                return _text(child)
    return None


def _footprint(root: Element, path: Path, source: str) -> list[Evidence]:
    points: list[tuple[float, float]] = []
    missing: list[str] = []
    for corner in _CORNERS:
        lat_text = _corner_text(root, corner, "Latitude")
        lon_text = _corner_text(root, corner, "Longitude")
        lat = parse_float(lat_text, path, f"{corner}Latitude")
        lon = parse_float(lon_text, path, f"{corner}Longitude")
        if lat is None or lon is None:
            missing.append(corner)
            continue
        if not -90.0 <= lat <= 90.0:
            raise ProductReadError(path, f"<{corner}Latitude> is not a latitude: {lat_text!r}")
        if not -180.0 <= lon <= 360.0:
            raise ProductReadError(path, f"<{corner}Longitude> is not a longitude: {lon_text!r}")
        points.append((lon, lat))
    if len(missing) == len(_CORNERS):
        return []
    if missing:
        return [Evidence(Fact.INFO, ",".join(missing), source, "corners",
                         "corner coordinates missing for these corners: no footprint")]
    polygon = Polygon(points)
    detail = "lon/lat polygon TopLeft, TopRight, BottomRight, BottomLeft"
    if not polygon.is_valid or polygon.area == 0:
        detail += "; the corners do not form a simple polygon"
    wkt = shapely.to_wkt(polygon, rounding_precision=8, trim=True)
    return [Evidence(Fact.FOOTPRINT, wkt, source, "TopLeft..BottomLeft Latitude/Longitude", detail)]
