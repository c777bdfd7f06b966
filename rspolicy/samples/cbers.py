"""Synthetic INPE CBERS-4 / CBERS-4A ``<prdf>`` sidecars and CBERS file names.

Modelled element for element on four real INPE sidecars (CBERS-4 PAN5M,
PAN10M, MUX; CBERS-4A WPM band 0): same namespace, element names, nesting,
order and number formats. The per-second ``<attitude>`` / ``<ephemeris>``
blocks are cut down to a few. The elements that differ between the two
satellites follow the real files: CBERS-4 writes ``gain`` attributes on
``availableBands`` and an ``integrationTime`` table, CBERS-4A a
``focalDistance``, ``gain``/``stages`` tables and a ``syncLoss`` table.

Defaults reproduce the real CBERS-4A WPM band-0 sidecar.

The dual-camera (WFI) layout, with ``<leftCamera>`` / ``<rightCamera>``
blocks, is taken from the element names of Terradue's deserialiser for these
files; no real dual-camera sidecar was available to copy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeAlias

from rspolicy.samples.gf3 import Node, Value, apply_overrides, build, fmt, node, write_xml

#: A ``(longitude, latitude)`` pair, degrees.
LonLat: TypeAlias = tuple[float, float]
#: Corners in the sidecar's order: UL, UR, LR, LL.
Corners: TypeAlias = tuple[LonLat, LonLat, LonLat, LonLat]

PRDF_NAMESPACE = "http://www.gisplan.com.br/xmlsat"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"

#: The real WPM sidecar's ``imageData`` corners (UL, UR, LR, LL).
WPM_DATA_CORNERS: Corners = (
    (-51.482464, -20.118117), (-50.592340, -20.298026),
    (-50.780532, -21.139326), (-51.675816, -20.958663),
)
#: The real WPM sidecar's ``boundingBox`` corners (UL, UR, LR, LL).
WPM_BOX_CORNERS: Corners = (
    (-51.679465, -20.117457), (-50.592796, -20.118295),
    (-50.589980, -21.172519), (-51.684164, -21.171632),
)


def cbers_name(number: str, instrument: str, date: dt.date | str, path: int, row: int,
               level: int | str, band: int, camera: str | None = None) -> str:
    """The stem INPE gives a CBERS band file (and its sidecar).

    Parameters
    ----------
    number
        ``4`` or ``4A``.
    instrument
        ``PAN5M``, ``PAN10M``, ``MUX``, ``AWFI``, ``WFI``, ``IRS``, ``WPM``.
    date
        Acquisition date (a date or ``YYYYMMDD``).
    path, row
        The orbit path and row, three digits each.
    level
        Processing level (2, 4 ...).
    band
        The band the file holds.
    camera
        ``LEFT`` or ``RIGHT`` for one camera of a dual-camera instrument.

    Returns
    -------
    str
        E.g. ``CBERS_4A_WPM_20200730_209_139_L4_BAND0``; add ``.xml`` or
        ``.tif``.

    Examples
    --------
    >>> cbers_name("4", "PAN5M", "20190510", 27, 76, 2, 1)
    'CBERS_4_PAN5M_20190510_027_076_L2_BAND1'
    """
    day = date.strftime("%Y%m%d") if isinstance(date, dt.date) else date
    side = f"_{camera.upper()}" if camera else ""
    return f"CBERS_{number}_{instrument}_{day}_{path:03d}_{row:03d}_L{level}{side}_BAND{band}"


def write_cbers_prdf(
    path: Path,
    *,
    number: str = "4A",
    instrument: str = "WPM",
    band: int | None = 0,
    available_bands: Sequence[int] = (0, 1, 2, 3, 4),
    level: int | str = 4,
    columns: Value = 56794,
    lines: Value = 58336,
    pixel_size: Value = 2.0,
    vertical_pixel_size: Value | None = None,
    horizontal_pixel_size: Value | None = None,
    viewing: tuple[str, str, str] = ("2020-07-30T13:51:17.286", "2020-07-30T13:51:24.147", "2020-07-30T13:51:31.009"),
    path_row: tuple[int, int] = (209, 139),
    corners: Corners = WPM_DATA_CORNERS,
    bounding_corners: Corners | None = None,
    corner_grid: tuple[int, int] = (47688, 47696),
    origin_longitude: int = -51,
    south: bool = True,
    cameras: Sequence[str] = (),
    attitude_blocks: int = 3,
    ephemeris_blocks: int = 3,
    overrides: Mapping[str, str | None] | None = None,
) -> Path:
    """Write an INPE ``<prdf>`` sidecar shaped like the real ones.

    Parameters
    ----------
    path
        Where to write (by convention ``cbers_name(...) + ".xml"``).
    number, instrument
        ``satellite/number`` and ``satellite/instrument``.
    band
        The band this file holds, written as ``<image><bandN>``; None
        writes no band element (a sidecar that does not say).
    available_bands
        The scene's bands, ``availableBands``.
    level
        ``image/level``.
    columns, lines
        ``image/columns`` and ``image/lines``.
    pixel_size, vertical_pixel_size, horizontal_pixel_size
        Pixel size in metres; the two axes default to ``pixel_size``. A
        string is written verbatim (to plant a malformed value); None
        leaves the element empty.
    viewing
        ``viewing`` begin, center, end.
    path_row
        ``image/path`` and ``image/row``.
    corners, bounding_corners
        ``imageData`` and ``boundingBox`` corners, ``(lon, lat)``, in the
        order UL, UR, LR, LL. The box defaults to the real one for the
        default corners, else the lon/lat box around ``corners``.
    corner_grid
        Column and line of the far corners. Real sidecars give these on a
        grid other than ``columns`` x ``lines`` (WPM: 47688 vs 56794
        columns), so they must not be used to derive a pixel size.
    origin_longitude, south
        UTM central meridian and hemisphere of the projection block.
    cameras
        ``("leftCamera", "rightCamera")`` to write a dual-camera sidecar:
        everything from ``satellite`` to ``image`` is repeated per camera.
    attitude_blocks, ephemeris_blocks
        How many ``<attitude>`` / ``<ephemeris>`` blocks to write.
    overrides
        ``a/b`` path (below ``<prdf>``) to text, applied last; None removes
        the element. Unknown paths raise KeyError.

    Returns
    -------
    Path
        ``path``.
    """
    is_4a = number.upper() == "4A"
    vertical = pixel_size if vertical_pixel_size is None else vertical_pixel_size
    horizontal = pixel_size if horizontal_pixel_size is None else horizontal_pixel_size
    if bounding_corners is None:
        bounding_corners = WPM_BOX_CORNERS if corners == WPM_DATA_CORNERS else _box(corners)

    def camera_content(camera: str | None) -> list[Node]:
        side = camera.removesuffix("Camera").upper() if camera else None
        stem = cbers_name(number, instrument, viewing[1][:10].replace("-", ""), path_row[0], path_row[1],
                          level, band if band is not None else 0, side)
        return [
            node("satellite", [
                node("name", "CBERS"),
                node("number", number),
                node("instrument", instrument, {"channel": "1"}),
            ]),
            node("software", "G2T"),
            node("version", "0.0.0" if is_4a else "6.7.1"),
            node("revolutionNumber", "0"),
            *([node("mirrorAngle", "17163")] if instrument.upper().startswith("PAN") else []),
            node("imageMode", "VIEW"),
            node("availableBands", [node("band", str(b), {} if is_4a else {"gain": "4"})
                                    for b in available_bands]),
            node("orientationAngle", _dms(8, 30, 15, 645)),
            node("sunIncidenceAngle", _dms(45, 47, 19, 498)),
            node("viewing", _begin_center_end(viewing)),
            node("reception", _begin_center_end(viewing)),
            _image(stem, band, camera_fields={
                "level": str(level), "columns": fmt(columns), "lines": fmt(lines),
                "verticalPixelSize": fmt(vertical), "horizontalPixelSize": fmt(horizontal),
            }, available_bands=available_bands, viewing=viewing, path_row=path_row, corners=corners,
                bounding_corners=bounding_corners, corner_grid=corner_grid, is_4a=is_4a,
                instrument=instrument, origin_longitude=origin_longitude, south=south,
                attitude_blocks=attitude_blocks, ephemeris_blocks=ephemeris_blocks),
        ]

    body = ([node(camera, camera_content(camera)) for camera in cameras] if cameras
            else camera_content(None))
    # Plain attribute names: ElementTree writes them verbatim, which gives the
    # default namespace real files use without registering a global prefix.
    root = build(node("prdf", body, {
        "xmlns": PRDF_NAMESPACE, "generator": "G2T", "generatorVersion": "0.0.0" if is_4a else "6.7.1",
        "xmlns:xsi": _XSI,
        "xsi:schemaLocation": f"{PRDF_NAMESPACE} /sge/install/x86_64/etc/../etc/schemas/prdf.xsd",
    }))
    apply_overrides(root, overrides or {})
    return write_xml(path, root, standalone="no")


def _image(stem: str, band: int | None, *, camera_fields: Mapping[str, str], available_bands: Sequence[int],
           viewing: tuple[str, str, str], path_row: tuple[int, int], corners: Corners, bounding_corners: Corners,
           corner_grid: tuple[int, int], is_4a: bool, instrument: str, origin_longitude: int, south: bool,
           attitude_blocks: int, ephemeris_blocks: int) -> Node:
    """The ``<image>`` element, in the real files' order."""
    t0 = dt.datetime.fromisoformat(viewing[0]).replace(microsecond=0) - dt.timedelta(seconds=2)
    satellite_dir = "CBERS4A" if is_4a else "CBERS4"
    band_nodes = [] if band is None else [
        node(f"band{band}", f"/sge/TIFF/{satellite_dir}/{stem}.tif"),
    ]
    loss = {"pixels": "589239808", "pixels_frame_losses": "0", "pixels_partial_losses": "0"}
    table = [node("band", "0.00" if is_4a else "748", {"name": str(b), **(loss if is_4a else {})})
             for b in available_bands]
    return node("image", [
        node("receivingStation", "Unknown location" if is_4a else "CBA"),
        node("processingStation", "Sao Jose dos Campos" if is_4a else '"Cachoeira Paulista"'),
        node("processingTime", "2020-07-31T04:49:26.041520"),
        *(node(tag, camera_fields[tag]) for tag in
          ("level", "columns", "lines", "verticalPixelSize", "horizontalPixelSize")),
        node("orbitDirection", "Descending"),
        node("timeStamp", _begin_center_end(viewing)),
        node("path", str(path_row[0])),
        node("row", str(path_row[1])),
        node("shiftFromNominal", "0"),
        node("shiftFromNominalInSeconds", "0"),
        node("shiftFromNominalInPercent", "0"),
        node("sunPosition", [node("elevation", "44.3535"), node("sunAzimuth", "32.9856")]),
        *([node("offNadirAngle", "17163"), node("subSatellitePath", str(path_row[0]))]
          if instrument.upper().startswith("PAN") else []),
        *([node("focalDistance", "2.22027e+06")] if is_4a else []),
        node("boresightMatrix", [node("value", "1.000000" if c == r else "0.000000", {"col": str(c), "row": str(r)})
                                 for r in range(3) for c in range(3)]),
        node("ephemerisMode", "PACDB_GPS" if is_4a else "AUTO"),
        *([node("gain", [node("band", "0x7F", {"cal": "2", "name": str(b)}) for b in available_bands]),
           node("stages", [node("band", "0x13", {"cal": "3", "name": str(b)}) for b in available_bands])]
          if is_4a else []),
        node("boundingBox", _corner_block(bounding_corners, corner_grid)),
        node("imageData", _corner_block(corners, corner_grid)),
        node("attitudes", [node("attitude", [
            node("time", (t0 + dt.timedelta(seconds=i)).isoformat()),
            node("roll", "-0.000453806"), node("pitch", "-0.000726111"), node("yaw", "3.56271"),
            node("deltaRoll", "9.25926e-06"), node("deltaPitch", "7.40741e-06"), node("deltaYaw", "-0.00139583"),
        ], {"description": "PACDB_AOCC"}) for i in range(attitude_blocks)]),
        node("ephemerides", [node("ephemeris", [
            node("time", (t0 + dt.timedelta(seconds=i)).isoformat()),
            node("x", fmt(4145582.8 - 2835.0 * i)), node("y", fmt(-5119944.7 + 975.0 * i)),
            node("z", fmt(-2390563.7 - 7012.0 * i)),
            node("vx", "-2833.310000"), node("vy", "971.850000"), node("vz", "-7013.570000"),
        ], {"description": "PACDB_GPS"}) for i in range(ephemeris_blocks)]),
        node("interpolation", "BC"),
        node("datumName", "WGS84"),
        node("semiMajorAxis", "6378137.000000"),
        node("flattening", "0.003353"),
        node("xShiftToWGS84", "0.000000"),
        node("yShiftToWGS84", "0.000000"),
        node("zShiftToWGS84", "0.000000"),
        node("projectionName", "UTM"),
        node("originLongitude", str(origin_longitude)),
        node("originLatitude", "0"),
        node("scaleFactor", "0.999600"),
        node("falseEasting", "500000.000000"),
        node("falseNorthing", "10000000.000000" if south else "0.000000"),
        node("loadedCalibration", f"/sge/install/x86_64/etc/../var/technical_database/CBERS-{'4A' if is_4a else '4'}"
                                  f"/{instrument}/20191220010000000.cal"),
        node("loadedCpf", f"/sge/install/x86_64/etc/../var/technical_database/CBERS-{'4A' if is_4a else '4'}"
                          f"/{instrument}/20190423010000000.cpf"),
        *band_nodes,
        node("syncLoss" if is_4a else "integrationTime", table),
        *([node("absoluteCalibrationCoefficient", [node("band", "1.51123", {"name": str(b)})
                                                   for b in available_bands])]
          if instrument.upper() == "MUX" and not is_4a else []),
        node("timeCodeSource", "START_TIME" if is_4a else "ON_BOARD_TIME"),
    ])


