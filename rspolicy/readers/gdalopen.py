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

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rasterio
from rasterio.errors import NotGeoreferencedWarning

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


@contextmanager
def open_input(path: Path, **options: Any) -> Iterator[Any]:
    """Open an input raster read-only with an allowed driver and no side files.

    Parameters
    ----------
    path
        The image file.
    **options
        GDAL open options (``OVERVIEW_LEVEL="NONE"``, ``NUM_THREADS``).

    Yields
    ------
    rasterio.DatasetReader
        Raises rasterio's errors when no allowed driver opens the file.
    """
    with rasterio.Env(**READ_ENV), warnings.catch_warnings():
        # An L1A image has no geotransform by design; its RPCs are read elsewhere.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, driver=RASTER_DRIVERS[0], **options) as ds:
            yield ds
