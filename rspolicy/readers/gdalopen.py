"""The one way rspolicy opens a raster with GDAL: a driver it chose, nothing beside the file.

GDAL, left to itself, tries every registered driver on a file (a VRT or an
ENVI header saved as ``.tif`` would pull pixels from other files) and
consults files beside it: world files, ``.aux.xml``, ``.rpb``/``_rpc.txt``,
``.ovr``, ``.msk``. rspolicy reads only self-contained formats, and parses
every file beside an image itself (:mod:`rspolicy.readers.companions`), so
that each one is evidence it judged rather than something GDAL silently
applied.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rasterio
from rasterio.errors import NotGeoreferencedWarning

from rspolicy.errors import ProductReadError

#: The only GDAL driver rspolicy opens inputs with (rasterio takes one name, which GDAL then
#: uses as its only allowed driver). GeoTIFF is self-contained
#: (its pages, overviews and masks live in the file itself).
RASTER_DRIVERS: tuple[str, ...] = ("GTiff",)

#: GDAL settings for reading inputs: no side files at all (EMPTY_DIR makes
#: GDAL believe the image's folder holds nothing else), no PAM, no network.
READ_ENV: dict[str, Any] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_PAM_ENABLED": "NO",
    "GDAL_HTTP_TIMEOUT": "1",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".none",
    "GTIFF_IGNORE_READ_ERRORS": "NO",
}


#: Whether this process started GDAL's worker-thread pool (a read or write with NUM_THREADS > 1), and whether
#: it is a fork of a process that had: the fork copies the pool but not its threads, so work queued there
#: would wait forever.
_gdal_pool_started = False
_gdal_pool_inherited = False


def _after_fork_in_child() -> None:
    global _gdal_pool_inherited  # noqa: PLW0603 - per-process fact
    _gdal_pool_inherited = _gdal_pool_inherited or _gdal_pool_started


os.register_at_fork(after_in_child=_after_fork_in_child)


def gdal_threads(requested: int | None) -> int:
    """How many threads GDAL may use for one read or write in this process.

    ``requested`` (default: every core), except 1 in a process forked from
    one that had already started GDAL's thread pool: there the pool's
    threads do not exist, and a multi-threaded read would hang.

    >>> gdal_threads(3)
    3
    """
    global _gdal_pool_started  # noqa: PLW0603 - per-process fact
    if _gdal_pool_inherited:
        return 1
    threads = max(1, requested or os.cpu_count() or 1)
    if threads > 1:
        _gdal_pool_started = True
    return threads


@contextmanager
def open_input(path: Path, *, page: int | None = None, **options: Any) -> Iterator[Any]:
    """Open an input raster read-only with an allowed driver and no side files.

    The file is opened by rspolicy first and GDAL is handed that open file
    (``/proc/self/fd/N`` on Linux): GDAL reads exactly the file rspolicy
    checked, never a special file, and a file name that is not valid UTF-8
    (which GDAL's API cannot take) opens like any other.

    Parameters
    ----------
    path
        The image file.
    page
        A further TIFF page (IFD index, 0 for the first), opened through
        GDAL's ``GTIFF_DIR`` syntax.
    **options
        GDAL open options (``OVERVIEW_LEVEL="NONE"``, ``NUM_THREADS``).

    Yields
    ------
    rasterio.DatasetReader
        Raises rasterio's errors when no allowed driver opens the file, and
        ProductReadError when it cannot be opened or is not a regular file.
    """
    with _pinned(path) as name, rasterio.Env(**READ_ENV), warnings.catch_warnings():
        # An L1A image has no geotransform by design; its RPCs are read elsewhere.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        target = name if page is None else f"GTIFF_DIR:{page + 1}:{name}"
        with rasterio.open(target, driver=RASTER_DRIVERS[0], **options) as ds:
            yield ds


@contextmanager
def _pinned(path: Path) -> Iterator[str]:
    """A name GDAL can open for the regular file at ``path``, held open while in use."""
    try:
        # O_NONBLOCK: opening a FIFO that slipped past discovery must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise ProductReadError(path, f"cannot be opened ({exc.strerror or exc})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ProductReadError(path, "not a regular file: never read")
        by_fd = f"/proc/self/fd/{fd}"
        name = by_fd if os.path.exists(by_fd) else os.fspath(path)
        _OPEN_AS[name] = os.fspath(path)
        try:
            yield name
        finally:
            _OPEN_AS.pop(name, None)
    finally:
        os.close(fd)


#: The file each name handed to GDAL stands for, while it is open (an fd number is unique while open).
_OPEN_AS: dict[str, str] = {}


def input_name(ds: Any) -> str:
    """The file a dataset from :func:`open_input` was opened from, for messages (GDAL knows only its fd)."""
    name = str(ds.name)
    prefix, _, rest = name.rpartition(":") if name.startswith("GTIFF_DIR:") else ("", "", name)
    return _OPEN_AS.get(rest, name) if not prefix else _OPEN_AS.get(rest, rest)
