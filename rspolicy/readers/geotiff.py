"""Evidence from a GeoTIFF: every image in the file, its georeferencing, and its structure.

Only headers and the file's structure are read, never pixels, so a 1.6 GB
L1A scene screens in milliseconds. The file is opened with the GeoTIFF
driver only and GDAL consults nothing beside it
(:mod:`rspolicy.readers.gdalopen`); what lies beside it (``.rpb``, world
files, ``.aux.xml``) is parsed by :mod:`rspolicy.readers.companions` and
judged here as evidence of its own.

Every image the file holds is found (:mod:`rspolicy.readers.tiffstruct`):
further pages with georeferencing of their own are measured through it;
overviews and masks cover the main image's ground, so they are measured
against its grid by the discovery stage. Georeferencing that cannot be used
(non-finite, singular, absurd, without a unit) is a problem that blocks the
product: it is never dropped in favour of coarser evidence.

Each georeferencing of the main image also gives a ground footprint (a WGS 84
longitude/latitude polygon, :func:`rspolicy.geometry.affine_footprint`,
:func:`rspolicy.geometry.rpc_footprint`); a footprint that cannot be
computed (the antimeridian, a polygon that folds) is an INFO note, never an
error, and leaves the product without that footprint.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError
from rasterio.rpc import RPC
from rasterio.transform import from_gcps

from rspolicy.errors import ProductReadError
from rspolicy.geometry import (
    FOOTPRINT_EDGE_POINTS,
    Spacing,
    affine_footprint,
    affine_spacing,
    gcp_spacing,
    rpc_footprint,
    rpc_heights,
    rpc_spacing,
)
from rspolicy.model import Evidence, Fact, ProductClass, Strength
from rspolicy.readers.gdalopen import READ_ENV, open_input
from rspolicy.readers.tiffstruct import ImageKind, TiffStructure, inspect_tiff

__all__ = ["CLASS_TAG", "READ_ENV", "ExtraImage", "GeoreferencingBeside", "RasterReading", "read_geotiff",
           "read_raster"]

#: Pixel spacings outside these bounds are not measurements: below a
#: millimetre no Earth-observation sensor resolves; above the planet's
#: circumference a pixel covers nothing.
MIN_SPACING_M = 1e-3
MAX_SPACING_M = 4.0e7

_TAGS_WORTH_SHOWING = ("TIFFTAG_IMAGEDESCRIPTION", "TIFFTAG_SOFTWARE", "TIFFTAG_DATETIME", "AREA_OR_POINT",
                       "RSPOLICY_SOURCE_GSD_M", "RSPOLICY_TARGET_GSD_M", "RSPOLICY_POLICY", "RSPOLICY_DECISION_ID")


#: The tag in which rspolicy's outputs carry the class their decision found
#: (a complex SLC averaged to intensity no longer shows it is SAR).
CLASS_TAG = "RSPOLICY_PRODUCT_CLASS"


def _recorded_class(path: Path, value: str) -> str:
    try:
        recorded = ProductClass(value.strip())
    except ValueError:
        raise ProductReadError(path, f"tag {CLASS_TAG} names no product class ({value[:40]!r})") from None
    if recorded is ProductClass.UNKNOWN:
        raise ProductReadError(path, f"tag {CLASS_TAG} says the class is unknown")
    return recorded.value


@dataclass(frozen=True)
class GeoreferencingBeside:
    """Georeferencing rspolicy parsed from files beside the image (GDAL would have applied it)."""

    rpcs: tuple[tuple[str, RPC], ...] = ()
    transforms: tuple[tuple[str, Affine, str | None], ...] = ()
    gcps: tuple[tuple[str, tuple[GroundControlPoint, ...], str | None], ...] = ()


@dataclass(frozen=True)
class ExtraImage:
    """An image that covers the main image's ground: an overview, a mask, a browse image."""

    source: str
    where: str
    kind: str
    width: int
    height: int


@dataclass(frozen=True)
class RasterReading:
    """What reading a GeoTIFF gave.

    Attributes
    ----------
    evidence
        Facts about the main image and every page measured on its own.
    width, height
        The main image's size.
    extra_images
        Images measured against the main image's grid (overviews, masks).
    rebuild
        Why the file cannot leave byte for byte (empty when it can).
    """

    evidence: tuple[Evidence, ...]
    width: int
    height: int
    extra_images: tuple[ExtraImage, ...] = ()
    rebuild: tuple[str, ...] = field(default=())


def read_raster(path: Path, source: str) -> list[Evidence]:
    """Evidence from a GeoTIFF on its own (nothing beside it).

    See :func:`read_geotiff`.
    """
    return list(read_geotiff(path, source).evidence)


