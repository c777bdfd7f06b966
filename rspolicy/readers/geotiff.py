"""Evidence from any raster GDAL can open, GeoTIFF first.

Only the header is read: size, bands, data type, CRS, geotransform, GCPs,
RPCs (GDAL picks up an ``.rpb`` or ``_rpc.txt`` beside the image), nodata and
tags. No pixel is read, so a 1.6 GB L1A scene screens in milliseconds.

GDAL's PAM is switched off while reading so that screening never writes an
``.aux.xml`` beside the input: inputs are never modified.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from rspolicy.errors import ProductReadError
from rspolicy.geometry import Spacing, affine_spacing, gcp_spacing, rpc_spacing
from rspolicy.model import Evidence, Fact, ProductClass, Strength

#: GDAL settings for reading: no PAM side files, no network drivers.
READ_ENV: dict[str, Any] = {"GDAL_PAM_ENABLED": "NO", "GDAL_HTTP_TIMEOUT": "1",
                            "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".none"}

_TAGS_WORTH_SHOWING = ("TIFFTAG_IMAGEDESCRIPTION", "TIFFTAG_SOFTWARE", "TIFFTAG_DATETIME", "AREA_OR_POINT",
                       "RSPOLICY_SOURCE_GSD_M", "RSPOLICY_TARGET_GSD_M", "RSPOLICY_POLICY", "RSPOLICY_DECISION_ID")


def read_raster(path: Path, source: str) -> list[Evidence]:
    """Evidence from a raster's header.

    Parameters
    ----------
    path
        The raster file.
    source
        The label to put on the evidence.

    Returns
    -------
    list of Evidence
        Size, band count, data type, CRS, nodata, tags; a ground spacing for
        each georeferencing the file carries (geotransform, GCPs, RPCs); class
        hints from the data type (complex means SAR) and band layout.

    Raises
    ------
    ProductReadError
        When GDAL cannot open the file or its georeferencing cannot be
        evaluated (a product whose resolution cannot be measured must not
        pass on the strength of coarser evidence alone).
    """
    try:
        with warnings.catch_warnings():
            # An L1A image has no geotransform by design; its RPCs are read below.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.Env(**READ_ENV), rasterio.open(path) as ds:
                return _evidence(ds, path, source)
    except (RasterioError, CPLE_BaseError) as exc:
        message = str(exc).replace(str(path), "").strip(" :") or type(exc).__name__
        raise ProductReadError(path, f"not a readable raster ({message.splitlines()[0]})") from exc


def _evidence(ds: Any, path: Path, source: str) -> list[Evidence]:
    out: list[Evidence] = []

    def add(fact: Fact, field: str, value: Any, detail: str = "", strength: Strength = Strength.MEDIUM) -> None:
        out.append(Evidence(fact, value, source, field, detail, strength))

    width, height, count = int(ds.width), int(ds.height), int(ds.count)
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

    crs = ds.crs
    transform: Affine = ds.transform
    if crs is not None:
        add(Fact.CRS, "CRS", crs.to_string())
    spacings: list[Spacing] = []
    try:
        if crs is not None and not transform.is_identity:
            spacings.extend(affine_spacing(transform, crs, width, height))
        elif not transform.is_identity:
            add(Fact.INFO, "geotransform", str(tuple(transform)[:6]),
                "geotransform without a CRS: its units are unknown, not used for resolution")
        gcps, gcp_crs = ds.gcps
        if gcps:
            add(Fact.INFO, "GCPs", len(gcps), f"{len(gcps)} ground control points")
            spacings.extend(gcp_spacing(gcps, gcp_crs, width, height))
        if ds.rpcs is not None:
            spacings.append(rpc_spacing(ds.rpcs, width, height))
    except (ValueError, RasterioError, CPLE_BaseError, ArithmeticError) as exc:
        raise ProductReadError(path, f"georeferencing cannot be evaluated ({exc})") from exc
    for spacing in spacings:
        add(Fact.GSD, spacing.method, spacing.finest_m,
            f"x {spacing.x_m:.6g} m, y {spacing.y_m:.6g} m; {spacing.detail}")
    if not spacings:
        add(Fact.INFO, "georeferencing", "none", "no CRS geotransform, GCPs or RPCs: resolution not measurable "
            "from the raster itself")
    return out
