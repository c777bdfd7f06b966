"""Cloud Optimized GeoTIFF output whose overviews are rspolicy's own area average.

GDAL's COG driver would build overviews with its own resampling, which
treats odd edges, nodata and SAR amplitude differently from
:func:`rspolicy.resample.area_average`. Here rspolicy computes every overview
level itself and hands them to the COG driver ready made:

1. Levels: each is the factor-2 area average of the one before, on the
   kernel's grid of ``ceil(n / 2)`` pixels per axis (an edge pixel averages
   only what it covers), until a level fits in one ``BLOCKSIZE`` tile, the
   COG driver's own stop rule (both dimensions ``<= BLOCKSIZE``).
2. Streaming: the full-resolution image is read as degrading reads it, in
   strips of a multiple of ``2**k`` rows, and ``k`` levels are produced from
   each strip in one pass. Every strip but the last starts on an even row at every one of those
   levels, so by the kernel's streaming property the stacked pieces are
   bit-for-bit the average of the whole level. Images too wide for ``2**k``
   rows to fit the strip budget take further passes, each reading the last
   level the previous pass wrote.
3. Assembly: the levels are written to temporary tiled GeoTIFFs, a VRT of
   the image declares them as explicit ``<Overview>`` elements of each band,
   and the COG driver copies that VRT with ``OVERVIEWS=FORCE_USE_EXISTING``:
   it writes our overviews as they are and computes none.

Everything temporary lives in a private folder beside the output and is
removed whatever happens; the COG itself is written there too and renamed
into place only once complete, so a failure leaves neither a partial COG
nor any side file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Final

import numpy as np
import rasterio
from defusedxml import ElementTree as SafeET
from rasterio import shutil as rio_shutil
from rasterio._err import CPLE_BaseError
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from rspolicy import degrade
from rspolicy.degrade import GDAL_ENV, block_row_windows, read_ahead, whole_periods
from rspolicy.errors import OutputError, ResampleError
from rspolicy.readers.gdalopen import READ_ENV, gdal_threads
from rspolicy.resample import SarMode, area_average

__all__ = ["BLOCKSIZE", "overview_sar_mode", "overview_shapes", "write_cog"]

#: Tile size of the COG, and the size below which no further overview is made.
BLOCKSIZE: Final = 512

#: Prefix of the private temporary folder created beside the output.
TMP_PREFIX: Final = ".rspolicy-cog-"

# No side files (.aux.xml) read or written anywhere, as for inputs (the COG
# writer reads only rspolicy's own scratch files, but with the same
# settings); read errors never filled in; a larger block cache:
# it must hold the partly written tile rows of the levels of one pass (tens
# of MB for an 18000-pixel-wide complex image): a tile evicted half written
# is compressed at every later write to it.
_ENV: Final[dict[str, Any]] = {**READ_ENV, **GDAL_ENV, "GDAL_CACHEMAX": 128 * 1024 * 1024}

# Temporary level files: small tiles keep the partly written tile rows in the
# block cache small; fast compression, since the COG driver re-encodes them.
_LEVEL_OPTIONS: Final[dict[str, Any]] = {
    "driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256,
    "compress": "zstd", "zstd_level": 1, "BIGTIFF": "IF_SAFER",
}


def overview_sar_mode(degraded_with: SarMode | None) -> SarMode | None:
    """How the overviews of an image degraded with ``degraded_with`` are averaged.

    The overviews average the *degraded* image, so what matters is what that
    image holds:

    * ``"intensity"``: complex samples were turned into real power, and
      power averages linearly: ``None``;
    * ``"amplitude"``: the image is still detected amplitude, so it is
      averaged in power again: ``"amplitude"``;
    * ``"coherent"``: the image is still complex: ``"coherent"``;
    * ``None`` (optical, plain power): ``None``.

    Parameters
    ----------
    degraded_with
        The SAR mode the image was degraded with (``DegradePlan.sar_mode``).

    Returns
    -------
    str or None
        The ``sar_mode`` to pass to :func:`rspolicy.resample.area_average`
        for each overview level.

    Examples
    --------
    >>> overview_sar_mode("intensity") is None, overview_sar_mode("amplitude")
    (True, 'amplitude')
    """
    return None if degraded_with == "intensity" else degraded_with


def overview_shapes(height: int, width: int, blocksize: int = BLOCKSIZE) -> list[tuple[int, int]]:
    """``(rows, cols)`` of each overview level of a ``height x width`` image.

    Each level halves the previous one on the kernel's grid (``ceil(n / 2)``
    per axis); levels are added while either dimension exceeds
    ``blocksize``, so the last one fits in a single tile, as the COG driver
    decides. (The driver's own overviews would be ``floor(n / 2)`` wide,
    dropping an odd last row or column; ours cover it.)

    Parameters
    ----------
    height, width
        Full-resolution size in pixels.
    blocksize
        The COG tile size.

    Returns
    -------
    list of tuple of int
        Finest level first; empty when the image fits in one tile.

    Examples
    --------
    >>> overview_shapes(1101, 1301)
    [(551, 651), (276, 326)]
    >>> overview_shapes(512, 300)
    []
    """
    shapes: list[tuple[int, int]] = []
    rows, cols = height, width
    while rows > blocksize or cols > blocksize:
        rows, cols = -(-rows // 2), -(-cols // 2)
        shapes.append((rows, cols))
    return shapes


def write_cog(src: Path, dst: Path, *, sar_mode: SarMode | None = None, threads: int | None = None) -> None:
    """Write ``src`` to ``dst`` as a Cloud Optimized GeoTIFF with area-averaged overviews.

    The full-resolution image is copied as it is. The overviews are
    :func:`rspolicy.resample.area_average` at factor 2, level after level
    (see the module documentation), with the image's nodata and the SAR mode
    :func:`overview_sar_mode` derives from ``sar_mode``. Georeferencing, RPCs,
    GCPs, dataset and band tags, band descriptions, units, scales and
    offsets and nodata are kept. The COG is DEFLATE-compressed (with the
    horizontal predictor for integer data), 512-pixel tiled, BigTIFF when it
    might exceed 4 GB, and no ``.aux.xml`` is written.

    Parameters
    ----------
    src
        The image (a GeoTIFF), e.g. the output of
        :func:`rspolicy.degrade.degrade_raster`. It is not modified.
    dst
        The COG to write. Replaced atomically once complete; untouched if
        anything fails.
    sar_mode
        The SAR mode ``src`` was degraded with (``DegradePlan.sar_mode``), not
        the mode of the overviews: see :func:`overview_sar_mode`.
    threads
        Worker threads for averaging and for the encoder (default: the
        machine's cores).

    Raises
    ------
    OutputError
        When the COG cannot be written; temporary files are removed.
    """
    workers = gdal_threads(threads)
    mode = overview_sar_mode(sar_mode)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=dst.parent))
    except OSError as exc:
        raise OutputError(f"{dst}: cannot write the COG ({_one_line(exc)})") from exc
    try:
        with rasterio.Env(**_ENV):
            with _open(src) as ds:
                height, width, integer = ds.height, ds.width, np.dtype(ds.dtypes[0]).kind in "iu"
            shapes = overview_shapes(height, width)
            levels = _build_levels(src, tmp, shapes, mode, workers)
            options: dict[str, Any] = {"COMPRESS": "DEFLATE", "BIGTIFF": "IF_SAFER", "NUM_THREADS": str(workers)}
            if integer:
                options["PREDICTOR"] = "YES"  # horizontal differencing; GDAL picks it for integer types
            out = tmp / "cog.tif"
            if levels:
                vrt = tmp / "cog.vrt"
                _write_vrt(src, vrt, levels)
                rio_shutil.copy(vrt, out, driver="COG", OVERVIEWS="FORCE_USE_EXISTING", **options)
            else:
                rio_shutil.copy(src, out, driver="COG", OVERVIEWS="NONE", **options)
            _check_overviews(out, dst, shapes)
        os.replace(out, dst)
    except OutputError:
        raise
    except (RasterioError, CPLE_BaseError, ResampleError, OSError, MemoryError) as exc:
        raise OutputError(f"{dst}: cannot write the COG ({_one_line(exc)})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _open(path: Path, mode: str = "r", **kwargs: Any) -> Any:
    # Level files carry no georeferencing (the COG derives it from the full
    # resolution), which rasterio would warn about.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path, mode, **kwargs)


def _build_levels(src: Path, tmp: Path, shapes: list[tuple[int, int]], mode: SarMode | None,
                  workers: int) -> list[Path]:
    """Write every overview level to ``tmp``, in as few passes over the data as the strip budget allows."""
    paths = [tmp / f"level-{i + 1}.tif" for i in range(len(shapes))]
    current, done = src, 0
    while done < len(shapes):
        with _open(current) as ds:
            row_bytes = ds.width * ds.count * np.dtype(ds.dtypes[0]).itemsize
            k = _levels_per_pass(row_bytes, len(shapes) - done)
            _cascade(ds, paths[done:done + k], shapes[done:done + k], mode, workers)
        current, done = paths[done + k - 1], done + k
    return paths


def _levels_per_pass(row_bytes: int, remaining: int) -> int:
    """The most levels (at least one) whose ``2**k``-row strip fits the strip budget."""
    k = 1
    while k < remaining and (2 ** (k + 1)) * row_bytes <= degrade.STRIP_BYTES:
        k += 1
    return k


def _cascade(src: Any, paths: list[Path], shapes: list[tuple[int, int]], mode: SarMode | None,
             workers: int) -> None:
    """One pass: read ``src`` and write ``len(paths)`` successive factor-2 levels of it.

    ``src`` is read as degrading reads it: block-aligned chunks read ahead,
    re-cut into strips of whole periods (here ``2**k`` rows).
    """
    nodata = src.nodata
    block_rows = int(src.block_shapes[0][0]) if src.block_shapes else 1
    windows = list(block_row_windows(src.height, src.width, src.count, np.dtype(src.dtypes[0]).itemsize, block_rows))
    profile = {**_LEVEL_OPTIONS, "count": src.count, "dtype": src.dtypes[0], "nodata": nodata,
               "num_threads": str(workers)}

    outs: list[Any] = []
    try:
        for path, (rows, cols) in zip(paths, shapes, strict=True):
            # Tiled only when a whole tile fits each way: the last levels are small enough for strips.
            options = profile if rows >= 256 and cols >= 256 else {**profile, "tiled": False}
            outs.append(_open(path, "w", width=cols, height=rows, **options))
        rows_written = [0] * len(outs)
        with contextlib.closing(read_ahead(src, windows)) as chunks:
            # Strips of a multiple of 2**k rows: each level's piece starts on an even row of that level.
            for strip in whole_periods(chunks, 2 ** len(outs)):
                level = strip
                for j, out in enumerate(outs):
                    level = area_average(level, 2, nodata=nodata, sar_mode=mode, threads=workers)
                    out.write(level, window=Window(0, rows_written[j], level.shape[2], level.shape[1]))
                    rows_written[j] += level.shape[1]
    finally:
        for out in outs:
            out.close()


def _write_vrt(src: Path, vrt: Path, levels: list[Path]) -> None:
    """A VRT of ``src`` whose bands declare ``levels`` as their overviews.

    GDAL's own VRT copy of ``src`` carries its georeferencing, RPC domain,
    GCPs, tags, nodata and band descriptions; rspolicy adds the
    ``<Overview>`` elements, pins the source path and restores the GCPs'
    precision.
    """
    rio_shutil.copy(src, vrt, driver="VRT")
    with _open(src) as ds:
        gcps = ds.gcps[0]
    root = SafeET.fromstring(vrt.read_bytes())
    gcp_list = root.find("GCPList")
    if gcps and gcp_list is not None:
        # GDAL serialises GCPs with 4 decimals of pixel and 13 significant
        # digits of ground coordinate; its parser reads full doubles back.
        for element, gcp in zip(gcp_list.findall("GCP"), gcps, strict=True):
            element.set("Pixel", repr(float(gcp.col)))
            element.set("Line", repr(float(gcp.row)))
            element.set("X", repr(float(gcp.x)))
            element.set("Y", repr(float(gcp.y)))
            if gcp.z is not None:
                element.set("Z", repr(float(gcp.z)))
    for md in root.findall("Metadata"):
        if md.get("domain") == "IMAGE_STRUCTURE":
            root.remove(md)  # describes src's encoding, not the COG's
    source = os.fspath(src.resolve())
    for band in root.findall("VRTRasterBand"):
        for name in band.iter("SourceFilename"):
            # GDAL writes src as it was given; a relative path would resolve against the working directory.
            name.set("relativeToVRT", "0")
            name.text = source
        for level in levels:
            overview = ET.SubElement(band, "Overview")
            ET.SubElement(overview, "SourceFilename", relativeToVRT="1").text = level.name
            ET.SubElement(overview, "SourceBand").text = band.get("band", "1")
    ET.ElementTree(root).write(vrt, encoding="utf-8")


def _check_overviews(path: Path, dst: Path, shapes: list[tuple[int, int]]) -> None:
    """Refuse a COG whose overviews are not the levels rspolicy computed (a GDAL that built its own)."""
    with _open(path) as ds:
        count = len(ds.overviews(1))
    found = []
    for level in range(count):
        with _open(path, OVERVIEW_LEVEL=level) as ovr:
            found.append((ovr.height, ovr.width))
    if found != shapes:
        raise OutputError(f"{dst}: the COG driver wrote overviews of {found} pixels, not rspolicy's {shapes}")
