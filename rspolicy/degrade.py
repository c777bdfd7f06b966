"""Degrading a raster file to a target resolution: planning and streaming.

Planning turns a decision into exact per-axis factors. Streaming reads the
source at full resolution (never its overviews: GDAL's decimated reads pick
existing overviews, whatever they were built with) in strips aligned to the
factor's period, averages each strip with :func:`rspolicy.resample.area_average`
on worker threads, and writes the strips in order to a new GeoTIFF whose grid
rspolicy owns: pixel size exactly ``factor`` times the source's, origin kept,
extent covering the source.

Memory stays bounded by the strip size times the strips in flight, whatever
the scene size.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from rspolicy.errors import OutputError
from rspolicy.geometry import Spacing, affine_spacing, gcp_spacing, rpc_spacing
from rspolicy.georef import scale_gcps, scale_rpc, scale_transform
from rspolicy.model import Decision, Fact, ProductClass
from rspolicy.policy import Policy
from rspolicy.resample import SarMode, area_average, as_fraction

#: Largest denominator of a factor: keeps periods short; a factor is rounded
#: *up* to such a fraction, so the output is never finer than the target.
FACTOR_MAX_DENOMINATOR = 64

#: Input bytes per strip. Strips in flight are bounded too, so peak memory
#: stays far below the 600 MB budget even on a 30000 x 30000 scene.
STRIP_BYTES = 24 * 1024 * 1024

#: GDAL settings while degrading: no side files, a bounded block cache.
WRITE_ENV: dict[str, Any] = {"GDAL_PAM_ENABLED": "NO", "GDAL_CACHEMAX": 128, "GDAL_TIFF_INTERNAL_MASK": True}

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
    """

    row_factor: Fraction
    col_factor: Fraction
    spacing_x_m: float
    spacing_y_m: float
    target_gsd_m: float
    sar_mode: SarMode | None

    @property
    def output_x_m(self) -> float:
        """Output ground spacing along columns (>= target)."""
        return self.spacing_x_m * float(self.col_factor)

    @property
    def output_y_m(self) -> float:
        """Output ground spacing along rows (>= target)."""
        return self.spacing_y_m * float(self.row_factor)


