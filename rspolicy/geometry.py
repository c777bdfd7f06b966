"""Ground sampling distance from a raster's georeferencing.

Each function turns one kind of georeferencing into the ground distance, in
metres, between neighbouring pixels along the two image axes. They measure
on the ellipsoid (pyproj's geodesic) wherever a fixed metres-per-unit would
be wrong, and sample several places of the scene so that the finest spacing
anywhere in it is found: the finest wins.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyproj
from affine import Affine
from pyproj import Geod, Transformer
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import TransformWarning
from rasterio.rpc import RPC
from rasterio.transform import RPCTransformer, from_gcps

#: A projected grid whose ground spacing is finer than its nominal spacing
#: by more than this (Mercator far from the equator, say) also reports the
#: ground value. Transverse Mercator's 0.9996 scale stays below it, so a
#: 0.5 m UTM grid is 0.5 m, as every distributor labels it.
PROJECTION_SCALE_TOLERANCE = 0.01


@dataclass(frozen=True)
class Spacing:
    """Pixel spacing on the ground along columns (x) and rows (y), metres."""

    x_m: float
    y_m: float
    method: str
    detail: str

    @property
    def finest_m(self) -> float:
        """The finer of the two axes."""
        return min(self.x_m, self.y_m)


def _sample_pixels(width: int, height: int) -> list[tuple[float, float]]:
    """Pixel (col, row) positions at the corners, edge middles and centre.

    The last pixel's neighbour lies one step beyond it, so corners are taken
    one pixel in from the far edges.
    """
    cols = sorted({0.0, max(width - 2, 0) / 2.0, float(max(width - 2, 0))})
    rows = sorted({0.0, max(height - 2, 0) / 2.0, float(max(height - 2, 0))})
    return [(c, r) for r in rows for c in cols]


@dataclass(frozen=True)
class _Frame:
    """What measuring in one CRS needs, built once per CRS: pyproj objects are costly to build, cheap to use."""

    crs: pyproj.CRS
    #: None when pyproj cannot build the way to longitude and latitude (measured then: nominal only, or refused).
    to_lonlat: Transformer | None
    geod: Geod
    label: str
    unit_name: str
    unit_factor: float | None


@functools.lru_cache(maxsize=64)
def _frame(wkt: str) -> _Frame:
    crs = pyproj.CRS.from_user_input(wkt)
    try:
        to_lonlat: Transformer | None = Transformer.from_crs(crs, crs.geodetic_crs or pyproj.CRS.from_epsg(4326),
                                                             always_xy=True)
    except pyproj.exceptions.ProjError:
        to_lonlat = None
    geod = crs.get_geod()
    factor = next((float(a.unit_conversion_factor) for a in crs.axis_info if a.unit_conversion_factor), None)
    return _Frame(crs, to_lonlat, geod if geod is not None else Geod(ellps="WGS84"), _crs_label(crs),
                  next((str(a.unit_name) for a in crs.axis_info if a.unit_name), "unit"), factor)


def _geodesic_steps(
    lon0: np.ndarray, lat0: np.ndarray,
    lon_x: np.ndarray, lat_x: np.ndarray,
    lon_y: np.ndarray, lat_y: np.ndarray,
    geod: Geod,
) -> tuple[float, float]:
    """Finest geodesic length of the column and row steps over all samples."""
    # One call for both steps: the geodesic's per-call cost outweighs its per-point cost at this size.
    _, _, dist = geod.inv(np.concatenate([lon0, lon0]), np.concatenate([lat0, lat0]),
                          np.concatenate([lon_x, lon_y]), np.concatenate([lat_x, lat_y]))
    n = len(lon0)
    return float(np.min(dist[:n])), float(np.min(dist[n:]))


def _ground_spacing(transform: Affine, frame: _Frame, width: int, height: int) -> tuple[float, float]:
    """Geodesic pixel-edge lengths of an affine grid, finest over the scene."""
    if frame.to_lonlat is None:
        raise ValueError(f"{frame.label} cannot be transformed to longitude and latitude")
    samples = _sample_pixels(width, height)
    n = len(samples)
    cols0 = np.array([c for c, _ in samples])
    rows0 = np.array([r for _, r in samples])
    # The samples, their right neighbours and their lower neighbours, projected in one call.
    cols = np.concatenate([cols0, cols0 + 1, cols0])
    rows = np.concatenate([rows0, rows0, rows0 + 1])
    x = transform.c + transform.a * cols + transform.b * rows
    y = transform.f + transform.d * cols + transform.e * rows
    lon_all, lat_all = (np.asarray(v, dtype=float) for v in frame.to_lonlat.transform(x, y))
    if not (np.all(np.isfinite(lon_all)) and np.all(np.isfinite(lat_all))):
        raise ValueError("the grid does not map to valid longitudes and latitudes")
    lon0, lon_x, lon_y = lon_all[:n], lon_all[n:2 * n], lon_all[2 * n:]
    lat0, lat_x, lat_y = lat_all[:n], lat_all[n:2 * n], lat_all[2 * n:]
    return _geodesic_steps(lon0, lat0, lon_x, lat_x, lon_y, lat_y, frame.geod)


def affine_spacing(transform: Affine, crs: CRS | None, width: int, height: int) -> list[Spacing]:
    """Ground spacing of an affine geotransform.

    Rotated and sheared transforms are handled by measuring the length of
    the pixel edge vectors rather than reading ``a`` and ``e``.

    Parameters
    ----------
    transform
        The raster's affine transform (pixel to CRS coordinates).
    crs
        The raster's CRS. Without one the transform's units are unknown and
        nothing is returned.
    width, height
        The raster size, so that the whole scene is sampled.

    Returns
    -------
    list of Spacing
        For a projected CRS the nominal spacing in metres (unit-converted),
        plus the geodesic ground spacing when the projection makes it finer
        by more than :data:`PROJECTION_SCALE_TOLERANCE`. For a geographic CRS
        the geodesic ground spacing, finest over the scene.

    Examples
    --------
    >>> from rasterio.crs import CRS
    >>> [s.x_m for s in affine_spacing(Affine(0.5, 0, 500000, 0, -0.5, 4e6), CRS.from_epsg(32650), 100, 100)]
    [0.5]
    >>> feet = affine_spacing(Affine(1, 0, 6e6, 0, -1, 2e6), CRS.from_epsg(2227), 100, 100)
    >>> round(feet[0].x_m, 4)
    0.3048
    """
    if crs is None:
        return []
    frame = _frame(crs.to_wkt())
    col_step = math.hypot(transform.a, transform.d)
    row_step = math.hypot(transform.b, transform.e)
    rotated = abs(transform.b) > 0 or abs(transform.d) > 0
    shape_note = " (rotated/sheared grid: edge-vector lengths)" if rotated else ""
    if frame.crs.is_geographic:
        gx, gy = _ground_spacing(transform, frame, width, height)
        return [Spacing(gx, gy, "geotransform",
                        f"{col_step:.9g} x {row_step:.9g} {frame.unit_name} per pixel in {frame.label}, "
                        f"geodesic on the ellipsoid, finest over the scene{shape_note}")]
    if frame.unit_factor is None:
        raise ValueError(f"{frame.label} has no linear unit")
    factor = frame.unit_factor
    nominal = Spacing(col_step * factor, row_step * factor, "geotransform",
                      f"{col_step:.9g} x {row_step:.9g} {frame.unit_name} per pixel in {frame.label}"
                      f"{'' if factor == 1 else f' (1 unit = {factor:.10g} m)'}{shape_note}")
    out = [nominal]
    try:
        gx, gy = _ground_spacing(transform, frame, width, height)
    except Exception:  # noqa: BLE001 - a projection that cannot be inverted leaves the nominal value
        return out
    if min(gx, gy) < nominal.finest_m * (1.0 - PROJECTION_SCALE_TOLERANCE):
        out.append(Spacing(gx, gy, "geotransform-ground",
                           f"geodesic ground spacing of the {frame.label} grid; the projection's "
                           f"scale makes it finer than the nominal {nominal.finest_m:.6g} m"))
    return out


def rpc_spacing(rpcs: RPC, width: int, height: int) -> Spacing:
    """Ground spacing implied by rational polynomial coefficients.

    Pixels are projected to the ground at the RPC height offset and the
    geodesic distance between neighbouring pixels is measured at the corners,
    edge middles and centre of the image; the finest is kept.

    Examples
    --------
    A linear RPC of 0.3 m pixels (longitude and latitude scales chosen so):

    >>> from rasterio.rpc import RPC
    >>> num_line = [0.0, 0.0, -1.0] + [0.0] * 17
    >>> num_samp = [0.0, 1.0] + [0.0] * 18
    >>> den = [1.0] + [0.0] * 19
    >>> lat_scale = 1000 * 0.3 / 110574.3
    >>> r = RPC(height_off=0, height_scale=500, lat_off=0.0, lat_scale=lat_scale,
    ...         line_den_coeff=den, line_num_coeff=num_line, line_off=1000, line_scale=1000,
    ...         long_off=0.0, long_scale=1000 * 0.3 / 111319.5, samp_den_coeff=den,
    ...         samp_num_coeff=num_samp, samp_off=1000, samp_scale=1000)
    >>> round(rpc_spacing(r, 2000, 2000).finest_m, 3)
    0.3
    """
    samples = _sample_pixels(width, height)
    rows0 = [r for _, r in samples]
    cols0 = [c for c, _ in samples]
    # Points the RPCs cannot project come back non-finite (checked below, and blocking);
    # rasterio also warns about them, which would only print.
    with warnings.catch_warnings(), RPCTransformer(rpcs) as tr:
        warnings.simplefilter("ignore", TransformWarning)

        def ground(rows: Sequence[float], cols: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
            xs, ys = tr.xy(list(rows), list(cols), zs=[rpcs.height_off] * len(rows), offset="ul")
            return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)

        lon0, lat0 = ground(rows0, cols0)
        lon_x, lat_x = ground(rows0, [c + 1 for c in cols0])
        lon_y, lat_y = ground([r + 1 for r in rows0], cols0)
    if not np.all(np.isfinite([lon0, lat0, lon_x, lat_x, lon_y, lat_y])):
        raise ValueError("the RPCs do not project the image to valid ground coordinates")
    gx, gy = _geodesic_steps(lon0, lat0, lon_x, lat_x, lon_y, lat_y, Geod(ellps="WGS84"))
    return Spacing(gx, gy, "RPC",
                   f"ground distance between neighbouring pixels at the RPC height offset "
                   f"{rpcs.height_off:g} m, finest of {len(samples)} places in the image")


def gcp_spacing(gcps: Sequence[GroundControlPoint], crs: CRS | None, width: int, height: int) -> list[Spacing]:
    """Ground spacing of the affine grid fitted to ground control points.

    Returns an empty list with fewer than three GCPs or without a CRS.
    """
    if crs is None or len(gcps) < 3:
        return []
    fitted = from_gcps(list(gcps))
    return [Spacing(s.x_m, s.y_m, "GCP", f"affine fit to {len(gcps)} GCPs; {s.detail}")
            for s in affine_spacing(fitted, crs, width, height)]


def _crs_label(crs: pyproj.CRS) -> str:
    auth = crs.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else (crs.name or "a custom CRS")


# Footprints
# --------------------------------------------------------------------------

#: Points per image edge of a footprint outline: a projection bends a straight pixel edge on the ground.
FOOTPRINT_EDGE_POINTS = 8


def outline_pixels(width: int, height: int, per_edge: int = FOOTPRINT_EDGE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """The outline of an image in pixel-edge coordinates, ``per_edge`` points along each edge.

    Column ``0`` is the left edge of the first pixel and column ``width`` the
    right edge of the last one (likewise for rows). The ring starts at the
    top-left corner and runs along the top, right, bottom and left edges (top
    left, top right, bottom right, bottom left, as sidecars list corners); it
    is not closed.

    Returns
    -------
    tuple of numpy.ndarray
        ``(cols, rows)``, ``4 * per_edge`` points each.

    Examples
    --------
    >>> cols, rows = outline_pixels(4, 2, per_edge=2)
    >>> list(zip(cols.tolist(), rows.tolist()))
    [(0.0, 0.0), (2.0, 0.0), (4.0, 0.0), (4.0, 1.0), (4.0, 2.0), (2.0, 2.0), (0.0, 2.0), (0.0, 1.0)]
    """
    steps = np.arange(per_edge, dtype=float) / per_edge
    w, h = float(width), float(height)
    cols = np.concatenate([steps * w, np.full(per_edge, w), w - steps * w, np.zeros(per_edge)])
    rows = np.concatenate([np.zeros(per_edge), steps * h, np.full(per_edge, h), h - steps * h])
    return cols, rows


@functools.lru_cache(maxsize=64)
def lonlat_transformer(crs_wkt: str, *, inverse: bool = False) -> Transformer:
    """The transformer from a CRS to longitude/latitude on WGS 84 (EPSG:4326, longitude first), built once.

    Footprints and zones are WGS 84 longitude/latitude, whatever datum the
    image's CRS has (a Beijing 1954 grid is some 100 m off WGS 84), so the
    target is EPSG:4326 itself rather than the CRS's own geodetic CRS.

    Parameters
    ----------
    crs_wkt
        The CRS as WKT.
    inverse
        The other way: from longitude/latitude to the CRS.

    Raises
    ------
    pyproj.exceptions.CRSError, pyproj.exceptions.ProjError
        When pyproj cannot build it.
    """
    crs = pyproj.CRS.from_user_input(crs_wkt)
    wgs84 = pyproj.CRS.from_epsg(4326)
    return Transformer.from_crs(wgs84, crs, always_xy=True) if inverse else \
        Transformer.from_crs(crs, wgs84, always_xy=True)


def rpc_heights(rpcs: RPC) -> tuple[float, float, float]:
    """The heights an RPC image is projected at to bound its ground: offset, offset -+ scale (metres).

    The ground an image shows moves with the terrain height; the RPCs' height
    range (offset +- scale) bounds the heights they were fitted for.
    """
    return float(rpcs.height_off), float(rpcs.height_off - rpcs.height_scale), \
        float(rpcs.height_off + rpcs.height_scale)


def rpc_ground(rpcs: RPC, cols: np.ndarray, rows: np.ndarray, height: float) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude of pixel-edge positions ``(cols, rows)`` projected through RPCs at ``height``.

    Points the RPCs cannot project come back non-finite (rasterio's warning
    about them is silenced: callers check).
    """
    with warnings.catch_warnings(), RPCTransformer(rpcs) as tr:
        warnings.simplefilter("ignore", TransformWarning)
        xs, ys = tr.xy(rows.tolist(), cols.tolist(), zs=[height] * len(rows), offset="ul")
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


