"""Degrading a raster file to a target resolution: planning and streaming.

Planning turns a decision into exact per-axis factors. Streaming reads the
source at full resolution (never its overviews: GDAL's decimated reads pick
existing overviews, whatever they were built with) in chunks of whole rows of
the file's blocks, so that every block is decoded once and GDAL decodes the
blocks of a chunk on all cores. The chunks are re-cut into strips of whole
periods of the factor (only the period straddling two chunks is copied), each
strip is averaged with :func:`rspolicy.resample.area_average`, and the result
is written in whole rows of output tiles to a new GeoTIFF whose grid rspolicy
owns: pixel size exactly ``factor`` times the source's, origin kept, extent
covering the source.

Memory stays bounded by the chunk size times the chunks in flight, whatever
the scene size.

A plan may carry a :class:`rspolicy.masking.PixelMask`: source pixels that
touch a zone are left out of every average, and output pixels whose area in
the image touches a zone become nodata; the mask is rasterised strip by
strip, never for the whole scene. Factors of 1 by 1 with a mask degrade
nothing: they only mask.

Rebuilding (:func:`rebuild_raster`) streams an allowed image through the
same chunks into a new file that carries only what rspolicy knows.

Sources are opened only through :func:`rspolicy.readers.gdalopen.open_input`
(GeoTIFF driver, nothing beside the file). A damaged source is never written
out with missing parts filled in: a strip or tile table that is empty or runs
past the end of the file, and any GDAL error or warning while reading pixels,
raise :class:`rspolicy.errors.ProductReadError` (the product is blocked) and
leave nothing at the output; a failure of the output side (disk full, quota,
permissions) raises :class:`rspolicy.errors.OutputError` (the product failed).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import re
import threading
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import rasterio
import tifffile
from rasterio.enums import MaskFlags
from rasterio.errors import NotGeoreferencedWarning
from rasterio.rpc import RPC
from rasterio.windows import Window

from rspolicy.errors import OutputError, ProductReadError
from rspolicy.geometry import Spacing, affine_spacing, gcp_spacing, rpc_spacing
from rspolicy.georef import scale_gcps, scale_rpc, scale_transform
from rspolicy.model import Decision, Fact, ProductClass
from rspolicy.policy import Policy
from rspolicy.readers.gdalopen import gdal_threads, input_name, open_input
from rspolicy.resample import SarMode, area_average, as_fraction

if TYPE_CHECKING:
    from rspolicy.masking import PixelMask

#: Largest denominator of a factor: keeps periods short; a factor is rounded
#: *up* to such a fraction, so the output is never finer than the target.
FACTOR_MAX_DENOMINATOR = 64

#: Input bytes per strip. Strips in flight are bounded too, so peak memory
#: stays far below the 600 MB budget even on a 30000 x 30000 scene.
STRIP_BYTES = 24 * 1024 * 1024

#: Largest chunk when one row of the source's blocks exceeds ``STRIP_BYTES``
#: (a 30000-pixel-wide complex64 image in 512-row tiles: 123 MB). Two chunks
#: in flight stay well inside the 600 MB budget; beyond this, chunks stop
#: being block-aligned and GDAL decodes a block once per chunk that cuts it.
MAX_CHUNK_BYTES = 160 * 1024 * 1024

#: GDAL settings while degrading: no side files; a small block cache (reads
#: and writes are whole rows of blocks, so the cache holds little; measured:
#: 32 MB is as fast as 128 MB and keeps 100 MB off the peak; rasterio hands an
#: integer GDAL_CACHEMAX to GDALSetCacheMax64, in bytes, not megabytes);
#: uncompressed sources read straight into the array rather than block by block
#: through the cache (GTIFF_DIRECT_IO: measured 0.06 s instead of 0.44 s for a
#: 200 MB scene of one-row strips; compressed files ignore it).
#: A read error is never turned into zeros (GTIFF_IGNORE_READ_ERRORS, off by default, is pinned off).
GDAL_ENV: dict[str, Any] = {"GDAL_PAM_ENABLED": "NO", "GDAL_CACHEMAX": 32 * 1024 * 1024,
                            "GDAL_TIFF_INTERNAL_MASK": True, "GTIFF_DIRECT_IO": "YES",
                            "GTIFF_IGNORE_READ_ERRORS": "NO"}

#: Compressions rspolicy's writer reproduces; a rebuilt image of any other keeps DEFLATE.
REBUILD_COMPRESSIONS: frozenset[str] = frozenset({"deflate", "lzw", "zstd", "packbits"})

#: Bounds of the GDAL metadata items (default domain) an output keeps from its source:
#: names GDAL and distributors use, short values, a bounded number.
MAX_TAG_VALUE_BYTES = 1024
MAX_TAGS = 64
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
#: Source items that would be untrue of an output: rspolicy's own provenance (the caller
#: gives the output's) and band statistics (an averaged band has others).
_DROPPED_TAG = re.compile(r"RSPOLICY_|STATISTICS_", re.I)

_X_FIELD = re.compile(r"width|horizontal", re.I)
_Y_FIELD = re.compile(r"height|vertical", re.I)

@dataclass(frozen=True)
class DegradePlan:
    """How one product is degraded.

    Attributes
    ----------
    row_factor, col_factor
        Output pixel size over input pixel size, exact rationals >= 1.
    spacing_x_m, spacing_y_m
        The finest input spacing known for each axis, metres.
    target_gsd_m
        The policy's target.
    sar_mode
        How SAR samples are averaged (None for optical and plain power data).
    mask
        Zones to mask, placed in the source's pixel space
        (:func:`rspolicy.masking.pixel_mask`); None masks nothing. A mask-only
        plan has both factors 1 (``target_gsd_m`` may then be the finest
        spacing itself) and ``sar_mode`` None: nothing is averaged, every
        pixel outside the zones keeps its value and the output keeps the
        source's sample type. Complex samples cannot be masked.
    """

    row_factor: Fraction
    col_factor: Fraction
    spacing_x_m: float
    spacing_y_m: float
    target_gsd_m: float
    sar_mode: SarMode | None
    mask: PixelMask | None = None

    @property
    def output_x_m(self) -> float:
        """Output ground spacing along columns (>= target)."""
        return self.spacing_x_m * float(self.col_factor)

    @property
    def output_y_m(self) -> float:
        """Output ground spacing along rows (>= target)."""
        return self.spacing_y_m * float(self.row_factor)


def raster_spacings(path: Path, *, rpcs: RPC | None = None) -> list[Spacing]:
    """Every ground spacing the raster's own georeferencing gives, per axis.

    Parameters
    ----------
    path
        The image, opened with :func:`rspolicy.readers.gdalopen.open_input`
        (no file beside it is consulted).
    rpcs
        RPCs rspolicy parsed from a file beside the image (``.rpb``), used
        when the image holds none of its own.

    Returns
    -------
    list of Spacing
        One per source of georeferencing (geotransform, GCPs, RPCs).
    """
    try:
        with open_input(path) as ds:
            out: list[Spacing] = []
            if ds.crs is not None and not ds.transform.is_identity:
                out.extend(affine_spacing(ds.transform, ds.crs, ds.width, ds.height))
            gcps, gcp_crs = ds.gcps
            if gcps:
                out.extend(gcp_spacing(gcps, gcp_crs, ds.width, ds.height))
            own = _own_or_given_rpcs(ds, rpcs)
            if own is not None:
                out.append(rpc_spacing(own, ds.width, ds.height))
            return out
    except rasterio.errors.RasterioError as exc:
        raise ProductReadError(path, f"cannot read the georeferencing ({_one_line(exc)})") from exc


def _own_or_given_rpcs(ds: Any, rpcs: RPC | None) -> RPC | None:
    # The image's own RPC tag describes its pixels; a companion file only stands in for a missing one.
    own: RPC | None = ds.rpcs
    return own if own is not None else rpcs


def _factor(target: float, spacing: float) -> Fraction:
    ratio = target / spacing
    if ratio <= 1.0:
        return Fraction(1)
    return as_fraction(ratio, max_denominator=FACTOR_MAX_DENOMINATOR)


def plan_degrade(decision: Decision, policy: Policy, *, rpcs: RPC | None = None) -> DegradePlan:
    """Per-axis factors that bring every known spacing of the product to the target.

    Each axis starts from the finest spacing the raster's georeferencing gives
    along it (or a sidecar's per-axis spacing: GF-3 width/heightspace, CBERS
    horizontal/vertical); any scalar resolution evidence (ImageGSD, a nominal
    resolution, a file-name token) finer than that caps it. The factor is the
    target over that spacing, rounded up to a fraction with a small
    denominator, so the degraded product is never finer than the target by
    any evidence.

    Parameters
    ----------
    decision
        A resample decision with its product.
    policy
        The policy that made it (its SAR resampling modes).
    rpcs
        RPCs rspolicy parsed beside the image, for an image without its own.

    Raises
    ------
    ProductReadError
        When the product has no raster or no usable resolution evidence.
    """
    product = decision.product
    mask_only = decision.target_gsd_m is None and bool(decision.mask_zones)
    if product is None or product.raster is None or (decision.target_gsd_m is None and not mask_only):
        raise ProductReadError(decision.path, "nothing to degrade (no raster or no target)")
    x_candidates: list[float] = []
    y_candidates: list[float] = []
    scalars: list[float] = []
    for spacing in raster_spacings(product.raster, rpcs=rpcs):
        x_candidates.append(spacing.x_m)
        y_candidates.append(spacing.y_m)
    for e in product.evidence:
        if e.fact not in (Fact.GSD, Fact.NOMINAL_RESOLUTION) or not isinstance(e.value, int | float):
            continue
        if e.source == product.path and e.field.startswith(("geotransform", "RPC", "GCP")):
            continue  # measured per axis above
        value = float(e.value)
        if e.fact is Fact.GSD and _X_FIELD.search(e.field) and not _Y_FIELD.search(e.field):
            x_candidates.append(value)
        elif e.fact is Fact.GSD and _Y_FIELD.search(e.field) and not _X_FIELD.search(e.field):
            y_candidates.append(value)
        else:
            scalars.append(value)
    cap = min(scalars, default=math.inf)
    sx = min([*x_candidates, cap])
    sy = min([*y_candidates, cap])
    if not (math.isfinite(sx) and math.isfinite(sy) and sx > 0 and sy > 0):
        raise ProductReadError(decision.path, "no per-axis resolution evidence to plan the degrading from")
    if decision.target_gsd_m is None:
        # Masked, not degraded: factors of 1, and samples kept as they are (no SAR conversion).
        return DegradePlan(Fraction(1), Fraction(1), sx, sy, min(sx, sy), None)
    target = decision.target_gsd_m
    return DegradePlan(_factor(target, sy), _factor(target, sx), sx, sy, target, _sar_mode(decision, policy))


def _sar_mode(decision: Decision, policy: Policy) -> SarMode | None:
    if decision.product_class is not ProductClass.SAR or decision.product is None:
        return None
    dtypes = str(decision.product.first(Fact.DTYPE) or "")
    if "complex" in dtypes:
        return "coherent" if policy.resampling.sar_complex == "coherent" else "intensity"
    # Detected data: amplitude is averaged in power; intensity (power) data averages linearly.
    return "amplitude" if policy.resampling.sar_detected == "amplitude" else None


@dataclass(frozen=True)
class RasterOutput:
    """What :func:`degrade_raster` or :func:`rebuild_raster` wrote.

    Attributes
    ----------
    masked_fraction
        Source pixels masked (touching a zone of the plan's mask) over all
        source pixels; None when nothing was to be masked.
    """

    path: Path
    width: int
    height: int
    dtype: str
    rpcs: Any
    masked_fraction: float | None = None


def array_dtype(band_type: str) -> np.dtype[Any]:
    """The numpy type rasterio reads a band of ``band_type`` into (GDAL's CInt16 arrives as complex64).

    Raises
    ------
    TypeError
        For a band type numpy cannot hold.
    """
    return np.dtype(np.complex64) if band_type == "complex_int16" else np.dtype(band_type)


def _output_dtype(src_dtype: str, sar_mode: SarMode | None) -> str:
    probe = area_average(np.zeros((1, 1), dtype=array_dtype(src_dtype)), 1, sar_mode=sar_mode)
    return str(probe.dtype)


def _creation_options(src: Any, width: int, height: int, dtype: str, workers: int,
                      intermediate: bool, overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
    # An explicit thread count: compression (deflate is the slow half of a run) then uses every core.
    opts: dict[str, Any] = {"driver": "GTiff", "BIGTIFF": "IF_SAFER", "num_threads": str(workers)}
    compression = src.compression.value.lower() if src.compression is not None else None
    if intermediate:
        # Re-encoded by the COG driver: the cheapest codec that still keeps the scratch file small.
        compression = "zstd"
        opts["zstd_level"] = 1
    if compression in ("deflate", "lzw", "zstd", "lzma", "packbits"):
        opts["compress"] = compression
        if compression in ("deflate", "lzw", "zstd") and np.issubdtype(np.dtype(dtype), np.integer):
            opts["predictor"] = 2
    if width >= 512 and height >= 512:
        opts.update(tiled=True, blockxsize=512, blockysize=512)
    if overrides and not intermediate:
        # The user's --co wins over every default (as with gdal_translate and rio); the driver cannot be changed.
        for key, value in overrides.items():
            if key.lower() == "compress":
                opts.pop("predictor", None)
            opts[key.lower()] = value
    return opts


def block_row_windows(height: int, width: int, bands: int, itemsize: int, block_rows: int) -> Iterator[tuple[int, int]]:
    """Read windows: whole rows of the file's blocks (tiles or strips), about ``STRIP_BYTES`` each.

    Block-aligned reads decode every block once, and GDAL decodes the blocks
    of one read on all cores; a window ending inside a block row would decode
    that row twice.
    """
    row_bytes = max(1, width * bands * itemsize)
    unit = max(1, block_rows)
    if unit * row_bytes > MAX_CHUNK_BYTES:
        unit = 1  # one block row alone would break the memory budget (e.g. a single-strip file)
    rows = unit * max(1, STRIP_BYTES // (unit * row_bytes))
    for row0 in range(0, height, rows):
        yield row0, min(rows, height - row0)


def whole_periods(chunks: Iterator[np.ndarray], p_row: int) -> Iterator[np.ndarray]:
    """Re-cut block-aligned chunks into strips of whole row periods (the last strip: whatever remains).

    The kernel gives bit-identical results on any strips of whole periods, so
    only the one period straddling two chunks is copied together.
    """
    carry: np.ndarray | None = None
    for chunk in chunks:
        rest = chunk
        if carry is not None:
            need = p_row - carry.shape[1]
            if chunk.shape[1] < need:
                carry = np.concatenate([carry, chunk], axis=1)
                continue
            yield np.concatenate([carry, chunk[:, :need]], axis=1)
            rest = chunk[:, need:]
        whole = rest.shape[1] // p_row * p_row
        if whole:
            yield rest[:, :whole]
        # A copy: a view would keep the whole chunk alive until the next one is read.
        carry = rest[:, whole:].copy() if whole < rest.shape[1] else None
    if carry is not None:
        yield carry


def degrade_raster(src_path: Path, dst_path: Path, plan: DegradePlan, *, tags: Mapping[str, str],
                   threads: int | None = None, intermediate: bool = False,
                   rpcs: RPC | None = None, creation_options: Mapping[str, str] | None = None) -> RasterOutput:
    """Write the degraded raster of ``src_path`` to ``dst_path`` (a GeoTIFF).

    Parameters
    ----------
    src_path
        The source raster (never modified), opened with
        :func:`rspolicy.readers.gdalopen.open_input`.
    dst_path
        Where to write; the caller makes this a temporary path and renames it
        into place when the product has passed its re-screen. Nothing is left
        there when writing fails.
    plan
        The factors and SAR mode.
    tags
        Provenance tags to add to the source's known tags.
    threads
        Worker threads (default: the machine's cores).
    intermediate
        The file is scratch for another writer (the COG driver) that
        re-encodes it: fast ZSTD instead of the source's compression.
    rpcs
        RPCs rspolicy parsed beside the image, used (rescaled) when the image
        holds none of its own.
    creation_options
        GDAL GTiff creation options over the defaults (which keep the
        source's compression, with a predictor for integer samples).

    Returns
    -------
    RasterOutput
        The written size, dtype, rescaled RPCs and, with a mask, the share of
        source pixels masked.

    Raises
    ------
    ProductReadError
        When the source is damaged (a block missing, cut short or corrupt:
        any GDAL error or warning while reading its pixels), or the plan has
        a mask and the samples are complex.
    OutputError
        When the output cannot be written.

    Notes
    -----
    With a mask (``plan.mask``), the output has a nodata value: the
    source's, else the mask's (:func:`rspolicy.masking.choose_nodata`), and
    source pixels equal to it then count as nodata too. Source pixels that
    touch a zone are left out of the averages; output pixels whose area
    touches a zone are nodata (the area inside the image: the part of the
    last output row or column that reaches past the image's edge shows no
    ground, and is averaged from none).
    """
    workers = gdal_threads(threads)
    fr, fc = plan.row_factor, plan.col_factor

    def write(src: Any, meta: Any) -> RasterOutput:
        bands, height, width = src.count, src.height, src.width
        out_h = math.ceil(Fraction(height) / fr)
        out_w = math.ceil(Fraction(width) / fc)
        dtype = _output_dtype(src.dtypes[0], plan.sar_mode)
        nodata = src.nodata if dtype == src.dtypes[0] else None
        if plan.mask is not None:
            if dtype != src.dtypes[0] or array_dtype(src.dtypes[0]).kind == "c":
                raise ProductReadError(src_path, "masking complex SAR samples is not supported")
            nodata = src.nodata if src.nodata is not None else plan.mask.nodata
        profile: dict[str, Any] = {"width": out_w, "height": out_h, "count": bands, "dtype": dtype,
                                   "nodata": nodata,
                                   **_creation_options(src, out_w, out_h, dtype, workers, intermediate,
                                                       creation_options)}
        # Georeferencing from the plain handle (see _with_source).
        if meta.crs is not None and not meta.transform.is_identity:
            profile.update(crs=meta.crs, transform=scale_transform(meta.transform, fr, fc))
        own = _own_or_given_rpcs(meta, rpcs)
        scaled = scale_rpc(own, fr, fc) if own is not None else None
        with _create(dst_path, profile) as dst:
            _copy_metadata(meta, dst, tags)
            if scaled is not None:
                dst.rpcs = scaled
            gcps, gcp_crs = meta.gcps
            if gcps:
                dst.gcps = (scale_gcps(gcps, fr, fc), gcp_crs)
            # Unmasked, the source's nodata marks invalid input whatever the output type (an SLC's nodata).
            masked = _stream(src, dst, plan, workers, src.nodata if plan.mask is None else nodata)
        fraction = masked / (width * height) if plan.mask is not None else None
        return RasterOutput(dst_path, out_w, out_h, dtype, scaled, fraction)

    return _with_source(src_path, dst_path, workers, write, "cannot write the degraded raster")


def rebuild_raster(src: Path, dst: Path, *, tags: Mapping[str, str], threads: int | None = None,
                   rpcs: RPC | None = None) -> RasterOutput:
    """Rewrite an allowed image pixel for pixel with rspolicy's writer, keeping only what rspolicy knows.

    Used when a file holds bytes or tags rspolicy cannot account for: the
    output holds only the main image (bands 1..n of the first IFD, read at
    full resolution, never an overview) with the same dtype, size and
    nodata; its CRS and geotransform, GCPs, RPCs, band descriptions, units,
    colour interpretation, scales and offsets; a plain GDAL internal mask
    (one per dataset), copied pixel for pixel; and only the GDAL metadata
    items of the default domain that pass a bounded allow-list (names of at
    most 64 characters, printable values of at most ``MAX_TAG_VALUE_BYTES``,
    at most ``MAX_TAGS`` per dataset and per band, none of rspolicy's own
    provenance items nor band statistics) plus the provenance ``tags``. No
    XMP, EXIF, private tags, other IFDs or overviews are carried over. The
    compression is the source's when rspolicy's writer produces it
    (:data:`REBUILD_COMPRESSIONS`), else DEFLATE. Pixels are streamed in the
    chunks degrading reads, so memory stays bounded.

    Parameters
    ----------
    src
        The source image (never modified), opened with
        :func:`rspolicy.readers.gdalopen.open_input`.
    dst
        Where to write (a temporary path the caller renames into place).
        Nothing is left there when writing fails.
    tags
        Provenance tags to add.
    threads
        Worker threads for decoding and encoding (default: the machine's cores).
    rpcs
        RPCs rspolicy parsed beside the image, written when the image holds
        none of its own.

    Returns
    -------
    RasterOutput
        The written size, dtype and RPCs.

    Raises
    ------
    ProductReadError
        When the source is damaged (any GDAL error or warning while reading
        its pixels, a block missing or beyond the end of the file) or holds a
        mask rspolicy does not reproduce.
    OutputError
        When the output cannot be written.
    """
    workers = gdal_threads(threads)

    def write(source: Any, meta: Any) -> RasterOutput:
        with_mask = _has_dataset_mask(source, src)
        dtype = source.dtypes[0]
        profile: dict[str, Any] = {"width": source.width, "height": source.height, "count": source.count,
                                   "dtype": dtype, "nodata": source.nodata,
                                   **_rebuild_options(source, dtype, workers)}
        # Georeferencing from the plain handle (see _with_source).
        if meta.crs is not None:
            profile["crs"] = meta.crs
        if not meta.transform.is_identity:
            profile["transform"] = meta.transform
        own = _own_or_given_rpcs(meta, rpcs)
        with _create(dst, profile) as out:
            _copy_metadata(meta, out, tags)
            if own is not None:
                out.rpcs = own
            gcps, gcp_crs = meta.gcps
            if gcps:
                out.gcps = (gcps, gcp_crs)
            _copy_pixels(source, out, with_mask)
        return RasterOutput(dst, source.width, source.height, dtype, own)

    return _with_source(src, dst, workers, write, "cannot rebuild the image")


_R = TypeVar("_R")
_T = TypeVar("_T")


def _with_source(src_path: Path, dst_path: Path, workers: int, write: Callable[[Any, Any], _R], what: str) -> _R:
    """Run ``write(pixels, metadata)`` on two handles of the source; on any failure leave nothing at ``dst_path``.

    Pixels are read from a handle opened with ``OVERVIEW_LEVEL=NONE`` (never
    an overview, whatever GDAL's read heuristics) and ``NUM_THREADS``;
    metadata and georeferencing from a plain handle, because GDAL's
    overview-level wrapper drops band descriptions and, for an image without
    a geotransform, returns an uninitialised one (GDAL 3.10) instead of
    reporting none.
    """
    existed = dst_path.exists()
    try:
        _check_blocks(src_path)
        with rasterio.Env(**GDAL_ENV), \
                open_input(src_path, OVERVIEW_LEVEL="NONE", NUM_THREADS=str(workers)) as src, \
                open_input(src_path) as meta:
            _check_dtype(src, src_path)
            with _WRITE_PROBLEMS.watch() as write_problems:
                result = write(src, meta)
            if write_problems:
                # GDAL reports a full disk or a file size limit while writing as a logged error and carries on.
                raise OutputError(f"{dst_path}: cannot write the output ({write_problems[0]})")
            return result
    except BaseException as exc:
        if not existed:
            with contextlib.suppress(OSError):
                dst_path.unlink()
        if isinstance(exc, OutputError | ProductReadError):
            raise
        if write_side(exc):
            raise OutputError(f"{dst_path}: {what} ({_one_line(exc)})") from exc
        if isinstance(exc, rasterio.errors.RasterioError | OSError | MemoryError | ValueError):
            raise ProductReadError(src_path, f"{what} ({_one_line(exc)})") from exc
        raise


#: errno values that say the output side (disk, quota, permissions), not the input, failed.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                          errno.EIO, errno.EEXIST})
_WRITE_MESSAGES = ("no space left", "disk space", "file too large", "read-only file system", "permission denied",
                   "quota exceeded", "write error", "failed to write", "short write", "cannot write")


def write_side(exc: BaseException) -> bool:
    """Whether a failure while degrading came from the output side (disk full, quota, permissions).

    GDAL reports a full disk as a plain error message rather than an errno,
    so both are looked at.

    >>> write_side(OSError(errno.ENOSPC, "No space left on device"))
    True
    >>> write_side(ValueError("bad tile"))
    False
    """
    for link in (exc, exc.__cause__, exc.__context__):
        if isinstance(link, OSError) and link.errno in WRITE_ERRNOS:
            return True
        if link is not None and any(m in str(link).lower() for m in _WRITE_MESSAGES):
            return True
    return False


def _one_line(exc: BaseException) -> str:
    # rasterio's read errors say "See previous exception"; GDAL's own message is the cause.
    cause = exc.__cause__ if exc.__cause__ is not None and "previous exception" in str(exc) else exc
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


def _check_dtype(src: Any, path: Path) -> None:
    try:
        array_dtype(src.dtypes[0])
    except TypeError as exc:
        raise ProductReadError(path, f"sample type {src.dtypes[0]} cannot be read as it is stored") from exc


def _create(path: Path, profile: Mapping[str, Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path, "w", **profile)


def _check_blocks(path: Path) -> None:
    """Refuse an image any of whose strips or tiles is missing or runs past the end of the file.

    GDAL fills such a block with zeros without a word in two cases: a block
    the tables mark empty (offset or byte count 0, GDAL's "sparse" blocks)
    and, when it reads uncompressed data straight into the array
    (``GTIFF_DIRECT_IO``), a block cut short by the end of the file.
    """
    _TIFFFILE_QUIET.local.active = True  # its complaints become the one error below, never log lines
    try:
        size = path.stat().st_size
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            offsets = np.asarray(page.dataoffsets, dtype=np.uint64)
            counts = np.asarray(page.databytecounts, dtype=np.uint64)
    except Exception as exc:  # tifffile raises many kinds on hostile input; every one means unreadable
        raise ProductReadError(path, f"the strip/tile tables of the image cannot be read ({_one_line(exc)})") from exc
    finally:
        _TIFFFILE_QUIET.local.active = False
    if offsets.size == 0 or offsets.size != counts.size:
        raise ProductReadError(path, "the image has no usable strip/tile table")
    empty = np.flatnonzero((offsets == 0) | (counts == 0))
    if empty.size:
        raise ProductReadError(path, f"{empty.size} of {offsets.size} strips/tiles of the image hold no data "
                          f"(first: block {int(empty[0])}); missing pixels are not filled in")
    ends = offsets + counts
    beyond = np.flatnonzero(ends > size)
    if beyond.size:
        block = int(beyond[0])
        raise ProductReadError(path, f"the file is cut short: strip/tile {block} ends at byte {int(ends[block])} "
                          f"of a {size}-byte file")


class _QuietTifffile(logging.Filter):
    """Silences tifffile's log records in a thread that is inside :func:`_check_blocks`."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "active", False)


_TIFFFILE_QUIET = _QuietTifffile()
logging.getLogger("tifffile").addFilter(_TIFFFILE_QUIET)


class _ReadProblems(logging.Handler):
    """Collects the GDAL warnings (rasterio logs them) that occur while a thread reads pixels.

    GDAL reports some damage only as a warning and returns a filled block
    (libjpeg's "premature end of data segment", for one): any warning during
    a pixel read makes it fail. GDAL re-issues the messages of its decoding
    threads in the thread that asked for the read; a message from a thread
    Python does not know is charged to every read in progress.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.local = threading.local()
        self.guard = threading.Lock()
        self.active: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        caught: list[str] | None = getattr(self.local, "caught", None)
        if caught is not None:
            caught.append(record.getMessage())
        elif record.threadName is None or record.threadName.startswith("Dummy-"):
            with self.guard:
                for pending in self.active.values():
                    pending.append(record.getMessage())

    @contextlib.contextmanager
    def watch(self) -> Iterator[list[str]]:
        caught: list[str] = []
        for logger in _GDAL_LOGGERS:
            if not logger.isEnabledFor(logging.WARNING):
                logger.setLevel(logging.WARNING)  # a silenced rasterio logger would hide damage
        self.local.caught = caught
        with self.guard:
            self.active[threading.get_ident()] = caught
        try:
            yield caught
        finally:
            self.local.caught = None
            with self.guard:
                self.active.pop(threading.get_ident(), None)


class _WriteProblems(logging.Handler):
    """Collects GDAL's messages that say the output side failed (disk full, file too large) during a write."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.guard = threading.Lock()
        self.active: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not any(m in message.lower() for m in _WRITE_MESSAGES):
            return
        with self.guard:
            mine = self.active.get(threading.get_ident())
            # A message from one of GDAL's own threads is charged to every write in progress.
            for caught in [mine] if mine is not None else list(self.active.values()):
                caught.append(message.strip().splitlines()[0] if message.strip() else message)

    @contextlib.contextmanager
    def watch(self) -> Iterator[list[str]]:
        caught: list[str] = []
        with self.guard:
            self.active[threading.get_ident()] = caught
        try:
            yield caught
        finally:
            with self.guard:
                self.active.pop(threading.get_ident(), None)


_GDAL_LOGGERS = tuple(logging.getLogger(name) for name in ("rasterio._err", "rasterio._env"))
_READ_PROBLEMS = _ReadProblems()
_WRITE_PROBLEMS = _WriteProblems()
for _logger in _GDAL_LOGGERS:
    _logger.addHandler(_READ_PROBLEMS)
    _logger.addHandler(_WRITE_PROBLEMS)


def _checked(src: Any, read: Callable[[], _T]) -> _T:
    """``read()`` of ``src``'s pixels, failing on any GDAL error or warning."""
    with _READ_PROBLEMS.watch() as caught:
        try:
            result = read()
        except rasterio.errors.RasterioError as exc:
            raise ProductReadError(input_name(src), f"the pixels cannot be read ({_one_line(exc)})") from exc
    if caught:
        raise ProductReadError(input_name(src), f"the pixels are damaged (GDAL: {caught[0].splitlines()[0]})")
    return result


def _block_rows(pieces: Iterator[np.ndarray], block_rows: int) -> Iterator[np.ndarray]:
    """Re-cut output pieces into whole rows of the output's blocks (the last: whatever remains).

    A write that ends inside a row of tiles leaves them partly filled; GDAL
    then compresses them early and has to decompress them again for the next
    write, which costs about 40% more CPU than block-aligned writes.
    """
    pending: list[np.ndarray] = []
    held = 0
    for piece in pieces:
        pending.append(piece)
        held += piece.shape[1]
        if held < block_rows:
            continue
        joined = pending[0] if len(pending) == 1 else np.concatenate(pending, axis=1)
        whole = held // block_rows * block_rows
        yield joined[:, :whole]
        pending = [joined[:, whole:].copy()] if whole < held else []
        held -= whole
    if held:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending, axis=1)


def read_ahead(src: Any, windows: Sequence[tuple[int, int]]) -> Generator[np.ndarray, None, None]:
    """Full-width row windows ``(row0, rows)`` of ``src``, each read on a reader thread.

    The next window is read (GDAL decoding its blocks on all cores when the
    dataset was opened with ``NUM_THREADS``) while the caller works on the
    current one, so at most two are held at once. Only the reader thread
    touches ``src`` until the generator is exhausted or closed. Any GDAL
    error or warning during a read raises :class:`OutputError`: a damaged
    block is never handed on filled with zeros.
    """
    def read(window: tuple[int, int]) -> np.ndarray:
        row0, rows = window
        block: np.ndarray = _checked(src, lambda: src.read(window=Window(0, row0, src.width, rows)))
        return block

    return _prefetch(windows, read)


def _prefetch(windows: Sequence[tuple[int, int]], read: Callable[[tuple[int, int]], _T]) -> Generator[_T, None, None]:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rspolicy-read") as reader:
        pending = reader.submit(read, windows[0]) if windows else None
        for index in range(len(windows)):
            assert pending is not None
            block = pending.result()
            pending = reader.submit(read, windows[index + 1]) if index + 1 < len(windows) else None
            yield block


def _stream(src: Any, dst: Any, plan: DegradePlan, workers: int, nodata: float | None) -> int:
    """Average block-aligned chunks read ahead, and write whole rows of output tiles.

    ``nodata`` marks invalid source pixels and fills output pixels with no
    valid input (and, with a mask, those touching a zone). Returns the number
    of source pixels masked.
    """
    fr, fc = plan.row_factor, plan.col_factor
    block_rows = int(src.block_shapes[0][0]) if src.block_shapes else 1
    # src.nodata is read by the caller: only the reader thread touches the source from now on
    windows = list(block_row_windows(src.height, src.width, src.count, array_dtype(src.dtypes[0]).itemsize,
                                     block_rows))
    out_block_rows = int(dst.block_shapes[0][0]) if dst.block_shapes else 1
    masked = [0]

    def averaged(strips: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        row0 = out_row0 = 0
        mask = plan.mask
        same_grid = fr == 1 and fc == 1
        out_mask = mask.scaled(fr, fc) if mask is not None and not same_grid else mask
        # Factors 1 x 1 on integers: the kernel would give each pixel, or nodata where masked; copying is faster.
        copy_through = same_grid and plan.sar_mode is None and array_dtype(src.dtypes[0]).kind in "iu"
        for strip in strips:
            inside: np.ndarray | None = None
            if mask is not None:
                inside = mask.rows(row0, strip.shape[1], strip.shape[2])
                count = int(np.count_nonzero(inside))
                masked[0] += count
                if not count:
                    inside = None
            if inside is not None and copy_through:
                out = strip.copy()
            else:
                out = area_average(strip, (fr, fc), nodata=nodata, mask=None if inside is None else ~inside,
                                   sar_mode=plan.sar_mode, threads=workers)
            # An output pixel touching a zone may have no masked source pixel in this strip (the zone touching
            # its far edge only): it is decided on the output grid itself (on the same grid: the source's pixels).
            touching = inside if same_grid or out_mask is None else \
                out_mask.rows(out_row0, out.shape[1], out.shape[2])
            if touching is not None and touching.any():
                assert nodata is not None  # degrade_raster gives a masked output a nodata value
                np.copyto(out, out.dtype.type(nodata), where=touching[None])
            row0 += strip.shape[1]
            out_row0 += out.shape[1]
            yield out

    with contextlib.closing(read_ahead(src, windows)) as chunks:
        out_row0 = 0
        for out in _block_rows(averaged(whole_periods(chunks, fr.numerator)), out_block_rows):
            _write(dst, (out_row0, out))
            out_row0 += out.shape[1]
    return masked[0]


def _copy_pixels(src: Any, dst: Any, with_mask: bool) -> None:
    """Copy every pixel (and the dataset mask) in the chunks degrading reads, writing whole rows of output tiles."""
    block_rows = int(src.block_shapes[0][0]) if src.block_shapes else 1
    itemsize = array_dtype(src.dtypes[0]).itemsize
    windows = list(block_row_windows(src.height, src.width, src.count + int(with_mask), itemsize, block_rows))
    if not with_mask:
        out_block_rows = int(dst.block_shapes[0][0]) if dst.block_shapes else 1
        with contextlib.closing(read_ahead(src, windows)) as chunks:
            row0 = 0
            for piece in _block_rows(chunks, out_block_rows):
                _write(dst, (row0, piece))
                row0 += piece.shape[1]
        return

    def read(window: tuple[int, int]) -> tuple[int, np.ndarray, np.ndarray]:
        row0, rows = window
        where = Window(0, row0, src.width, rows)
        data: np.ndarray = _checked(src, lambda: src.read(window=where))
        mask: np.ndarray = _checked(src, lambda: src.read_masks(1, window=where))
        return row0, data, mask

    with contextlib.closing(_prefetch(windows, read)) as pieces:
        for row0, data, mask in pieces:
            where = Window(0, row0, data.shape[2], data.shape[1])
            dst.write(data, window=where)
            dst.write_mask(mask, window=where)


def _has_dataset_mask(src: Any, path: Path) -> bool:
    """Whether ``src`` has a plain GDAL internal mask (one for all bands) to copy; refuse any other kind."""
    flags = [set(band) for band in src.mask_flag_enums]
    if all(f == {MaskFlags.per_dataset} for f in flags):
        return True
    if all(MaskFlags.all_valid in f or MaskFlags.nodata in f or MaskFlags.alpha in f for f in flags):
        return False  # validity is in the pixels themselves (nodata, alpha band), copied with them
    raise ProductReadError(path, f"the image has per-band masks ({flags}), which rspolicy does not reproduce")


def _write(dst: Any, piece: tuple[int, np.ndarray]) -> None:
    out_row0, out = piece
    dst.write(out, window=Window(0, out_row0, out.shape[2], out.shape[1]))


def _rebuild_options(src: Any, dtype: str, workers: int) -> dict[str, Any]:
    opts: dict[str, Any] = {"driver": "GTiff", "BIGTIFF": "IF_SAFER", "num_threads": str(workers)}
    compression = src.compression.value.lower() if src.compression is not None else None
    opts["compress"] = compression if compression in REBUILD_COMPRESSIONS else "deflate"
    if opts["compress"] != "packbits" and np.issubdtype(array_dtype(dtype), np.integer):
        opts["predictor"] = 2
    if src.width >= 512 and src.height >= 512:
        opts.update(tiled=True, blockxsize=512, blockysize=512)
    if src.interleaving is not None:
        opts["interleave"] = src.interleaving.value.lower()
    return opts


def allowed_tags(items: Mapping[str, str]) -> dict[str, str]:
    """The GDAL metadata items an output keeps from its source: a bounded allow-list.

    Parameters
    ----------
    items
        The source's items of the default domain (dataset or one band).

    Returns
    -------
    dict
        At most :data:`MAX_TAGS` items (in name order) whose name is a plain
        identifier of at most 64 characters and whose value is printable text
        of at most :data:`MAX_TAG_VALUE_BYTES` bytes; rspolicy's own
        provenance items and band statistics are left out (they would be
        untrue of the output).
    """
    kept: dict[str, str] = {}
    for name in sorted(items):
        value = items[name]
        if len(kept) >= MAX_TAGS:
            break
        if (_TAG_NAME.fullmatch(name) and not _DROPPED_TAG.match(name) and value.isprintable()
                and len(value.encode("utf-8")) <= MAX_TAG_VALUE_BYTES):
            kept[name] = value
    return kept


def _copy_metadata(src: Any, dst: Any, tags: Mapping[str, str]) -> None:
    dst.update_tags(**{**allowed_tags(src.tags()), **tags})
    for band in range(1, src.count + 1):
        band_tags = allowed_tags(src.tags(band))
        if band_tags:
            dst.update_tags(band, **band_tags)
        description = src.descriptions[band - 1]
        if description:
            dst.set_band_description(band, description)
        unit = src.units[band - 1]
        if unit:
            dst.set_band_unit(band, unit)
    with contextlib.suppress(ValueError, rasterio.errors.RasterioError):
        # e.g. a palette cannot describe averaged values: GDAL's default stays
        dst.colorinterp = src.colorinterp
    if dst.dtypes[0] == src.dtypes[0]:
        dst.scales, dst.offsets = src.scales, src.offsets
