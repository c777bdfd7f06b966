"""The footprint map: decisions' footprints and the policy's zones, projected into an SVG view.

The projection is equirectangular about the view's middle latitude (x is
longitude times its cosine, y is latitude), fitted to the footprints with a
margin, with a longitude and latitude graticule at a round step: no basemap is
needed, so the report opens offline. Footprints are the ``footprint_wkt``
evidence of each record (longitude and latitude, parsed with shapely);
one too small to see at the view's scale still gets a marker at its centre.
Zones (masked, or tested by a rule) are drawn clipped to the view.

Everything is returned as numbers and path data this module formats itself;
names are left to the template, which escapes them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rspolicy.htmlreport.entries import Entry

__all__ = ["MAP_WIDTH", "GridLine", "MapShape", "MapView", "ZoneShape", "footprint_geometry", "footprint_map"]

#: Width of the map's viewBox; its height follows the view's shape (within bounds).
MAP_WIDTH = 1000.0
_MIN_HEIGHT, _MAX_HEIGHT = 360.0, 640.0
#: A WKT longer than this is not drawn (a footprint is a few dozen points).
_MAX_WKT = 200_000
#: The smallest view, in degrees of latitude: a single small scene still shows its surroundings.
_MIN_SPAN_DEG = 0.5
_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 45, 60, 90)


@dataclass(frozen=True)
class MapShape:
    """One footprint: the row it belongs to, its outcome, SVG path data and a marker at its centre."""

    index: int
    outcome: str
    d: str
    cx: float
    cy: float


@dataclass(frozen=True)
class ZoneShape:
    """One zone, clipped to the view."""

    name: str
    d: str


@dataclass(frozen=True)
class GridLine:
    """A graticule line and its label."""

    d: str
    label: str
    x: float
    y: float


@dataclass(frozen=True)
class MapView:
    """What the template draws.

    Attributes
    ----------
    width, height
        The viewBox.
    shapes
        The footprints, in row order.
    zones
        The zones drawn.
    grid
        Graticule lines.
    missing
        Rows without a usable footprint.
    bounds
        West, south, east, north of the view (degrees).
    """

    width: float
    height: float
    shapes: tuple[MapShape, ...]
    zones: tuple[ZoneShape, ...]
    grid: tuple[GridLine, ...]
    missing: int
    bounds: tuple[float, float, float, float]


def footprint_geometry(wkts: Sequence[str]) -> Any:
    """The union of a row's footprints as a shapely geometry in longitude and latitude, or None.

    Polygons only, within -180..180 and -90..90; anything else is left out.

    Examples
    --------
    >>> footprint_geometry(["POLYGON((116 39, 117 39, 117 40, 116 40, 116 39))"]).bounds
    (116.0, 39.0, 117.0, 40.0)
    >>> footprint_geometry(["POINT(1 2)", "not wkt"]) is None
    True
    """
    import shapely  # noqa: PLC0415 - 30 ms, only for reports with footprints

    parts = []
    for wkt in wkts:
        if not isinstance(wkt, str) or len(wkt) > _MAX_WKT:
            continue
        try:
            geom = shapely.from_wkt(wkt, on_invalid="ignore")
        except (shapely.errors.ShapelyError, ValueError, TypeError):
            continue
        if geom is None or geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
            continue
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
        west, south, east, north = geom.bounds
        if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
            continue
        parts.append(geom)
    if not parts:
        return None
    try:
        return shapely.union_all(parts)
    except shapely.errors.ShapelyError:
        return parts[0]


class _Projection:
    """Equirectangular about the middle latitude, fitted to ``bounds`` in a viewBox ``MAP_WIDTH`` wide."""

    def __init__(self, bounds: tuple[float, float, float, float]) -> None:
        west, south, east, north = bounds
        self.kx = math.cos(math.radians((south + north) / 2))
        span_x = max((east - west) * self.kx, 1e-9)
        span_y = max(north - south, 1e-9)
        # Widen the view along whichever axis keeps the height within bounds.
        height = MAP_WIDTH * span_y / span_x
        if height < _MIN_HEIGHT:
            grow = (span_x * _MIN_HEIGHT / MAP_WIDTH - span_y) / 2
            south, north = max(-90.0, south - grow), min(90.0, north + grow)
        elif height > _MAX_HEIGHT:
            grow = (span_y * MAP_WIDTH / _MAX_HEIGHT - span_x) / 2 / self.kx
            west, east = max(-180.0, west - grow), min(180.0, east + grow)
        self.bounds = (west, south, east, north)
        self.scale = MAP_WIDTH / max((east - west) * self.kx, 1e-9)
        self.height = max(_MIN_HEIGHT, (north - south) * self.scale)

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        west, _, _, north = self.bounds
        return (lon - west) * self.kx * self.scale, (north - lat) * self.scale

    def path(self, geom: Any) -> str:
        """SVG path data of a polygon or multipolygon (every ring closed)."""
        polygons = list(getattr(geom, "geoms", [geom]))
        out: list[str] = []
        for polygon in polygons:
            if polygon.geom_type != "Polygon":
                continue
            for ring in (polygon.exterior, *polygon.interiors):
                points = [self.xy(x, y) for x, y in ring.coords]
                out.append("M" + " ".join(f"{x:.2f},{y:.2f}" for x, y in points) + "Z")
        return "".join(out)


def _fit(geoms: Iterable[Any]) -> tuple[float, float, float, float]:
    boxes = [g.bounds for g in geoms]
    if not boxes:
        return (-180.0, -80.0, 180.0, 85.0)
    west, south = min(b[0] for b in boxes), min(b[1] for b in boxes)
    east, north = max(b[2] for b in boxes), max(b[3] for b in boxes)
    pad = max((north - south) * 0.1, (east - west) * 0.1, _MIN_SPAN_DEG / 2)
    return max(-180.0, west - pad), max(-90.0, south - pad), min(180.0, east + pad), min(90.0, north + pad)


def _step(span: float) -> float:
    return next((s for s in _STEPS if span / s <= 8), 90.0)


def _degrees(value: float, step: float, positive: str, negative: str) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{abs(value):.{decimals}f}°{positive if value >= 0 else negative}"


def _graticule(proj: _Projection) -> list[GridLine]:
    west, south, east, north = proj.bounds
    lines: list[GridLine] = []
    step = _step(max(east - west, north - south))
    lon = math.ceil(west / step) * step
    while lon <= east + 1e-12:
        (x0, y0), (x1, y1) = proj.xy(lon, north), proj.xy(lon, south)
        lines.append(GridLine(f"M{x0:.2f},{y0:.2f}L{x1:.2f},{y1:.2f}", _degrees(lon, step, "E", "W"), x0 + 3,
                              proj.height - 6))
        lon += step
    lat = math.ceil(south / step) * step
    while lat <= north + 1e-12:
        (x0, y0), (x1, y1) = proj.xy(west, lat), proj.xy(east, lat)
        lines.append(GridLine(f"M{x0:.2f},{y0:.2f}L{x1:.2f},{y1:.2f}", _degrees(lat, step, "N", "S"), 4, y0 - 3))
        lat += step
    return lines


def footprint_map(entries: Sequence[Entry], zones: Mapping[str, Any] | None = None) -> MapView:
    """The map of a report: every row's footprint coloured by outcome, and the zones the rows name.

    Parameters
    ----------
    entries
        The report's rows.
    zones
        Zone geometries (longitude and latitude) by name, for the zones the
        rows name; zones not given are not drawn.

    Returns
    -------
    MapView
        Path data in a viewBox fitted to the footprints (to the zones when no
        row has a footprint, to the world when neither is known).
    """
    import shapely  # noqa: PLC0415

    geoms = [(e, footprint_geometry(e.footprints)) for e in entries]
    drawn = [(e, g) for e, g in geoms if g is not None]
    zone_geoms = dict(zones or {})
    proj = _Projection(_fit([g for _, g in drawn] or list(zone_geoms.values())))
    shapes = []
    tolerance = 0.5 / proj.scale  # half a map pixel, in degrees
    for entry, geom in drawn:
        centre = geom.centroid
        cx, cy = proj.xy(centre.x, centre.y)
        shapes.append(MapShape(entry.index, entry.outcome, proj.path(geom.simplify(tolerance)), cx, cy))
    view = shapely.box(*proj.bounds)
    zone_shapes = []
    for name, geom in sorted(zone_geoms.items()):
        try:
            clipped = geom.intersection(view).simplify(tolerance)
        except shapely.errors.ShapelyError:
            continue
        if not clipped.is_empty:
            polygons = [g for g in getattr(clipped, "geoms", [clipped]) if g.geom_type == "Polygon"]
            if polygons:
                zone_shapes.append(ZoneShape(name, proj.path(shapely.MultiPolygon(polygons))))
    return MapView(MAP_WIDTH, proj.height, tuple(shapes), tuple(zone_shapes), tuple(_graticule(proj)),
                   len(entries) - len(drawn), proj.bounds)