def _footprint_wkt(lon: np.ndarray, lat: np.ndarray, *, hull: bool) -> str:
    """A longitude/latitude polygon (ring order, or the convex hull of the points) as WKT; ValueError if unusable."""
    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
        raise ValueError("the outline does not map to finite longitudes and latitudes")
    if np.any(np.abs(lat) > 90.0):
        raise ValueError("the outline maps to latitudes beyond the poles")
    if np.any(np.abs(lon) > 180.0):
        raise ValueError("the outline maps to longitudes outside -180..180 (the image crosses the antimeridian)")
    if float(np.max(lon) - np.min(lon)) > 180.0:
        raise ValueError("the outline spans more than 180 degrees of longitude (the image crosses the antimeridian "
                         "or a pole)")
    import shapely  # noqa: PLC0415 - only footprints need it (30 ms to import)

    points = np.column_stack([lon, lat])
    polygon = shapely.MultiPoint(points).convex_hull if hull else shapely.Polygon(points)
    if not isinstance(polygon, shapely.Polygon) or not polygon.is_valid or not polygon.area > 0:
        raise ValueError("the outline does not form a simple polygon of some area")
    # Full precision: a rounded vertex could move the outline inside ground the image shows.
    return str(shapely.to_wkt(polygon, rounding_precision=-1, trim=True))


