"""Masking named zones: the pixels of an image that show ground inside them become nodata.

A policy may name zones (polygons in WGS 84 longitude/latitude, EPSG:4326,
given as WKT, longitude first) whose ground must not leave. :func:`pixel_mask`
places the zones in the *source* image's pixel space (pixel-edge
coordinates: column ``0`` is the left edge of the first pixel) through the
image's own georeferencing:

* a geotransform with a CRS: each zone is clipped to the neighbourhood of the
  image, its boundary densified (:data:`SEGMENT_PIXELS`), transformed to the
  image's CRS with pyproj and mapped to pixels through the inverse
  geotransform;
* else RPCs (L1A products): the densified boundary is mapped to pixels with
  the RPCs' inverse at the height offset, at offset -+ height scale and at
  heights in between (:data:`RPC_HEIGHT_STEPS`); the pixel-space zone is the
  union of these places and of what each zone edge sweeps between
  neighbouring heights, so terrain anywhere in the RPCs' height range cannot
  move zone ground out of the mask, even for a zone narrower than the
  parallax; the inverse is checked by projecting the result back to the
  ground;
* else ground control points: the affine grid fitted to them, the zone grown
  by the fit's largest residual.

An image without any of these, zones that cannot be placed, or samples that
cannot hold nodata (complex SAR) raise
:class:`rspolicy.errors.ProductReadError`: a product that must be masked but
cannot be is blocked.

The mask fails closed: a pixel that touches a zone, even along an edge or at a
corner, is masked (the zone is grown by :data:`MARGIN_PX` of a pixel and
rasterised with GDAL's all-touched rule). :meth:`PixelMask.rows` rasterises
only the rows asked for, so memory stays bounded by the strip being
degraded, never by the scene.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import shapely
import shapely.affinity
import shapely.errors
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import RasterioError, TransformWarning
from rasterio.features import geometry_mask
from rasterio.rpc import RPC
from rasterio.transform import RPCTransformer, from_gcps
from shapely.geometry.base import BaseGeometry

from rspolicy.errors import ProductReadError
from rspolicy.geometry import lonlat_transformer, outline_pixels, rpc_ground, rpc_heights, rpc_spacing

__all__ = ["MARGIN_PX", "RPC_HEIGHT_STEPS", "SEGMENT_PIXELS", "PixelMask", "choose_nodata", "pixel_mask",
           "raster_pixel_mask"]

#: How far (in source pixels) the pixel-space zone is grown, so that a pixel
#: which only touches a zone is masked whatever the rounding of the projection
#: and of the rasteriser.
MARGIN_PX = 1e-3

#: Zone boundaries are densified to segments of at most this many pixels of
#: the image (and at most a quarter of its extent, and at most
#: :data:`MAX_SEGMENT_DEG`), so that a straight longitude/latitude edge
#: bends in the image's CRS as it should: the sag of a 256-pixel chord is far
#: below a pixel.
SEGMENT_PIXELS = 256

#: Longest densified segment, degrees (about 1 km): bounds the bend of an edge for coarse images.
MAX_SEGMENT_DEG = 0.01

#: Largest error of the RPCs' inverse, checked by projecting back to the
#: ground, that is absorbed by growing the zone (in pixels); beyond it the
#: zones cannot be placed.
MAX_RPC_RESIDUAL_PX = 1.0

#: Steps the RPCs' height range (offset -+ scale) is cut into: a zone is placed at each step's ends and swept
#: between them, so the ground it covers at any height in the range is masked.
RPC_HEIGHT_STEPS = 4

#: Points per image edge of the outline that bounds the zone clipping.
_OUTLINE_POINTS = 32

#: Zones are clipped to the image's longitude/latitude box grown by this share of its size on every side.
_CLIP_GROWTH = 0.5

_UNNAMED = "the image"


@dataclass(frozen=True)
class PixelMask:
    """Zones placed in an image's pixel space, and the value masked pixels take.

    Attributes
    ----------
    zone
        A shapely (multi)polygon in ``(col, row)`` pixel-edge coordinates of
        the image it was made for (column ``c`` to ``c + 1`` is pixel ``c``),
        already grown by :data:`MARGIN_PX`; empty when no zone reaches the image.
    nodata
        The value masked pixels take (NaN for float data without a nodata value).
    """

    zone: BaseGeometry
    nodata: float

    @property
    def is_empty(self) -> bool:
        """Whether no zone reaches the image (nothing is masked)."""
        return bool(self.zone.is_empty)

    def rows(self, row0: int, nrows: int, width: int) -> np.ndarray:
        """Which pixels of rows ``[row0, row0 + nrows)`` touch a zone.

        Parameters
        ----------
        row0
            The first row.
        nrows
            How many rows.
        width
            The image width (columns ``0 .. width - 1``).

        Returns
        -------
        numpy.ndarray
            Boolean ``(nrows, width)``, True where the pixel meets :attr:`zone`
            (GDAL's all-touched rule): only these rows are ever rasterised.
            The zones :func:`pixel_mask` places are grown by
            :data:`MARGIN_PX`, so a pixel that shares only an edge or a corner
            with a zone is True too.

        Examples
        --------
        A zone exactly on pixel (1, 1), as given and as :func:`pixel_mask` grows it:

        >>> import shapely
        >>> m = PixelMask(shapely.box(1, 1, 2, 2), 0.0)
        >>> m.rows(0, 4, 4).astype(int)
        array([[0, 0, 0, 0],
               [0, 1, 0, 0],
               [0, 0, 0, 0],
               [0, 0, 0, 0]])
        >>> PixelMask(shapely.box(1, 1, 2, 2).buffer(MARGIN_PX, join_style="mitre"), 0.0).rows(1, 2, 4).astype(int)
        array([[1, 1, 1, 0],
               [1, 1, 1, 0]])
        """
        out = np.zeros((max(nrows, 0), max(width, 0)), dtype=bool)
        if nrows <= 0 or width <= 0 or self.zone.is_empty:
            return out
        # One pixel beyond the rows on every side: the all-touched rule still sees every edge of the strip.
        window = shapely.box(-1.0, row0 - 1.0, width + 1.0, row0 + nrows + 1.0)
        if not shapely.intersects(self.zone, window):
            return out
        if shapely.covers(self.zone, shapely.box(0.0, float(row0), float(width), float(row0 + nrows))):
            out[:] = True  # every pixel of the rows lies in a zone
            return out
        parts = [p for p in shapely.get_parts(shapely.intersection(self.zone, window))
                 if isinstance(p, shapely.Polygon | shapely.MultiPolygon) and not p.is_empty]
        if not parts:
            return out
        shifted = [shapely.affinity.translate(p, yoff=-row0) for p in parts]
        burnt: np.ndarray = geometry_mask(shifted, out_shape=(nrows, width), transform=Affine.identity(),
                                          all_touched=True, invert=True)
        return burnt

    def scaled(self, row_factor: Fraction | float, col_factor: Fraction | float) -> PixelMask:
        """The same zones in the pixel space of a grid ``row_factor`` x ``col_factor`` times coarser.

        Output pixel ``(i, j)`` covers source rows ``[i * row_factor, (i + 1) *
        row_factor)`` and columns likewise (the degrading grid keeps the
        origin), so a pixel of the coarser grid touching the result touches a
        zone.

        Examples
        --------
        >>> import shapely
        >>> PixelMask(shapely.box(2, 4, 6, 8), 0.0).scaled(4, 2).zone.bounds
        (1.0, 1.0, 3.0, 2.0)
        """
        fr, fc = float(row_factor), float(col_factor)
        if not (fr > 0 and fc > 0 and math.isfinite(fr) and math.isfinite(fc)):
            raise ValueError(f"factors must be positive and finite, got {row_factor}, {col_factor}")
        zone = shapely.affinity.affine_transform(self.zone, [1.0 / fc, 0.0, 0.0, 1.0 / fr, 0.0, 0.0])
        return PixelMask(zone, self.nodata)


def choose_nodata(dtype: Any, *, path: str | Path = _UNNAMED) -> float:
    """The nodata value for masked pixels of a source that has none.

    Parameters
    ----------
    dtype
        The sample type (numpy dtype or rasterio's name for it).
    path
        The image, for the error.

    Returns
    -------
    float
        0 for unsigned integers, the type's minimum for signed integers, NaN
        for floats.

    Raises
    ------
    ProductReadError
        For complex samples ("masking complex SAR samples is not supported")
        and types that cannot be masked.

    Examples
    --------
    >>> choose_nodata("uint16"), choose_nodata("int16"), choose_nodata("float32")
    (0.0, -32768.0, nan)
    """
    kind = _kind(dtype, path)
    if kind == "u":
        return 0.0
    if kind == "i":
        return float(np.iinfo(np.dtype(dtype)).min)
    return math.nan


def _kind(dtype: Any, path: str | Path) -> str:
    if str(dtype).startswith("complex"):  # numpy's complex64/128, rasterio's complex_int16
        raise ProductReadError(path, "masking complex SAR samples is not supported")
    try:
        kind = np.dtype(dtype).kind
    except TypeError as exc:
        raise ProductReadError(path, f"samples of type {dtype} cannot be masked") from exc
    if kind == "c":
        raise ProductReadError(path, "masking complex SAR samples is not supported")
    if kind not in "iuf":
        raise ProductReadError(path, f"samples of type {dtype} cannot be masked")
    return str(kind)


def _checked_nodata(dtype: Any, nodata: float | None, path: str | Path) -> float:
    kind = _kind(dtype, path)
    if nodata is None:
        return choose_nodata(dtype, path=path)
    value = float(nodata)
    if kind in "iu":
        info = np.iinfo(np.dtype(dtype))
        if not (value.is_integer() and info.min <= value <= info.max):
            raise ProductReadError(path, f"nodata {nodata!r} cannot occur in {dtype} samples: masked pixels "
                                         "would have no value")
    elif math.isfinite(value) and not math.isfinite(float(np.array(value, dtype=np.dtype(dtype)))):
        raise ProductReadError(path, f"nodata {nodata!r} is outside the range of {dtype} samples")
    return value


def _zones(zones_wkt: Sequence[str], path: str | Path) -> BaseGeometry:
    """The zones as one longitude/latitude geometry; unusable zones raise."""
    found: list[BaseGeometry] = []
    for index, text in enumerate(zones_wkt, 1):
        try:
            geom = shapely.from_wkt(text)
        except (shapely.errors.ShapelyError, TypeError, ValueError) as exc:
            raise ProductReadError(path, f"zone {index} is not WKT ({str(exc).splitlines()[0][:120]})") from exc
        if not isinstance(geom, shapely.Polygon | shapely.MultiPolygon) or geom.is_empty:
            raise ProductReadError(path, f"zone {index} is not a polygon ({str(text)[:60]!r})")
        if not geom.is_valid:
            raise ProductReadError(path, f"zone {index} is not a valid polygon ({shapely.is_valid_reason(geom)})")
        coords = shapely.get_coordinates(geom)
        if not (np.all(np.isfinite(coords)) and np.all(np.abs(coords[:, 1]) <= 90.0)):
            raise ProductReadError(path, f"zone {index} is not in longitude/latitude")
        found.append(geom)
    return shapely.union_all(found) if found else shapely.Polygon()


def pixel_mask(zones_wkt: Sequence[str], *, width: int, height: int, transform: Affine | None, crs: CRS | None,
               rpcs: RPC | None, nodata: float | None, dtype: Any,
               gcps: tuple[Sequence[GroundControlPoint], CRS | None] | None = None,
               path: str | Path = _UNNAMED) -> PixelMask:
    """Place zones in the pixel space of a source image.

    Parameters
    ----------
    zones_wkt
        Polygons (or multipolygons) as WKT, in WGS 84 longitude/latitude
        (EPSG:4326, longitude first).
    width, height
        The source image size.
    transform, crs
        The image's geotransform and CRS (used when both are given and the
        transform is not the identity).
    rpcs
        The image's RPCs (its own or parsed beside it), used without a
        geotransform: the zones are placed at every height of the RPCs'
        range (offset -+ scale), see the module documentation.
    nodata
        The source's nodata value; None chooses one (:func:`choose_nodata`).
    dtype
        The source's sample type.
    gcps
        The image's GCPs and their CRS, used when there is neither a
        geotransform nor RPCs: the fitted affine grid, the zone grown by the
        fit's largest residual.
    path
        The image, named in errors.

    Returns
    -------
    PixelMask
        The zones in ``(col, row)`` pixel-edge coordinates (clipped to the
        image and a pixel around it; empty when no zone reaches it), and the
        nodata value. With no zones, an empty mask (no georeferencing needed).

    Raises
    ------
    ProductReadError
        When the image has no georeferencing to place the zones with, the
        zones cannot be transformed (non-finite points, a projection that
        fails, an RPC inverse that does not converge), a zone is not a valid
        longitude/latitude polygon, or the samples cannot be masked
        (complex, or a nodata value the type cannot hold).

    Examples
    --------
    A 100 x 100 UTM image of 10 m pixels and a zone whose corner is the
    image's centre (its edges, meridian and parallel, run nearly along the
    grid here, by the central meridian): the top-left quarter is masked, and
    the pixels along its edges that the zone touches:

    >>> from rasterio.crs import CRS
    >>> from pyproj import Transformer
    >>> to_lonlat = Transformer.from_crs(32650, 4326, always_xy=True)
    >>> (lon0, lat0), (lon1, lat1) = (to_lonlat.transform(x, y) for x, y in ((499e3, 4.41e6), (500.5e3, 4.4005e6)))
    >>> zone = f"POLYGON (({lon0} {lat0}, {lon1} {lat0}, {lon1} {lat1}, {lon0} {lat1}, {lon0} {lat0}))"
    >>> m = pixel_mask([zone], width=100, height=100, transform=Affine(10, 0, 500000, 0, -10, 4.401e6),
    ...                crs=CRS.from_epsg(32650), rpcs=None, nodata=None, dtype="uint16")
    >>> m.nodata, 50 * 50 <= int(m.rows(0, 100, 100).sum()) <= 51 * 51
    (0.0, True)
    """
    value = _checked_nodata(dtype, nodata, path)
    zones = _zones(zones_wkt, path)
    if zones.is_empty:
        return PixelMask(shapely.Polygon(), value)
    try:
        if transform is not None and crs is not None and not transform.is_identity:
            zone = _through_affine(zones, transform, crs, width, height)
        elif rpcs is not None:
            zone = _through_rpcs(zones, rpcs, width, height)
        elif gcps is not None and gcps[1] is not None and len(gcps[0]) >= 3:
            zone = _through_gcps(zones, gcps[0], gcps[1], width, height)
        else:
            raise ProductReadError(path, "the zones cannot be placed in the image: it has no CRS geotransform, RPCs "
                                         "or GCPs (it cannot be masked)")
    except ProductReadError:
        raise
    except (ValueError, ArithmeticError, TypeError, pyproj.exceptions.ProjError, RasterioError, CPLE_BaseError,
            shapely.errors.ShapelyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProductReadError(path, f"the zones cannot be placed in the image ({reason})") from exc
    return PixelMask(zone, value)


def raster_pixel_mask(path: Path, zones_wkt: Sequence[str], *, rpcs: RPC | None = None) -> PixelMask:
    """:func:`pixel_mask` for an image file, with its own size, georeferencing, nodata and sample type.

    Parameters
    ----------
    path
        The source image, opened with :func:`rspolicy.readers.gdalopen.open_input`
        (nothing beside it is consulted).
    zones_wkt
        The zones (see :func:`pixel_mask`).
    rpcs
        RPCs rspolicy parsed beside the image, used when it holds none of its own.

    Raises
    ------
    ProductReadError
        See :func:`pixel_mask`; also when the image cannot be opened.
    """
    from rspolicy.readers.gdalopen import open_input  # noqa: PLC0415 - keeps this module free of the readers

    try:
        with open_input(path) as ds:
            own: RPC | None = ds.rpcs
            gcps, gcp_crs = ds.gcps
            return pixel_mask(zones_wkt, width=int(ds.width), height=int(ds.height), transform=ds.transform,
                              crs=ds.crs, rpcs=own if own is not None else rpcs, nodata=ds.nodata,
                              dtype=ds.dtypes[0], gcps=(gcps, gcp_crs) if gcps else None, path=path)
    except (RasterioError, CPLE_BaseError) as exc:
        raise ProductReadError(path, f"cannot read the georeferencing to mask the image ({exc})") from exc


# Placing zones
# --------------------------------------------------------------------------


def _unwrap(lon: np.ndarray, centre: float) -> np.ndarray:
    """Longitudes moved by whole turns to within 180 degrees of ``centre``."""
    return centre + np.mod(lon - centre + 180.0, 360.0) - 180.0


def _near_image(zones: BaseGeometry, lon: np.ndarray, lat: np.ndarray, centre_lon: float,
                max_segment_deg: float) -> BaseGeometry:
    """The zones clipped to a box around the image's ground, densified, in longitudes around ``centre_lon``.

    ``lon``/``lat`` outline the image. Zone copies a turn east and west are
    clipped too, so an image by the antimeridian meets its zones on its own side.
    """
    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
        raise ValueError("the image outline does not map to finite longitudes and latitudes")
    lon = _unwrap(lon, centre_lon)
    west, east = float(lon.min()), float(lon.max())
    south, north = float(lat.min()), float(lat.max())
    grow_lon = (east - west) * _CLIP_GROWTH + 1e-6
    grow_lat = (north - south) * _CLIP_GROWTH + 1e-6
    box = shapely.box(west - grow_lon, max(south - grow_lat, -90.0), east + grow_lon, min(north + grow_lat, 90.0))
    pieces = [shapely.intersection(shapely.affinity.translate(zones, xoff=turn), box) for turn in (-360.0, 0.0, 360.0)]
    near = shapely.union_all([p for p in pieces if not p.is_empty])
    return near if near.is_empty else shapely.segmentize(near, max_segment_deg)


def _segment_deg(lon: np.ndarray, lat: np.ndarray, width: int, height: int) -> float:
    """Longest zone segment: :data:`SEGMENT_PIXELS` of the image, a quarter of it, :data:`MAX_SEGMENT_DEG`."""
    span = max(float(np.ptp(lon)), float(np.ptp(lat)))
    pixels = max(width, height, 1)
    return min(MAX_SEGMENT_DEG, span / max(4.0, pixels / SEGMENT_PIXELS)) if span > 0 else MAX_SEGMENT_DEG


def _map_coords(geom: BaseGeometry, fn: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
                ) -> BaseGeometry:
    """``geom`` with every coordinate mapped by ``fn(x, y)``; non-finite results raise."""
    def mapped(xy: np.ndarray) -> np.ndarray:
        x, y = fn(xy[:, 0], xy[:, 1])
        out = np.column_stack([np.asarray(x, dtype=float), np.asarray(y, dtype=float)])
        if not np.all(np.isfinite(out)):
            raise ValueError("a zone point does not map into the image's pixel space")
        return out

    return shapely.transform(geom, mapped)


def _finish(pixels: BaseGeometry, width: int, height: int, margin: float) -> BaseGeometry:
    """Repair, grow by ``margin`` pixels and clip to the image and one pixel around it."""
    if pixels.is_empty:
        return shapely.Polygon()
    valid = pixels if pixels.is_valid else shapely.make_valid(pixels)
    grown = shapely.buffer(valid, margin, join_style="mitre", mitre_limit=2.0)
    return shapely.intersection(grown, shapely.box(-1.0, -1.0, width + 1.0, height + 1.0))


def _through_affine(zones: BaseGeometry, transform: Affine, crs: CRS, width: int, height: int,
                    margin: float = MARGIN_PX) -> BaseGeometry:
    wkt = crs.to_wkt()
    to_lonlat = lonlat_transformer(wkt)
    cols, rows = outline_pixels(width, height, _OUTLINE_POINTS)
    cols = np.append(cols, width / 2.0)
    rows = np.append(rows, height / 2.0)
    x = transform.c + transform.a * cols + transform.b * rows
    y = transform.f + transform.d * cols + transform.e * rows
    lon, lat = (np.asarray(v, dtype=float) for v in to_lonlat.transform(x, y, errcheck=False))
    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
        raise ValueError("the image outline does not map to finite longitudes and latitudes")
    centre = float(lon[-1])
    near = _near_image(zones, lon, lat, centre, _segment_deg(_unwrap(lon, centre), lat, width, height))
    if near.is_empty:
        return shapely.Polygon()
    from_lonlat = lonlat_transformer(wkt, inverse=True)
    pyproj_crs = pyproj.CRS.from_user_input(wkt)
    degrees = pyproj_crs.is_geographic and all(
        (a.unit_name or "").lower().startswith("degree") for a in pyproj_crs.axis_info)
    centre_x = float(x[-1])
    inverse = ~transform

    def to_pixels(lons: np.ndarray, lats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = (np.asarray(v, dtype=float) for v in from_lonlat.transform(lons, lats, errcheck=False))
        if degrees:
            xs = _unwrap(xs, centre_x)  # a geographic grid by the antimeridian keeps its own side
        return inverse.a * xs + inverse.b * ys + inverse.c, inverse.d * xs + inverse.e * ys + inverse.f

    return _finish(_map_coords(near, to_pixels), width, height, margin)


def _through_gcps(zones: BaseGeometry, gcps: Sequence[GroundControlPoint], crs: CRS, width: int,
                  height: int) -> BaseGeometry:
    fitted = from_gcps(list(gcps))
    inverse = ~fitted
    residual = 0.0
    for gcp in gcps:
        col = inverse.a * gcp.x + inverse.b * gcp.y + inverse.c
        row = inverse.d * gcp.x + inverse.e * gcp.y + inverse.f
        residual = max(residual, math.hypot(col - gcp.col, row - gcp.row))
    if not math.isfinite(residual):
        raise ValueError("the affine grid fitted to the GCPs is not finite")
    return _through_affine(zones, fitted, crs, width, height, margin=MARGIN_PX + residual)


def _sweep_heights(rpcs: RPC) -> np.ndarray:
    """The heights zones are placed at: the RPCs' height range in :data:`RPC_HEIGHT_STEPS` steps.

    The height offset and offset -+ scale are among them.
    """
    low, high = rpc_heights(rpcs)[1:]
    return np.linspace(low, high, RPC_HEIGHT_STEPS + 1)


def _through_rpcs(zones: BaseGeometry, rpcs: RPC, width: int, height: int) -> BaseGeometry:
    heights = _sweep_heights(rpcs)
    cols, rows = outline_pixels(width, height, _OUTLINE_POINTS)
    outlines = [rpc_ground(rpcs, cols, rows, float(z)) for z in heights]
    lon = np.concatenate([o[0] for o in outlines])
    lat = np.concatenate([o[1] for o in outlines])
    centre_lon, _ = rpc_ground(rpcs, np.array([width / 2.0]), np.array([height / 2.0]), float(rpcs.height_off))
    if not np.all(np.isfinite(centre_lon)):
        raise ValueError("the RPCs do not project the image centre to the ground")
    centre = float(centre_lon[0])
    near = _near_image(zones, lon, lat, centre, _segment_deg(_unwrap(lon, centre), lat, width, height))
    if near.is_empty:
        return shapely.Polygon()
    pixel_m = rpc_spacing(rpcs, width, height).finest_m
    placed: list[BaseGeometry] = []
    coords: list[np.ndarray] = []  # per height: every zone coordinate in pixels, in shapely's coordinate order
    worst = 0.0
    with warnings.catch_warnings(), RPCTransformer(rpcs) as tr:
        warnings.simplefilter("ignore", TransformWarning)
        for z in heights:
            def to_pixels(lons: np.ndarray, lats: np.ndarray, z: float = float(z)) -> tuple[np.ndarray, np.ndarray]:
                nonlocal worst
                zs = [z] * len(lons)
                rows_, cols_ = tr.rowcol(lons.tolist(), lats.tolist(), zs=zs, op=np.positive)
                rows_a, cols_a = np.asarray(rows_, dtype=float), np.asarray(cols_, dtype=float)
                if not (np.all(np.isfinite(rows_a)) and np.all(np.isfinite(cols_a))):
                    raise ValueError("the RPCs' inverse does not place a zone point in the image")
                back_lon, back_lat = tr.xy(rows_a.tolist(), cols_a.tolist(), zs=zs, offset="ul")
                error_m = np.hypot((np.asarray(back_lon) - lons) * 111_320.0 * np.cos(np.radians(lats)),
                                   (np.asarray(back_lat) - lats) * 110_574.0)
                worst = max(worst, float(np.max(error_m)) / pixel_m)
                coords.append(np.column_stack([cols_a, rows_a]))
                return cols_a, rows_a

            placed.append(_map_coords(near, to_pixels))
    if not worst <= MAX_RPC_RESIDUAL_PX:
        raise ValueError(f"the RPCs' inverse is {worst:.3g} pixels off when projected back to the ground")
    pieces = [p if p.is_valid else shapely.make_valid(p) for p in placed]
    pieces.extend(_sweeps(near, coords))
    return _finish(shapely.union_all(pieces), width, height, MARGIN_PX + worst)


def _sweeps(near: BaseGeometry, coords: Sequence[np.ndarray]) -> list[BaseGeometry]:
    """What each zone edge covers on its way from one height to the next.

    A zone narrower than the parallax between two heights would otherwise
    leave uncovered the places it occupies at heights in between: each edge
    at one height and at the next span a quadrilateral (its convex hull, in
    case it twists), and the motion between neighbouring heights is taken as
    straight.
    """
    rings = shapely.get_rings(shapely.get_parts(near))
    sizes = shapely.get_num_coordinates(rings)
    if int(np.sum(sizes)) != len(coords[0]):
        raise ValueError("the zone's rings and coordinates disagree")
    ends = np.cumsum(sizes)
    hulls: list[BaseGeometry] = []
    for lower, upper in itertools.pairwise(coords):
        for start, end in zip(ends - sizes, ends, strict=True):
            a, b = lower[start:end], upper[start:end]
            quads = np.stack([a[:-1], a[1:], b[1:], b[:-1]], axis=1)
            hulls.extend(shapely.convex_hull(shapely.multipoints(quads)).tolist())
    return hulls