def _corner_block(corners: Corners, grid: tuple[int, int]) -> list[Node]:
    """UL, UR, LR, LL and CT entries, as ``boundingBox`` / ``imageData`` hold them."""
    cols, rows = grid
    positions = {"UL": (8, 0), "UR": (8, cols), "LR": (rows, cols), "LL": (rows, 0)}
    centre = (sum(c[0] for c in corners) / 4, sum(c[1] for c in corners) / 4)
    named = [*zip(("UL", "UR", "LR", "LL"), corners, strict=True), ("CT", centre)]
    positions["CT"] = ((rows + 8) // 2, cols // 2)
    return [node(name, [
        node("line", fmt(float(positions[name][0]))),
        node("column", fmt(float(positions[name][1]))),
        node("latitude", fmt(lat)),
        node("longitude", fmt(lon)),
        # Projected coordinates are not read by rspolicy; a rough UTM-like
        # figure keeps the element present and numeric.
        node("northing", str(round(10_000_000 + lat * 110_574))),
        node("easting", str(round(500_000 + (lon - round(lon / 6) * 6) * 104_000))),
    ]) for name, (lon, lat) in named]


def _box(corners: Corners) -> Corners:
    """The lon/lat box around ``corners``, as UL, UR, LR, LL."""
    lons = [c[0] for c in corners]
    lats = [c[1] for c in corners]
    west, east, south, north = min(lons), max(lons), min(lats), max(lats)
    return ((west, north), (east, north), (east, south), (west, south))


def _dms(degree: int, minute: int, second: int, millisecond: int) -> list[Node]:
    return [node("degree", str(degree)), node("minute", str(minute)), node("second", str(second)),
            node("millisecond", str(millisecond))]


def _begin_center_end(times: tuple[str, str, str]) -> list[Node]:
    return [node(tag, value) for tag, value in zip(("begin", "center", "end"), times, strict=True)]