def raster_spacings(path: Path) -> list[Spacing]:
    """Every ground spacing the raster's own georeferencing gives, per axis."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(path) as ds:
            out: list[Spacing] = []
            if ds.crs is not None and not ds.transform.is_identity:
                out.extend(affine_spacing(ds.transform, ds.crs, ds.width, ds.height))
            gcps, gcp_crs = ds.gcps
            if gcps:
                out.extend(gcp_spacing(gcps, gcp_crs, ds.width, ds.height))
            if ds.rpcs is not None:
                out.append(rpc_spacing(ds.rpcs, ds.width, ds.height))
            return out


def _factor(target: float, spacing: float) -> Fraction:
    ratio = target / spacing
    if ratio <= 1.0:
        return Fraction(1)
    return as_fraction(ratio, max_denominator=FACTOR_MAX_DENOMINATOR)


def plan_degrade(decision: Decision, policy: Policy) -> DegradePlan:
    """Per-axis factors that bring every known spacing of the product to the target.

    Each axis starts from the finest spacing the raster's georeferencing gives
    along it (or a sidecar's per-axis spacing: GF-3 width/heightspace, CBERS
    horizontal/vertical); any scalar resolution evidence (ImageGSD, a nominal
    resolution, a file-name token) finer than that caps it. The factor is the
    target over that spacing, rounded up to a fraction with a small
    denominator, so the degraded product is never finer than the target by
    any evidence.

    Raises
    ------
    OutputError
        When the product has no raster or no usable resolution evidence.
    """
    product = decision.product
    if product is None or product.raster is None or decision.target_gsd_m is None:
        raise OutputError(f"{decision.path}: nothing to degrade (no raster or no target)")
    x_candidates: list[float] = []
    y_candidates: list[float] = []
    scalars: list[float] = []
    for spacing in raster_spacings(product.raster):
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
        raise OutputError(f"{decision.path}: no per-axis resolution evidence to plan the degrading from")
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
    """What :func:`degrade_raster` wrote."""

    path: Path
    width: int
    height: int
    dtype: str
    rpcs: Any


def _output_dtype(src_dtype: str, sar_mode: SarMode | None) -> str:
    probe = area_average(np.zeros((1, 1), dtype=src_dtype), 1, sar_mode=sar_mode)
    return str(probe.dtype)


def _creation_options(src: Any, width: int, height: int, dtype: str, workers: int) -> dict[str, Any]:
    # An explicit thread count: compression (deflate is the slow half of a run) then uses every core.
    opts: dict[str, Any] = {"driver": "GTiff", "BIGTIFF": "IF_SAFER", "num_threads": str(workers)}
    compression = src.compression.value.lower() if src.compression is not None else None
    if compression in ("deflate", "lzw", "zstd", "lzma", "packbits"):
        opts["compress"] = compression
        if compression in ("deflate", "lzw", "zstd") and np.issubdtype(np.dtype(dtype), np.integer):
            opts["predictor"] = 2
    if width >= 512 and height >= 512:
        opts.update(tiled=True, blockxsize=512, blockysize=512)
    return opts


def _strips(height: int, width: int, bands: int, itemsize: int, p_row: int,
            block_rows: int) -> Iterator[tuple[int, int]]:
    """Row strips: whole periods of the factor, and whole rows of tiles when that fits the budget.

    Aligned to the tiles, no tile is decoded twice; the GDAL block cache keeps
    the boundary tiles otherwise.
    """
    row_bytes = max(1, width * bands * itemsize)
    unit = math.lcm(p_row, block_rows) if block_rows > 1 else p_row
    if unit * row_bytes > STRIP_BYTES:
        unit = p_row
    rows = unit * max(1, STRIP_BYTES // (unit * row_bytes))
    for row0 in range(0, height, rows):
        yield row0, min(rows, height - row0)


def degrade_raster(src_path: Path, dst_path: Path, plan: DegradePlan, *, tags: Mapping[str, str],
                   threads: int | None = None) -> RasterOutput:
    """Write the degraded raster of ``src_path`` to ``dst_path`` (a GeoTIFF).

    Parameters
    ----------
    src_path
        The source raster (never modified).
    dst_path
        Where to write; the caller makes this a temporary path and renames it
        into place when the product has passed its re-screen.
    plan
        The factors and SAR mode.
    tags
        Provenance tags to add to the dataset's own.
    threads
        Worker threads (default: the machine's cores).

    Returns
    -------
    RasterOutput
        The written size, dtype and rescaled RPCs.
    """
    workers = max(1, threads or os.cpu_count() or 1)
    fr, fc = plan.row_factor, plan.col_factor
    env = dict(WRITE_ENV)
    try:
        with rasterio.Env(**env):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                # OVERVIEW_LEVEL=NONE: always the full-resolution pixels, never an overview.
                src = rasterio.open(src_path, OVERVIEW_LEVEL="NONE")
            with src:
                bands, height, width = src.count, src.height, src.width
                out_h = math.ceil(Fraction(height) / fr)
                out_w = math.ceil(Fraction(width) / fc)
                dtype = _output_dtype(src.dtypes[0], plan.sar_mode)
                profile: dict[str, Any] = {"width": out_w, "height": out_h, "count": bands, "dtype": dtype,
                                           "nodata": src.nodata if dtype == src.dtypes[0] else None,
                                           **_creation_options(src, out_w, out_h, dtype, workers)}
                if src.crs is not None and not src.transform.is_identity:
                    profile.update(crs=src.crs, transform=scale_transform(src.transform, fr, fc))
                rpcs = scale_rpc(src.rpcs, fr, fc) if src.rpcs is not None else None
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    dst = rasterio.open(dst_path, "w", **profile)
                with dst:
                    _copy_metadata(src, dst, tags)
                    if rpcs is not None:
                        dst.rpcs = rpcs
                    gcps, gcp_crs = src.gcps
                    if gcps:
                        dst.gcps = (scale_gcps(gcps, fr, fc), gcp_crs)
                    _stream(src, dst, plan, workers)
    except (rasterio.errors.RasterioError, OSError, MemoryError) as exc:
        raise OutputError(f"{src_path}: cannot write the degraded raster ({exc})") from exc
    return RasterOutput(dst_path, out_w, out_h, dtype, rpcs)


def _stream(src: Any, dst: Any, plan: DegradePlan, workers: int) -> None:
    """Read strips on a reader thread (GDAL decodes tiles on all cores) while averaging the previous one.

    At most two strips are held at once: the one being averaged and the one
    being read.
    """
    fr, fc = plan.row_factor, plan.col_factor
    p_row, q_row = fr.numerator, fr.denominator
    block_rows = int(src.block_shapes[0][0]) if src.block_shapes else 1
    nodata = src.nodata  # read here: only the reader thread touches the source from now on
    strips = list(_strips(src.height, src.width, src.count, np.dtype(src.dtypes[0]).itemsize, p_row, block_rows))

    def read(strip: tuple[int, int]) -> np.ndarray:
        row0, rows = strip
        block: np.ndarray = src.read(window=Window(0, row0, src.width, rows))
        return block

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rspolicy-read") as reader:
        pending: Future[np.ndarray] | None = reader.submit(read, strips[0]) if strips else None
        for index, (row0, _rows) in enumerate(strips):
            assert pending is not None
            block = pending.result()
            pending = reader.submit(read, strips[index + 1]) if index + 1 < len(strips) else None
            out = area_average(block, (fr, fc), nodata=nodata, sar_mode=plan.sar_mode, threads=workers)
            del block
            _write(dst, (row0 // p_row * q_row, out))


def _write(dst: Any, piece: tuple[int, np.ndarray]) -> None:
    out_row0, out = piece
    dst.write(out, window=Window(0, out_row0, out.shape[2], out.shape[1]))


def _copy_metadata(src: Any, dst: Any, tags: Mapping[str, str]) -> None:
    dst.update_tags(**{**src.tags(), **tags})
    for band in range(1, src.count + 1):
        band_tags = src.tags(band)
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