def read_geotiff(path: Path, source: str, beside: GeoreferencingBeside | None = None) -> RasterReading:
    """Evidence from a GeoTIFF and the georeferencing found beside it.

    Parameters
    ----------
    path
        The image file.
    source
        The label to put on the evidence.
    beside
        RPCs, geotransforms and GCPs parsed from files beside the image.

    Returns
    -------
    RasterReading
        Size, band count, data type, CRS, nodata, tags; a ground spacing for
        each georeferencing (geotransform, GCPs, RPCs, in the file or beside
        it) and for each further page; a footprint for each georeferencing
        of the main image (or an INFO note saying why there is none); class
        hints from the data type
        (complex means SAR) and band layout; the images to measure against the
        main grid; why the file must be rebuilt rather than copied.

    Raises
    ------
    ProductReadError
        When the file is not a GeoTIFF the gate may open, is damaged, holds an
        image it cannot measure, or carries georeferencing that cannot be used.
    """
    structure = inspect_tiff(path)
    if structure.damage:
        raise ProductReadError(path, f"damaged image: {structure.damage[0]}")
    try:
        with open_input(path) as ds:
            evidence, width, height = _evidence(ds, path, source, structure, beside or GeoreferencingBeside())
        evidence.extend(_pages(path, source, structure))
    except (RasterioError, CPLE_BaseError) as exc:
        message = str(exc).replace(str(path), "").strip(" :'") or type(exc).__name__
        raise ProductReadError(path, f"not a GeoTIFF the gate opens ({message.splitlines()[0]})") from exc
    extra = tuple(ExtraImage(source, image.where, image.kind.value, image.width, image.height)
                  for image in structure.images[1:] if image.kind in (ImageKind.OVERVIEW, ImageKind.MASK))
    rebuild = list(structure.rebuild_reasons())
    others = structure.images[1:]
    if others:
        rebuild.append(f"the file holds {len(others)} image(s) besides the main one "
                       f"({', '.join(f'{i.where} {i.kind.value}' for i in others[:4])}); only the main image leaves")
    return RasterReading(tuple(evidence), width, height, extra, tuple(rebuild))


def _pages(path: Path, source: str, structure: TiffStructure) -> list[Evidence]:
    """Ground spacing of every further full image, each through its own georeferencing."""
    out: list[Evidence] = []
    for image in structure.images[1:]:
        if image.kind not in (ImageKind.PAGE, ImageKind.SUBIMAGE):
            continue
        if image.kind is ImageKind.SUBIMAGE or not image.own_georeferencing or image.ifd_index is None:
            raise ProductReadError(path, f"{image.where} holds a further {image.width} x {image.height} image "
                                         "without georeferencing of its own: it cannot be measured")
        with open_input(path, page=image.ifd_index) as page:
            spacings = _spacings(page, path, f"{image.where} ", GeoreferencingBeside())
        if not spacings:
            raise ProductReadError(path, f"{image.where}: its georeferencing gives no ground spacing")
        for spacing in spacings:
            out.append(Evidence(Fact.GSD, spacing.finest_m, source, f"{image.where} {spacing.method}",
                                f"a further image of the file, {image.width} x {image.height}: "
                                f"x {spacing.x_m:.6g} m, y {spacing.y_m:.6g} m; {spacing.detail}"))
    return out