def affine_footprint(transform: Affine, crs: CRS, width: int, height: int) -> str:
    """The ground outline of an affine grid as a WKT polygon in WGS 84 longitude/latitude.

    The image's outline (pixel edges ``0..width``, ``0..height``, with
    :data:`FOOTPRINT_EDGE_POINTS` points per edge, see
    :func:`outline_pixels`) is mapped through ``transform`` and transformed
    from ``crs`` to EPSG:4326 (longitude first).

    Parameters
    ----------
    transform
        Pixel to CRS coordinates (a geotransform, or the affine fitted to GCPs).
    crs
        The CRS of ``transform``.
    width, height
        The image size.

    Returns
    -------
    str
        ``POLYGON ((lon lat, ...))``, corners in the order top left, top
        right, bottom right, bottom left.

    Raises
    ------
    ValueError
        When the outline does not map to a usable polygon: non-finite points,
        longitudes outside -180..180 or spanning more than 180 degrees (the
        antimeridian), a ring that crosses itself; or ``crs`` cannot be
        transformed to longitude/latitude.

    Examples
    --------
    >>> from rasterio.crs import CRS
    >>> affine_footprint(Affine(0.25, 0, 116, 0, -0.25, 40), CRS.from_epsg(4326), 4, 4)[:44]
    'POLYGON ((116 40, 116.125 40, 116.25 40, 116'
    """
    try:
        to_lonlat = lonlat_transformer(crs.to_wkt())
    except pyproj.exceptions.ProjError as exc:  # CRSError is one
        raise ValueError(f"the CRS cannot be transformed to longitude/latitude ({exc})") from exc
    cols, rows = outline_pixels(width, height)
    x = transform.c + transform.a * cols + transform.b * rows
    y = transform.f + transform.d * cols + transform.e * rows
    lon, lat = (np.asarray(v, dtype=float) for v in to_lonlat.transform(x, y, errcheck=False))
    return _footprint_wkt(lon, lat, hull=False)


