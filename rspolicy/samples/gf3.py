"""Synthetic Gaofen-3 SAR ``*.meta.xml`` sidecars and GF-3 file names.

The sidecar is modelled element for element on two real GF-3 level-2
sidecars (Fine Stripmap I ``HHHV`` and Ultra-Fine Stripmap ``DH``): same
element names, nesting and order, same number formats and ``NULL`` for
absent values. Only the repeated ``<GPSParam>`` and ``<ATTIParam>`` blocks are
cut down (a real sidecar has hundreds). The defaults reproduce the real UFS
sidecar's values.

Writing is safe with the standard library; only parsing untrusted XML needs
defusedxml.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, Union

#: Element content: text, or child nodes.
Content: TypeAlias = Union[str, list["Node"]]  # noqa: UP007 - a recursive alias needs the string form
#: A declarative XML node: tag, attributes, content.
Node: TypeAlias = tuple[str, dict[str, str], Content]

#: A ``(longitude, latitude)`` pair, degrees.
LonLat: TypeAlias = tuple[float, float]
#: Footprint corners in the sidecar's order: topLeft, topRight, bottomLeft, bottomRight.
Corners: TypeAlias = tuple[LonLat, LonLat, LonLat, LonLat]
#: A number to write, a string written as is (to plant malformed values), or None for ``NULL``.
Value: TypeAlias = float | int | str | None

#: The real UFS sidecar's corners (topLeft, topRight, bottomLeft, bottomRight).
UFS_CORNERS: Corners = (
    (-43.413278, -22.486060), (-43.084910, -22.560035),
    (-43.493289, -22.801116), (-43.163805, -22.875316),
)

#: The real UFS sidecar's scene centre.
UFS_CENTER: LonLat = (-43.293942, -22.679569)

#: The polarisation channels (one TIFF each) a GF-3 polarisation code stands for.
POLAR_CHANNELS: Mapping[str, tuple[str, ...]] = {
    "HH": ("HH",), "HV": ("HV",), "VH": ("VH",), "VV": ("VV",),
    "DH": ("HH", "HV"), "DV": ("VV", "VH"),
    "HHHV": ("HH", "HV"), "VVVH": ("VV", "VH"), "HHVV": ("HH", "VV"),
    "AHV": ("HH", "HV", "VH", "VV"), "HHHVVHVV": ("HH", "HV", "VH", "VV"),
}

_CHANNELS = ("HH", "HV", "VH", "VV")


def node(tag: str, content: Content = "", attrs: Mapping[str, str] | None = None) -> Node:
    """One declarative XML node (see :func:`build`)."""
    return (tag, dict(attrs or {}), content)


def build(spec: Node) -> ET.Element:
    """An ElementTree element from a declarative node.

    Examples
    --------
    >>> ET.tostring(build(node("a", [node("b", "1", {"k": "v"})])))
    b'<a><b k="v">1</b></a>'
    """
    tag, attrs, content = spec
    element = ET.Element(tag, attrs)
    if isinstance(content, str):
        element.text = content
    else:
        element.extend(build(child) for child in content)
    return element


def apply_overrides(root: ET.Element, overrides: Mapping[str, str | None]) -> None:
    """Set or remove elements at ``a/b/c`` paths below ``root``.

    Parameters
    ----------
    root
        The document root.
    overrides
        Path to new text; None removes the element.

    Raises
    ------
    KeyError
        When a path names no element: a mistyped override must not pass
        silently, or a test would check nothing.
    """
    for path, text in overrides.items():
        parent_path, _, leaf = path.rpartition("/")
        parent = root.find(parent_path) if parent_path else root
        target = parent.find(leaf) if parent is not None else None
        if parent is None or target is None:
            raise KeyError(f"no element at {path!r}")
        if text is None:
            parent.remove(target)
        else:
            target.text = text


def write_xml(path: Path, root: ET.Element, standalone: str) -> Path:
    """Write ``root`` indented, with the declaration real sidecars carry."""
    ET.indent(root, space="    " if standalone == "yes" else "  ")
    body = ET.tostring(root, encoding="unicode")
    path.write_text(f'<?xml version="1.0" encoding="UTF-8" standalone="{standalone}" ?>\n{body}\n',
                    encoding="utf-8")
    return path


def fmt(value: Value, digits: int = 6) -> str:
    """A number as GF-3 writes it (fixed decimals), strings as given, None as ``NULL``.

    >>> fmt(1.5), fmt(None), fmt("abc"), fmt(7)
    ('1.500000', 'NULL', 'abc', '7')
    """
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


@dataclass(frozen=True)
class Gf3Names:
    """The file names of one GF-3 delivery.

    Attributes
    ----------
    stem
        The scene name, e.g. ``GF3_MYN_UFS_029108_W43.3_S22.7_20220219_L2_DH_L20006303810``.
    meta
        The sidecar: ``<stem>.meta.xml``.
    tiffs
        Channel (``HH`` ...) to image name: the polarisation code in the
        stem is replaced by the channel.
    browse, thumbs
        Channel to ``.jpg`` and ``.thumb.jpg`` quick-look names.
    """

    stem: str
    meta: str
    tiffs: dict[str, str]
    browse: dict[str, str]
    thumbs: dict[str, str]


def gf3_names(
    station: str, mode: str, orbit: int, lon: float, lat: float, date: dt.date | str,
    level: str | int, polar: str, product_id: int, channels: Sequence[str] | None = None,
) -> Gf3Names:
    """The names GF-3 gives a delivery's files.

    Parameters
    ----------
    station
        Receiving station code (``MYN``, ``SAY``, ``KAS`` ...).
    mode
        Imaging mode (``UFS``, ``FSI`` ...).
    orbit
        Orbit number, written with six digits.
    lon, lat
        Scene centre, degrees; written as ``W43.3`` / ``S22.7``.
    date
        Acquisition date (a date or ``YYYYMMDD``).
    level
        Product level as in the name: ``L2``, ``L1A`` or 2.
    polar
        Polarisation code of the scene (``DH``, ``HHHV``, ``AHV`` ...).
    product_id
        The sidecar's ``<productID>``, written with ten digits after
        ``L`` and the level's digit.
    channels
        The channels that get an image, when not the ones the code implies.

    Returns
    -------
    Gf3Names
        The scene stem, sidecar name and per-channel image names.

    Examples
    --------
    >>> names = gf3_names("MYN", "UFS", 29108, -43.293942, -22.679569, "20220219", "L2", "DH", 6303810)
    >>> names.meta
    'GF3_MYN_UFS_029108_W43.3_S22.7_20220219_L2_DH_L20006303810.meta.xml'
    >>> names.tiffs["HV"]
    'GF3_MYN_UFS_029108_W43.3_S22.7_20220219_L2_HV_L20006303810.tiff'
    """
    level_text = f"L{level}" if isinstance(level, int) else level.upper()
    digit = re.search(r"\d", level_text)
    if digit is None:
        raise ValueError(f"product level {level!r} has no digit")
    day = date.strftime("%Y%m%d") if isinstance(date, dt.date) else date
    where = f"{'W' if lon < 0 else 'E'}{abs(lon):.1f}_{'S' if lat < 0 else 'N'}{abs(lat):.1f}"
    head = f"GF3_{station}_{mode}_{orbit:06d}_{where}_{day}_{level_text}"
    tail = f"L{digit.group()}{product_id:010d}"
    chosen = tuple(channels) if channels is not None else POLAR_CHANNELS.get(polar.upper(), (polar,))
    per = {ch: f"{head}_{ch}_{tail}" for ch in chosen}
    return Gf3Names(
        stem=f"{head}_{polar}_{tail}",
        meta=f"{head}_{polar}_{tail}.meta.xml",
        tiffs={ch: f"{name}.tiff" for ch, name in per.items()},
        browse={ch: f"{name}.jpg" for ch, name in per.items()},
        thumbs={ch: f"{name}.thumb.jpg" for ch, name in per.items()},
    )


def write_gf3_meta(
    path: Path,
    *,
    imaging_mode: str = "UFS",
    product_type: str = "SLP",
    nominal_resolution: Value = 3.0,
    widthspace: Value = 1.5,
    heightspace: Value = 1.5,
    width: Value = 27967,
    height: Value = 28727,
    polar: str = "DH",
    incidence_near: Value = 19.030093,
    incidence_far: Value = 21.663930,
    corners: Corners = UFS_CORNERS,
    center: LonLat | None = None,
    satellite: str = "GF3",
    product_level: str = "2",
    product_id: int = 6303810,
    station: str = "MYN",
    orbit_id: int = 29108,
    start: str = "2022-02-19 08:33:23.753066",
    end: str = "2022-02-19 08:33:29.050428",
    look_angle: float = 18.68,
    calibrated: Sequence[str] | None = None,
    product_format: str = "GEOTIFF",
    project_model: str = "UTM",
    gps_blocks: int = 3,
    atti_blocks: int = 3,
    overrides: Mapping[str, str | None] | None = None,
) -> Path:
    """Write a GF-3 ``<product>`` sidecar shaped like the real ones.

    Parameters
    ----------
    path
        Where to write (by convention a name from :func:`gf3_names`).
    imaging_mode, product_type, product_level, polar
        ``sensor/imagingMode``, ``productinfo/productType``,
        ``productinfo/productLevel`` and the polarisation code written to
        both ``productinfo/productPolar`` and the sensor's ``polarMode``.
    nominal_resolution, widthspace, heightspace
        ``productinfo/NominalResolution`` and the range/azimuth pixel
        spacing, metres. A string is written verbatim (to plant a malformed
        value); None writes ``NULL``.
    width, height
        ``imageinfo/width`` and ``height``, pixels.
    incidence_near, incidence_far
        ``processinfo/incidenceAngleNearRange`` / ``FarRange``, degrees.
    corners
        Footprint corners, ``(lon, lat)``, in the sidecar's order
        (topLeft, topRight, bottomLeft, bottomRight).
    center
        Scene centre ``(lon, lat)``; by default the real one for the default
        corners, else the mean of the corners.
    satellite, product_id, station, orbit_id, start, end, look_angle
        Identification and timing fields.
    calibrated
        Channels given a calibration constant and quality value (the others
        are ``NULL``). Defaults to HH alone for ``DH``, as in the real UFS
        sidecar, and to the code's channels otherwise.
    product_format, project_model
        ``productinfo/productFormat`` and ``processinfo/ProjectModel``.
    gps_blocks, atti_blocks
        How many ``<GPSParam>`` / ``<ATTIParam>`` blocks to write.
    overrides
        ``a/b`` path (below ``<product>``) to text, applied last; None
        removes the element. Unknown paths raise KeyError.

    Returns
    -------
    Path
        ``path``.
    """
    if calibrated is None:
        calibrated = ("HH",) if polar.upper() == "DH" else POLAR_CHANNELS.get(polar.upper(), (polar,))
    if center is None:
        center = UFS_CENTER if corners == UFS_CORNERS else (
            sum(c[0] for c in corners) / 4, sum(c[1] for c in corners) / 4)
    t0 = dt.datetime.fromisoformat(start)
    # WidthInMeters is width x widthspace in both real sidecars.
    swath_m = (widthspace if isinstance(widthspace, float | int) else 1.0) * (width if isinstance(width, int) else 1)

    def per_channel(values: Mapping[str, float]) -> list[Node]:
        return [node(ch, fmt(values[ch] if ch in calibrated else None)) for ch in _CHANNELS]

    spotlight_step = [node(tag, "0") for tag in ("prfCounter", "transmitBeamNum", "receiveBeamNum", "scanNum")]
    sensor = node("sensor", [
        node("sensorID", "SAR"),
        node("imagingMode", imaging_mode),
        node("lamda", "0.055517"),
        node("RadarCenterFrequency", "5.400012"),
        node("waveParams", [node("wave", [
            node("waveCode", "136"),
            node("centerLookAngle", fmt(look_angle)),
            node("prf", "1948.045166"),
            node("proBandwidth", "2476.973284"),
            node("sampleRate", "133.333333"),
            node("sampleDelay", "196.679993"),
            node("bandWidth", "120.000000"),
            node("pulseWidth", "50.009998"),
            node("frameLength", "17920"),
            node("compression", "BAQ8:4"),
            node("baqBlock", "1024"),
            node("valueMGC", [node(ch, "41") for ch in _CHANNELS]),
            node("groundVelocity", "6755.381683"),
            node("averageAltitude", "55.027714"),
        ])], {"num": "1"}),
        node("spotlightPara", [
            *(node(when, [*spotlight_step, node("squintAngle", "0.000000")]) for when in ("start", "center", "end")),
            node("scanStep", "0.000000"),
            node("scanSwichNum", "0"),  # sic: the real element name
            node("startScanAngle", "0.000000"),
        ]),
        node("lookDirection", "R"),
        node("antennaMode", "D" if polar.upper() == "DH" else "S"),
        node("agcMode", "MGC"),
        node("polarParams", [node("polar", [node("polarMode", polar)])], {"num": str(len(calibrated))}),
    ])
    platform = node("platform", [
        node("CenterTime", _stamp(t0 + (dt.datetime.fromisoformat(end) - t0) / 2)),
        node("Rs", "7135091.957057"), node("satVelocity", "7563.851175"),
        node("RollAngle", "0.007000"), node("PitchAngle", "-0.038500"), node("YawAngle", "3.580543"),
        node("Xs", "4961428.548698"), node("Ys", "-4299742.920746"), node("Zs", "-2793917.466091"),
        node("Vxs", "-3270.972820"), node("Vys", "629.715160"), node("Vzs", "-6790.879194"),
    ])
    gps = node("GPS", [node("GPSParam", [
        node("TimeStamp", _stamp(t0 - dt.timedelta(seconds=330 - i))),
        node("xPosition", fmt(5729494.0 - 1306.0 * i)), node("yPosition", fmt(-4227790.0 - 1040.0 * i)),
        node("zPosition", fmt(-421248.3125 - 7383.0 * i)),
        node("xVelocity", "-1303.640015"), node("yVelocity", "-1044.180054"), node("zVelocity", "-7383.629883"),
    ]) for i in range(gps_blocks)])
    atti = node("ATTI", [node("ATTIParam", [
        node("TimeStamp", _stamp(t0 - dt.timedelta(seconds=325 - 0.5 * i))),
        node("yawAngle", "3.883000"), node("rollAngle", "0.007000"), node("pitchAngle", "0.055000"),
    ]) for i in range(atti_blocks)])
    productinfo = node("productinfo", [
        node("NominalResolution", _nominal(nominal_resolution)),
        node("WidthInMeters", fmt(float(swath_m))),
        node("productLevel", product_level),
        node("productType", product_type),
        node("productFormat", product_format),
        node("productGentime", _stamp(t0 + dt.timedelta(days=2), fraction=False)),
        node("productPolar", polar),
    ])
    corner_names = ("topLeft", "topRight", "bottomLeft", "bottomRight")
    imageinfo = node("imageinfo", [
        node("imagingTime", [node("start", start), node("end", end)]),
        node("nearRange", "798951.577011"), node("refRange", "804989.771871"),
        node("eqvFs", "133.333333"), node("eqvPRF", "3896.090332"),
        node("center", [node("latitude", fmt(center[1])), node("longitude", fmt(center[0]))]),
        node("corner", [node(name, [node("latitude", fmt(lat)), node("longitude", fmt(lon))])
                        for name, (lon, lat) in zip(corner_names, corners, strict=True)]),
        node("width", fmt(width)),
        node("height", fmt(height)),
        node("widthspace", fmt(widthspace)),
        node("heightspace", fmt(heightspace)),
        node("sceneShift", "0.000000"),
        node("imagebit", "16bit"),
        node("QualifyValue", per_channel({"HH": 1422.100464, "HV": 466.574951, "VH": 466.5, "VV": 997.1026})),
        node("echoSaturation", per_channel({"HH": 0.126722, "HV": 0.003977, "VH": 0.003977, "VV": 0.004138})),
    ])
    processinfo = node("processinfo", [
        node("EphemerisData", "RT"), node("AttitudeData", "RT"), node("algorithm", "CS"),
        node("CalibrationConst", per_channel({"HH": 18.04, "HV": 24.53, "VH": 24.53, "VV": 24.46})),
        node("AzFdc0", "-0.674399"), node("AzFdc1", "-0.000046"),
        node("MultilookRange", "1"), node("MultilookAzimuth", "1"),
        node("DoIQComp", "0"), node("DoChaComp", "1"),
        node("DoFPInnerImbalanceComp", "NULL"), node("DoFPCalibration", "NULL"),
        node("DoFdcEst", "0"), node("DoFrEst", "0"),
        node("RangeWeightType", "1"), node("RangeWeightPara", "-26.000000,0.000000"),
        node("AzimuthWeightType", "1"), node("AzimuthWeightPara", "-25.000000,0.000000"),
        node("Sidelobe_Suppress_Flag", "0"), node("Speckle_Suppress_Flag", "0"),
        node("EarthModel", "WGS84"), node("ProjectModel", project_model),
        node("DEMModel", "0"), node("QualifyModel", "0"), node("RadiometricModel", "0"),
        node("incidenceAngleNearRange", fmt(incidence_near)),
        node("incidenceAngleFarRange", fmt(incidence_far)),
        node("InnerCalibration", "NULL"), node("DifferentBetweenDifferentChannel", "NULL"),
        *(node(f"NumberOfPole{ch}MissingLines", "0") for ch in _CHANNELS),
        node("ReceiverSettableGain", "1"), node("ProcessorGainCorrection", "1"),
        node("ElevationPatternCorrection", "0"), node("AmuthPatternCorrection", "0"),  # sic
        node("RangeLookBandWidth", "120.000000"),
        node("AzimuthLookBandWidth", "2476.973284"),
        node("TotalProcessedAzimuthBandWidth", "2476.973284"),
        node("DopplerParametersReferenceTime", "2685.156849"),
        node("DopplerCentroidCoefficients", [
            node(f"d{i}", v) for i, v in enumerate(("-0.923304", "-0.012178", "0.000024", "-0.000000", "0.000000"))
        ]),
        node("DopplerRateValuesCoefficients", [
            node(f"r{i}", v) for i, v in enumerate(("2291.133543", "-0.848757", "0.000288", "-0.000000", "-0.000000"))
        ]),
        node("DEM", "55.027715"),
    ])
    root = build(node("product", [
        node("segmentID", "343946"),
        node("sceneID", "9888430"),
        node("satellite", satellite),
        node("orbitID", str(orbit_id)),
        node("orbitType", "ELLIPSE"),
        node("attiType", "STAR"),
        node("Direction", "DEC"),
        node("productID", str(product_id)),
        node("DocumentIdentifier", "1.0"),
        node("ReceiveTime", "NULL"),
        node("IsZeroDopplerSteering", "1"),
        node("Station", station),
        sensor, platform, gps, atti, productinfo, imageinfo, processinfo,
    ]))
    apply_overrides(root, overrides or {})
    return write_xml(path, root, standalone="yes")


def _nominal(value: Value) -> str:
    """NominalResolution as the real sidecars write it: ``3.0``, not ``3.000000``."""
    if isinstance(value, float | int) and not isinstance(value, bool) and math.isfinite(value):
        return str(float(value))
    return fmt(value)


def _stamp(when: dt.datetime, *, fraction: bool = True) -> str:
    """A GF-3 timestamp: ``2022-02-19 08:33:23.753066``."""
    return when.strftime("%Y-%m-%d %H:%M:%S.%f" if fraction else "%Y-%m-%d %H:%M:%S")