def _evidence(ds: Any, path: Path, source: str, structure: TiffStructure,
              beside: GeoreferencingBeside) -> tuple[list[Evidence], int, int]:
    out: list[Evidence] = []

    def add(fact: Fact, field: str, value: Any, detail: str = "", strength: Strength = Strength.MEDIUM) -> None:
        out.append(Evidence(fact, value, source, field, detail, strength))

    width, height, count = int(ds.width), int(ds.height), int(ds.count)
    main = structure.images[0] if structure.images else None
    if main is None or (main.width, main.height) != (width, height):
        raise ProductReadError(path, "GDAL's main image is not the file's first image")
    add(Fact.WIDTH, "RasterXSize", width)
    add(Fact.HEIGHT, "RasterYSize", height)
    add(Fact.BAND_COUNT, "RasterCount", count)
    dtypes = sorted(set(ds.dtypes))
    add(Fact.DTYPE, "DataType", ",".join(dtypes))
    if any(np.issubdtype(np.dtype(d), np.complexfloating) for d in dtypes):
        add(Fact.CLASS_HINT, "DataType", ProductClass.SAR.value,
            "complex samples (I/Q): single-look complex SAR", Strength.STRONG)
    nodata = ds.nodata
    if nodata is not None:
        add(Fact.NODATA, "nodata", float(nodata) if np.isfinite(nodata) else str(nodata))
    interps = tuple(ds.colorinterp)
    if count >= 3:
        add(Fact.CLASS_HINT, "RasterCount", ProductClass.MULTISPECTRAL.value,
            f"{count} bands ({', '.join(ci.name for ci in interps)})", Strength.WEAK)
    elif count == 1 and interps and interps[0] is ColorInterp.palette:
        add(Fact.INFO, "ColorInterp", "palette", "a palette image is a map, not a sensor band")
    tags = ds.tags()
    for key in _TAGS_WORTH_SHOWING:
        if key in tags:
            add(Fact.INFO, f"tag {key}", str(tags[key])[:200])
    if CLASS_TAG in tags:
        add(Fact.CLASS_HINT, f"tag {CLASS_TAG}", _recorded_class(path, str(tags[CLASS_TAG])),
            "the class an rspolicy decision recorded in the file it wrote; a hint like a file-name token, never "
            "more lenient than other strong evidence (conflicting hints make the class unknown)", Strength.STRONG)
    if ds.crs is not None:
        add(Fact.CRS, "CRS", ds.crs.to_string())
    if main.own_georeferencing and ds.transform.is_identity and not ds.gcps[0] and ds.crs is None:
        raise ProductReadError(path, "GeoTIFF georeferencing tags are present but give no usable grid "
                                     "(degenerate or inconsistent ModelPixelScale / ModelTiepoint / "
                                     "ModelTransformation)")
    spacings = _spacings(ds, path, "", beside)
    for spacing in spacings:
        add(Fact.GSD, spacing.method, spacing.finest_m,
            f"x {spacing.x_m:.6g} m, y {spacing.y_m:.6g} m; {spacing.detail}")
    if not spacings:
        add(Fact.INFO, "georeferencing", "none", "no CRS geotransform, GCPs or RPCs: resolution not measurable "
            "from the raster itself")
    for fact, field_name, value, detail in _footprints(ds, beside):
        add(fact, field_name, value, detail)
    return out, width, height


def _footprints(ds: Any, beside: GeoreferencingBeside) -> list[tuple[Fact, str, str, str]]:
    """A ground footprint (WKT, WGS 84 longitude/latitude) from each georeferencing of the main image.

    Called after :func:`_spacings` accepted the georeferencing. A footprint
    that cannot be computed is never an error: it becomes an INFO note under
    the footprint's field saying why, and the product then has no footprint
    from that source (an unknown footprint may intersect any zone).
    """
    width, height = int(ds.width), int(ds.height)
    crs: CRS | None = ds.crs
    jobs: list[tuple[str, str, Callable[[], str]]] = []

    def affine(label: str, transform: Affine, frame: CRS, how: str) -> None:
        jobs.append((f"{label} footprint", f"the image outline through the {how} in {frame.to_string()[:80]}",
                     lambda: affine_footprint(transform, frame, width, height)))

    def fitted(label: str, gcps: Sequence[GroundControlPoint], frame: CRS | None) -> None:
        if frame is not None and len(gcps) >= 3:
            affine(label, from_gcps(list(gcps)), frame, f"affine grid fitted to {len(gcps)} GCPs")

    def rpc(label: str, rpcs: RPC) -> None:
        low, high = rpc_heights(rpcs)[1:]
        jobs.append((f"{label} footprint", f"convex hull of the image outline projected through the RPCs at "
                                           f"heights {rpcs.height_off:g}, {low:g} and {high:g} m",
                     lambda: rpc_footprint(rpcs, width, height)))

    if crs is not None and not ds.transform.is_identity:
        affine("geotransform", ds.transform, crs, "geotransform")
    gcps, gcp_crs = ds.gcps
    fitted("GCP", gcps, gcp_crs)
    if ds.rpcs is not None:
        rpc("RPC", ds.rpcs)
    for label, rpcs in beside.rpcs:
        rpc(f"RPC ({label})", rpcs)
    for label, transform, wkt in beside.transforms:
        frame = CRS.from_user_input(wkt) if wkt else crs
        if frame is not None:
            affine(f"geotransform ({label})", transform, frame, f"geotransform of {label}")
    for label, points, wkt in beside.gcps:
        fitted(f"GCP ({label})", points, CRS.from_user_input(wkt) if wkt else crs)
    out: list[tuple[Fact, str, str, str]] = []
    for field_name, how, compute in jobs:
        try:
            wkt_value = compute()
        except Exception as exc:  # noqa: BLE001 - a footprint problem never fails a reading (see above)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            out.append((Fact.INFO, field_name, "none",
                        f"no footprint from {how}: {reason}; an unknown footprint may intersect any zone"))
            continue
        out.append((Fact.FOOTPRINT, field_name, wkt_value,
                    f"{how}, {FOOTPRINT_EDGE_POINTS} points per edge; longitude/latitude, WGS 84 (EPSG:4326)"))
    return out


