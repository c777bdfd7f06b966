"""Reader of the Gaofen-3 SAR product sidecar (``*.meta.xml``, root ``<product>``).

A GF-3 delivery carries one ``<product>`` sidecar per scene next to one TIFF
per polarisation channel. The sidecar gives two kinds of resolution evidence
and both are emitted, because the policy takes the finer of them:

* ``productinfo/NominalResolution``: the imaging mode's nominal
  (impulse-response) resolution, e.g. 3 m for Ultra-Fine Stripmap;
* ``imageinfo/widthspace`` / ``heightspace``: the pixel spacing across
  (range) and along (azimuth) track, e.g. 1.5 m for the same product. Real
  sidecars sample at half the nominal resolution, so the spacing is finer.

Spacing in a level-1 complex product (``SLC``) is measured in slant range.
On the ground it becomes ``widthspace / sin(incidence)``, coarsest at near
range and finest at far range; the far-range value is used so that the finest
ground spacing anywhere in the scene is reported.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from xml.etree.ElementTree import Element

from rspolicy.errors import ProductReadError
from rspolicy.model import Evidence, Fact, ProductClass, Strength
from rspolicy.readers.xmlutil import (
    check_length_m,
    find_text,
    find_text_anywhere,
    find_texts,
    local_name,
    parse_float,
    parse_length_m,
    parse_pixel_count,
    parse_xml,
    shown,
)

#: Canonical names of the GF-3 family, keyed by the satellite text with
#: case and separators removed (``GF-3``, ``gf3``, ``GAOFEN-3`` ...).
_GF3_FAMILY = {
    "GF3": "GF-3", "GAOFEN3": "GF-3",
    "GF3B": "GF-3B", "GAOFEN3B": "GF-3B",
    "GF3C": "GF-3C", "GAOFEN3C": "GF-3C",
}

#: GF-3 imaging modes, for the auditor's benefit only: the resolution always
#: comes from the sidecar's own numbers, never from this table.
IMAGING_MODES = {
    "SL": "Spotlight",
    "UFS": "Ultra-Fine Stripmap",
    "FSI": "Fine Stripmap I",
    "FSII": "Fine Stripmap II (wide fine)",
    "SS": "Standard Stripmap",
    "QPSI": "Quad-Polarisation Stripmap I",
    "QPSII": "Quad-Polarisation Stripmap II",
    "NSC": "Narrow ScanSAR",
    "WSC": "Wide ScanSAR",
    "GLO": "Global ScanSAR",
    "WAV": "Wave",
    "EXT": "Extended Incidence",
}

#: Product types whose pixel grid is in slant range: complex data cannot be
#: anything else. Other level-1 types (SLP/MLP) are taken as written, which
#: can only overstate the fineness: slant spacing <= ground spacing.
SLANT_RANGE_TYPES = frozenset({"SLC"})

#: The corners of a GF-3 footprint, in the order they form a ring.
_CORNER_RING = ("topLeft", "topRight", "bottomRight", "bottomLeft")

_SEPARATORS = re.compile(r"[\s_\-]+")

#: The resolution fields, each written once in a real sidecar.
_RESOLUTION_FIELDS = frozenset({"productinfo/NominalResolution", "imageinfo/widthspace", "imageinfo/heightspace"})


def canonical_gf3_name(text: str) -> str | None:
    """The canonical GF-3 family name for a sidecar's ``<satellite>`` text.

    Parameters
    ----------
    text
        The satellite as written, e.g. ``GF3``, ``GF-3``, ``Gaofen-3B``.

    Returns
    -------
    str or None
        ``GF-3``, ``GF-3B`` or ``GF-3C``; None for any other satellite.

    Examples
    --------
    >>> canonical_gf3_name("GF3"), canonical_gf3_name("gaofen-3c"), canonical_gf3_name("GF2")
    ('GF-3', 'GF-3C', None)
    """
    return _GF3_FAMILY.get(_SEPARATORS.sub("", text).upper())


def is_gf3_root(root: Element) -> bool:
    """Whether a parsed XML root is a GF-3 ``<product>`` sidecar.

    ``<product>`` is too common a root name to go on alone: the satellite
    must be of the GF-3 family, or, when the satellite is not written, the
    document must carry a SAR sensor and the GF-3 pixel-spacing element.

    Parameters
    ----------
    root
        The root element of a parsed sidecar.

    Returns
    -------
    bool
        True for a GF-3 SAR product sidecar.

    Examples
    --------
    >>> import xml.etree.ElementTree as ET
    >>> is_gf3_root(ET.fromstring("<product><satellite>GF3</satellite></product>"))
    True
    >>> is_gf3_root(ET.fromstring("<product><satellite>GF2</satellite></product>"))
    False
    """
    if local_name(root.tag) != "product":
        return False
    satellite = find_text(root, "satellite")
    if satellite is not None:
        return canonical_gf3_name(satellite) is not None
    sensor = find_text(root, "sensor/sensorID")
    return sensor is not None and sensor.upper() == "SAR" and find_text(root, "imageinfo/widthspace") is not None


def read_gf3_sidecar(path: Path, source: str) -> list[Evidence]:
    """Read the evidence a GF-3 ``*.meta.xml`` sidecar gives.

    Parameters
    ----------
    path
        The local sidecar file.
    source
        The label to put on the evidence (the sidecar's display path).

    Returns
    -------
    list of Evidence
        Satellite, sensor, imaging mode, product id, type and level,
        polarisation, acquisition time, width and height, incidence angles,
        nominal resolution, pixel spacing (as ground GSD), a strong SAR class
        hint, the footprint and explanatory INFO. Empty and ``NULL`` fields
        are skipped; a sidecar without any resolution field still reads, and
        the resolution stage decides what that means.

    Raises
    ------
    ProductReadError
        When the file is unreadable or unsafe XML, is not a GF-3 sidecar, or
        holds a malformed number in a field that is read.
    """
    root = parse_xml(path)
    if not is_gf3_root(root):
        raise ProductReadError(path, f"not a GF-3 <product> sidecar (root <{local_name(root.tag)}>)")

    out: list[Evidence] = [
        Evidence(Fact.CLASS_HINT, ProductClass.SAR.value, source, "product",
                 "GF-3 SAR product sidecar", Strength.STRONG),
    ]

    def text(field: str) -> str | None:
        if field in _RESOLUTION_FIELDS:
            # Written once in a real sidecar: a copy slipped in anywhere else counts too.
            return find_text_anywhere(root, field.rsplit("/", 1)[-1], file=path, field=field)
        return find_text(root, field, file=path)

    satellite = text("satellite")
    if satellite is not None:
        out.append(Evidence(Fact.SATELLITE, satellite, source, "satellite",
                            f"GF-3 family satellite {canonical_gf3_name(satellite)} (as written: {satellite!r})"))
    for fact, field in ((Fact.SENSOR, "sensor/sensorID"), (Fact.PRODUCT_ID, "productID"),
                        (Fact.PRODUCT_TYPE, "productinfo/productType"),
                        (Fact.PRODUCT_LEVEL, "productinfo/productLevel"),
                        (Fact.ACQUISITION_TIME, "imageinfo/imagingTime/start")):
        value = text(field)
        if value is not None:
            out.append(Evidence(fact, value, source, field))

    mode = text("sensor/imagingMode")
    if mode is not None:
        name = IMAGING_MODES.get(mode.upper())
        out.append(Evidence(Fact.IMAGING_MODE, mode, source, "sensor/imagingMode",
                            name if name is not None else "imaging mode not in the GF-3 mode list"))

    out.extend(_polarisation(root, path, source))

    for fact, field in ((Fact.WIDTH, "imageinfo/width"), (Fact.HEIGHT, "imageinfo/height")):
        size = parse_pixel_count(text(field), path, field)
        if size is not None:
            out.append(Evidence(fact, size, source, field))

    near = _parse_angle(text("processinfo/incidenceAngleNearRange"), path, "processinfo/incidenceAngleNearRange")
    far = _parse_angle(text("processinfo/incidenceAngleFarRange"), path, "processinfo/incidenceAngleFarRange")
    if near is not None:
        out.append(Evidence(Fact.INCIDENCE_ANGLE, near, source, "processinfo/incidenceAngleNearRange",
                            "incidence at near range, degrees"))
    if far is not None:
        out.append(Evidence(Fact.INCIDENCE_ANGLE, far, source, "processinfo/incidenceAngleFarRange",
                            "incidence at far range, degrees"))

    nominal = parse_length_m(text("productinfo/NominalResolution"), path, "productinfo/NominalResolution")
    if nominal is not None:
        out.append(Evidence(Fact.NOMINAL_RESOLUTION, nominal, source, "productinfo/NominalResolution",
                            "nominal resolution of the imaging mode, metres"))

    range_spacing = parse_length_m(text("imageinfo/widthspace"), path, "imageinfo/widthspace")
    azimuth_spacing = parse_length_m(text("imageinfo/heightspace"), path, "imageinfo/heightspace")
    product_type = (text("productinfo/productType") or "").upper()
    if range_spacing is not None:
        out.extend(_range_spacing(range_spacing, product_type, text("productinfo/productLevel"),
                                  near=near, far=far, source=source, path=path))
    if azimuth_spacing is not None:
        out.append(Evidence(Fact.GSD, azimuth_spacing, source, "imageinfo/heightspace",
                            "azimuth (along-track) pixel spacing, metres: already a ground distance"))

    if nominal is not None and (range_spacing is not None or azimuth_spacing is not None):
        spacing = ", ".join(f"{v:g}" for v in (range_spacing, azimuth_spacing) if v is not None)
        out.append(Evidence(Fact.INFO, f"nominal resolution {nominal:g} m, pixel spacing {spacing} m",
                            source, "productinfo/NominalResolution",
                            "GF-3 gives both a nominal resolution and a pixel spacing (real sidecars "
                            "sample at half the nominal resolution); both are evidence and the finer governs"))

    footprint = _footprint(root, path)
    if footprint is not None:
        wkt, detail = footprint
        out.append(Evidence(Fact.FOOTPRINT if wkt is not None else Fact.INFO, wkt, source,
                            "imageinfo/corner", detail))
    return out


def _polarisation(root: Element, path: Path, source: str) -> list[Evidence]:
    """Polarisation from ``productinfo/productPolar``, else the sensor's polar mode.

    The sensor's mode is emitted as well when it disagrees with the product
    field, so that an auditor sees both. The channels that carry data are
    named from the non-NULL calibration constants, because the polarisation
    code alone does not say it: a real UFS sidecar writes ``DH`` and gives a
    calibration constant for HH only. ``polarParams`` is a list (one
    ``<polar>`` per mode, ``num`` of them), so each of its modes is read.
    """
    out: list[Evidence] = []
    product_polar = find_text(root, "productinfo/productPolar", file=path)
    for sensor_polar in find_texts(root, "sensor/polarParams/polar/polarMode"):
        if sensor_polar != product_polar:
            detail = "" if product_polar is None else f"differs from productinfo/productPolar {product_polar!r}"
            out.append(Evidence(Fact.POLARISATION, sensor_polar, source, "sensor/polarParams/polar/polarMode",
                                detail))
    if product_polar is not None:
        out.insert(0, Evidence(Fact.POLARISATION, product_polar, source, "productinfo/productPolar"))
    calibrated = [pol for pol in ("HH", "HV", "VH", "VV")
                  if find_text(root, f"processinfo/CalibrationConst/{pol}", file=path) is not None]
    if calibrated:
        out.append(Evidence(Fact.INFO, ",".join(calibrated), source, "processinfo/CalibrationConst",
                            "polarisation channels with a calibration constant (the others are NULL)"))
    return out


def _range_spacing(spacing: float, product_type: str, level: str | None, *,
                   near: float | None, far: float | None, source: str, path: Path) -> list[Evidence]:
    """The ground range spacing evidence for ``imageinfo/widthspace``."""
    field = "imageinfo/widthspace"
    if product_type not in SLANT_RANGE_TYPES:
        what = f"productType {product_type or 'not given'}, level {level or 'not given'}"
        if level is not None and level.upper().lstrip("L").startswith("1"):
            # A level-1 detected product may still be in slant range; taking
            # its spacing as written can only make it look finer, never coarser.
            how = "taken as written (if it is slant range, the ground spacing is coarser)"
        else:
            how = "ground/map spacing"
        return [Evidence(Fact.GSD, spacing, source, field,
                         f"range (across-track) pixel spacing, metres; {what}: {how}")]
    raw = Evidence(Fact.INFO, spacing, source, field,
                   f"slant-range pixel spacing of the {product_type} product, metres")
    if far is None:
        # The near-range angle alone would give the coarsest ground spacing
        # of the swath, overstating it at far range: use the slant value,
        # which is never coarser than any ground value.
        why = "near-range only" if near is not None else "none"
        return [raw, Evidence(Fact.GSD, spacing, source, field,
                              f"slant-range spacing used as ground spacing: far-range incidence angle "
                              f"missing (incidence given: {why}); slant <= ground, so this errs finer")]
    angle = far if near is None else max(near, far)
    ground = check_length_m(spacing / math.sin(math.radians(angle)), path, field)
    return [raw, Evidence(Fact.GSD, ground, source, field,
                          f"ground-range spacing = slant {spacing:g} m / sin({angle:g} deg) = {ground:.6g} m, "
                          f"using the far-range (largest) incidence, which gives the finest ground spacing")]


def _parse_angle(text: str | None, path: Path, field: str) -> float | None:
    """An incidence angle strictly between 0 and 90 degrees, None when empty.

    The angle divides a slant spacing by its sine, so anything outside that
    range would turn into a nonsense (or negative) ground spacing.
    """
    value = parse_float(text, path, field)
    if value is not None and not 0.0 < value < 90.0:
        raise ProductReadError(path, f"<{field}> is absurd: {shown(text)} is not an incidence angle "
                                     "in (0, 90) degrees")
    return value


def _footprint(root: Element, path: Path) -> tuple[str | None, str] | None:
    """WKT and detail of the ``imageinfo/corner`` polygon, None without all four corners."""
    points: list[tuple[float, float]] = []
    for corner in _CORNER_RING:
        base = f"imageinfo/corner/{corner}"
        lat = parse_float(find_text(root, f"{base}/latitude", file=path), path, f"{base}/latitude",
                          lowest=-90.0, highest=90.0, what="latitude")
        lon = parse_float(find_text(root, f"{base}/longitude", file=path), path, f"{base}/longitude",
                          lowest=-180.0, highest=180.0, what="longitude")
        if lat is None or lon is None:
            return None
        points.append((lon, lat))
    return corners_to_wkt(points, path, "imageinfo/corner")


def corners_to_wkt(points: Sequence[tuple[float, float]], path: Path, field: str) -> tuple[str | None, str]:
    """A footprint polygon from corner coordinates given in ring order.

    Parameters
    ----------
    points
        ``(longitude, latitude)`` pairs in degrees, in the order they go
        round the footprint.
    path
        The sidecar, for error messages.
    field
        Where the corners were read, for error messages.

    Returns
    -------
    tuple
        The polygon as WKT (longitude first) and a detail sentence. The WKT
        is None, and the sentence says why, when the corners do not form a
        simple polygon: a footprint is context, not a reason to refuse.

    Raises
    ------
    ProductReadError
        When a coordinate is not a longitude/latitude.

    Examples
    --------
    >>> corners_to_wkt([(10, 1), (11, 1), (11, 0), (10, 0)], Path("x.xml"), "corner")[0]
    'POLYGON ((10 1, 11 1, 11 0, 10 0, 10 1))'
    """
    for lon, lat in points:
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise ProductReadError(path, f"<{field}> corner ({lon}, {lat}) is not a longitude/latitude")
    detail = "corner coordinates, longitude/latitude degrees"
    lons = [lon for lon, _ in points]
    if max(lons) - min(lons) > 180.0:
        # A scene is never half a world wide: the corners straddle the
        # antimeridian, and the ring is drawn on the 0..360 side instead.
        points = [(lon + 360.0 if lon < 0 else lon, lat) for lon, lat in points]
        detail += "; crosses the antimeridian, longitudes given in 0..360"
    from shapely.geometry import Polygon  # noqa: PLC0415 - only SAR corners need it (30 ms to import)

    polygon = Polygon(points)
    if not polygon.is_valid or polygon.area == 0:
        return None, f"<{field}> corners do not form a simple polygon: no footprint"
    return polygon.wkt, detail