def rpc_footprint(rpcs: RPC, width: int, height: int) -> str:
    """The ground an RPC image may show, as a WKT polygon in longitude/latitude.

    The outline (see :func:`outline_pixels`) is projected through the RPCs at
    the height offset and at offset -+ height scale (:func:`rpc_heights`); the
    footprint is the convex hull of the three outlines, so that a zone test
    does not miss ground the image shows from a height the offset does not.

    Raises
    ------
    ValueError
        When the RPCs do not project the outline to a usable polygon (see
        :func:`affine_footprint`).

    Examples
    --------
    A linear RPC of 0.3 m pixels around (0, 0) (see :func:`rpc_spacing`): 2000 pixels are
    600 m, some 0.0027 degrees either side of the centre:

    >>> from rasterio.rpc import RPC
    >>> den = [1.0] + [0.0] * 19
    >>> r = RPC(height_off=0, height_scale=500, lat_off=0.0, lat_scale=1000 * 0.3 / 110574.3,
    ...         line_den_coeff=den, line_num_coeff=[0.0, 0.0, -1.0] + [0.0] * 17, line_off=1000, line_scale=1000,
    ...         long_off=0.0, long_scale=1000 * 0.3 / 111319.5, samp_den_coeff=den,
    ...         samp_num_coeff=[0.0, 1.0] + [0.0] * 18, samp_off=1000, samp_scale=1000)
    >>> import shapely
    >>> [round(v, 5) for v in shapely.from_wkt(rpc_footprint(r, 2000, 2000)).bounds]
    [-0.0027, -0.00271, 0.00269, 0.00271]
    """
    cols, rows = outline_pixels(width, height)
    lons: list[np.ndarray] = []
    lats: list[np.ndarray] = []
    for z in rpc_heights(rpcs):
        lon, lat = rpc_ground(rpcs, cols, rows, z)
        lons.append(lon)
        lats.append(lat)
    return _footprint_wkt(np.concatenate(lons), np.concatenate(lats), hull=True)
