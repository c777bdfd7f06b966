#!/usr/bin/env python3
"""Fuzz the whole screen of a GeoTIFF: mutated bytes must give a decision, never an exception, crash or hang.

Each input is written as a GeoTIFF named like a SuperView panchromatic scene
and screened with the default policy by :func:`rspolicy.screen.screen`. The
property: exactly one decision comes back, its action is allow, resample or
block, and a block says why.

Where the screen runs
    By default in this process, with ``RSPOLICY_ISOLATION=off``: libFuzzer is
    guided by the coverage of rspolicy's own TIFF code (the structure checks, the
    GeoTIFF reader), and its handlers report a libtiff or GDAL crash (``deadly
    signal``), a hang (``-timeout``) or a memory blow-up (``-rss_limit_mb``), saving
    the input. Not through :func:`rspolicy.isolation.run_isolated`: libFuzzer sees
    coverage only of code that runs in its own process, so with the screen in the
    worker every input looks alike and libFuzzer shrinks the corpus to a few bytes
    (measured: 30 features, corpus reduced to one 4-byte input within 300 runs).
    With ``FUZZ_ISOLATED=1`` each input is screened as in production, in the
    isolated worker, and a crash, hang or memory failure there comes back as
    :class:`~rspolicy.isolation.IsolationError` and is reported as a finding: use
    it to replay a corpus or a crash file (``-runs=0``, or the file as argument)
    through the production path, and to check that isolation contains it.

Usage (see ``fuzz/README.md``)::

    python fuzz/fuzz_screen_tiff.py --seed CORPUS_DIR
    python fuzz/fuzz_screen_tiff.py CORPUS_DIR -max_total_time=60 -timeout=60 -artifact_prefix=fuzz/crashes/screen_tiff/
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["rspolicy"]):
    from rspolicy.isolation import IsolationError, Limits, run_isolated
    from rspolicy.model import Action
    from rspolicy.policy import load_policy
    from rspolicy.screen import screen

# Seed writers, imported after the instrumented modules so that only the code under test is instrumented.
import numpy as np
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS

from rspolicy.samples.gf_optical import linear_rpc

ISOLATED = os.environ.get("FUZZ_ISOLATED", "") == "1"
NAME = "SVN1-01_20230315_L2A0001234567_1112300000001-PAN.tiff"
#: Loaded before the worker is forked, so that the worker inherits it instead of receiving it per call.
POLICY = load_policy(None)
#: Per input; a tiny image screens in milliseconds, so anything near this is a hang.
LIMITS = Limits(seconds=10.0, memory_bytes=2 << 30)

_WORK = Path(tempfile.mkdtemp(prefix="rspolicy-fuzz-tiff-"))


class FindingError(Exception):
    """The screen broke its contract on this input."""


def write_seeds(corpus: Path) -> None:
    """Small GeoTIFFs written with rasterio: the layouts and georeferencing kinds rspolicy reads."""
    corpus.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 1024, (4, 16, 16), dtype=np.uint16)
    utm = CRS.from_epsg(32650)
    ortho = Affine(0.3, 0, 448_000.0, 0, -0.3, 4_417_000.0)
    _write(corpus / "utm_strip.tif", pixels[:1], crs=utm, transform=ortho)
    _write(corpus / "utm_tiled_deflate.tif", pixels[:1], crs=utm, transform=ortho, compress="deflate",
           tiled=True, blockxsize=16, blockysize=16, predictor=2)
    _write(corpus / "geographic_4band_lzw.tif", pixels, crs=CRS.from_epsg(4326),
           transform=Affine(1e-5, 0, 116.40, 0, -1e-5, 39.91), compress="lzw")
    _write(corpus / "rotated.tif", pixels[:1], crs=utm, transform=Affine(0.3, 0.1, 448_000.0, 0.1, -0.3, 4_417_000.0))
    _write(corpus / "rpc_l1a.tif", pixels[:1], rpcs=linear_rpc(116.5, 39.9, 0.4, 16, 16, height_off=50.0))
    gcps = [GroundControlPoint(row, col, 116.5 + col * 5e-6, 39.9 - row * 5e-6, 0.0)
            for row in (0, 16) for col in (0, 16)]
    _write(corpus / "gcps.tif", pixels[:1], gcps=(gcps, CRS.from_epsg(4326)))
    slc = (rng.normal(0, 100, (1, 8, 8)) + 1j * rng.normal(0, 100, (1, 8, 8))).astype(np.complex64)
    _write(corpus / "sar_slc.tif", slc, crs=utm, transform=Affine(0.5, 0, 448_000.0, 0, -0.5, 4_417_000.0))
    _write(corpus / "float_nodata.tif", pixels[:1].astype(np.float32), crs=utm, transform=ortho, nodata=-9999.0)


def _write(path: Path, pixels: np.ndarray, *, rpcs: object = None, gcps: object = None, **profile: object) -> None:
    count, height, width = pixels.shape
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count,
                           dtype=pixels.dtype.name, **profile) as dst:
            dst.write(pixels)
            if rpcs is not None:
                dst.rpcs = rpcs
            if gcps is not None:
                dst.gcps = gcps


def screen_summary(path: str) -> tuple[int, str, str, tuple[str, ...]]:
    """Screen one file; what the property needs of the decisions, small enough to cross the pipe quickly."""
    decisions = screen([path], POLICY)
    if not decisions:
        return 0, "", "", ()
    first = decisions[0]
    return len(decisions), first.action.value, first.product_class.value, tuple(first.reasons)


def test_one_input(data: bytes) -> None:
    """One fuzz iteration."""
    path = _WORK / NAME
    path.write_bytes(data)
    if not ISOLATED:
        count, action, product_class, reasons = screen_summary(str(path))
    else:
        try:
            count, action, product_class, reasons = run_isolated(screen_summary, str(path), limits=LIMITS)
        except IsolationError as exc:
            raise FindingError(f"screening {len(data)} bytes of TIFF in the isolated worker: {exc}") from None
    if count != 1:
        raise FindingError(f"screen returned {count} decisions for one file")
    if action not in {a.value for a in Action}:
        raise FindingError(f"unknown action {action!r}")
    if action == Action.BLOCK.value and not reasons:
        raise FindingError(f"blocked ({product_class}) without a reason")


def main(argv: list[str]) -> None:
    """``--seed DIR`` writes the seed corpus; anything else goes to libFuzzer."""
    if len(argv) == 3 and argv[1] == "--seed":
        write_seeds(Path(argv[2]))
        return
    if not ISOLATED:
        os.environ["RSPOLICY_ISOLATION"] = "off"  # read on every call, so setting it here is in time
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