def _spacings(ds: Any, path: Path, prefix: str, beside: GeoreferencingBeside) -> list[Spacing]:
    """Every ground spacing the dataset's georeferencing and the files beside it give; unusable ones raise."""
    width, height = int(ds.width), int(ds.height)
    crs: CRS | None = ds.crs
    out: list[Spacing] = []

    def measured(what: str, found: Sequence[Spacing]) -> None:
        for spacing in found:
            _check_spacing(path, what, spacing)
            out.append(Spacing(spacing.x_m, spacing.y_m, f"{prefix}{spacing.method}", spacing.detail))

    try:
        transform: Affine = ds.transform
        if not transform.is_identity:
            _check_transform(path, f"{prefix}geotransform", transform)
            if crs is None:
                raise ProductReadError(path, f"{prefix}geotransform {tuple(transform)[:6]} has no CRS: its unit is "
                                             "unknown, so its pixel size cannot be measured")
            measured(f"{prefix}geotransform", affine_spacing(transform, crs, width, height))
        gcps, gcp_crs = ds.gcps
        if gcps:
            measured(f"{prefix}GCPs", _gcp_spacing(path, f"{prefix}GCPs", gcps, gcp_crs, width, height))
        if ds.rpcs is not None:
            measured(f"{prefix}RPC", [rpc_spacing(ds.rpcs, width, height)])
        for label, rpc in beside.rpcs:
            found = rpc_spacing(rpc, width, height)
            measured(f"{label} RPC", [Spacing(found.x_m, found.y_m, f"RPC ({label})", found.detail)])
        for label, affine, wkt in beside.transforms:
            _check_transform(path, f"{label} geotransform", affine)
            unit_crs = CRS.from_user_input(wkt) if wkt else crs
            if unit_crs is None:
                raise ProductReadError(label, f"geotransform {tuple(affine)[:6]} with no CRS in it or in the image: "
                                              "its unit is unknown")
            measured(f"{label} geotransform",
                     [Spacing(s.x_m, s.y_m, f"{s.method} ({label})", s.detail)
                      for s in affine_spacing(affine, unit_crs, width, height)])
        for label, points, wkt in beside.gcps:
            gcp_crs_beside = CRS.from_user_input(wkt) if wkt else crs
            measured(f"{label} GCPs", [Spacing(s.x_m, s.y_m, f"GCP ({label})", s.detail) for s in
                                       _gcp_spacing(path, f"{label} GCPs", points, gcp_crs_beside, width, height)])
    except ProductReadError:
        raise
    except (ValueError, RasterioError, CPLE_BaseError, ArithmeticError, pyproj.exceptions.ProjError) as exc:
        raise ProductReadError(path, f"{prefix}georeferencing cannot be evaluated ({exc})") from exc
    return out


def _gcp_spacing(path: Path, what: str, gcps: Sequence[GroundControlPoint], crs: CRS | None,
                 width: int, height: int) -> list[Spacing]:
    if crs is None:
        raise ProductReadError(path, f"{what}: {len(gcps)} ground control points without a CRS: their unit is "
                                     "unknown")
    if len(gcps) < 3:
        raise ProductReadError(path, f"{what}: {len(gcps)} ground control point(s) cannot define a grid")
    for gcp in gcps:
        if not all(math.isfinite(v) for v in (gcp.row, gcp.col, gcp.x, gcp.y)):
            raise ProductReadError(path, f"{what}: a ground control point is not finite ({gcp.row}, {gcp.col}, "
                                         f"{gcp.x}, {gcp.y})")
    pixels = np.array([[g.col, g.row, 1.0] for g in gcps])
    if np.linalg.matrix_rank(pixels, tol=1e-9 * max(1.0, float(np.abs(pixels).max()))) < 3:
        raise ProductReadError(path, f"{what}: the ground control points are collinear in the image")
    found = gcp_spacing(gcps, crs, width, height)
    for spacing in found:
        if not spacing.finest_m > 0:
            raise ProductReadError(path, f"{what}: the ground control points are collinear on the ground")
    return found


def _check_transform(path: Path, what: str, transform: Affine) -> None:
    coefficients = tuple(transform)[:6]
    if not all(math.isfinite(c) for c in coefficients):
        raise ProductReadError(path, f"{what} is not finite: {coefficients}")
    if transform.a * transform.e - transform.b * transform.d == 0:
        raise ProductReadError(path, f"{what} is singular (zero pixel size or collinear axes): {coefficients}")


def _check_spacing(path: Path, what: str, spacing: Spacing) -> None:
    for axis, value in (("x", spacing.x_m), ("y", spacing.y_m)):
        if not (math.isfinite(value) and MIN_SPACING_M <= value <= MAX_SPACING_M):
            raise ProductReadError(path, f"{what} gives an absurd ground spacing along {axis} ({value!r} m; a "
                                         f"measurement lies between {MIN_SPACING_M} m and {MAX_SPACING_M:.0f} m)")
