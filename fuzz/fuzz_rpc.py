#!/usr/bin/env python3
"""Fuzz rspolicy's parsers of the files beside an image: ``.rpb``, ``_rpc.txt``, world files, ``.aux.xml``.

The parsers live in :mod:`rspolicy.readers.companions` (``parse_rpb(path)``,
``parse_rpc_txt(path)``, ``parse_world_file(path)``, ``parse_pam(path)``);
their contract is that no exception other than ``ProductReadError`` leaves
them, whatever the bytes. The module is imported lazily, inside
:func:`load_parsers`, so that this harness also runs against a tree where it
is missing: then the ``.rpb`` goes beside a tiny GeoTIFF through
:func:`rspolicy.readers.discover.read_product` instead.

Usage (see ``fuzz/README.md``)::

    python fuzz/fuzz_rpc.py --seed CORPUS_DIR
    python fuzz/fuzz_rpc.py CORPUS_DIR -max_total_time=60 -artifact_prefix=fuzz/crashes/rpc/
"""

from __future__ import annotations

import contextlib
import math
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports(include=["rspolicy"]):
    from rspolicy.errors import ProductReadError

# Seed writers, imported after the instrumented modules so that only the code under test is instrumented.
import numpy as np
import rasterio
from rasterio.crs import CRS

from rspolicy.samples.gf_optical import linear_rpc, write_image, write_rpb

_WORK = Path(tempfile.mkdtemp(prefix="rspolicy-fuzz-rpc-"))
IMAGE = "GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-PAN1.tiff"

Parser = Callable[[Path], Any]


def load_parsers() -> list[tuple[str, Parser]]:
    """The companion parsers with the file name each is given, or the read_product fallback."""
    try:
        with atheris.instrument_imports(include=["rspolicy"]):
            # Imported here: the harness must also run on a tree without this module.
            from rspolicy.readers import companions  # noqa: PLC0415
    except ImportError:
        return [(IMAGE.replace(".tiff", ".rpb"), _through_read_product)]
    stem = IMAGE.removesuffix(".tiff")
    return [(f"{stem}.rpb", companions.parse_rpb), (f"{stem}_rpc.txt", companions.parse_rpc_txt),
            (f"{stem}.tfw", companions.parse_world_file), (f"{IMAGE}.aux.xml", companions.parse_pam)]


def _through_read_product(path: Path) -> Any:
    """Fallback target: the whole product read (GDAL sees the .rpb beside the image)."""
    from rspolicy.readers.discover import ProductFiles, read_product_here  # noqa: PLC0415 - fallback only

    image = path.with_name(IMAGE)
    if not image.exists():
        _tiny_tiff(image)
    return read_product_here(ProductFiles(display=str(image), main=image, sidecars=(path,)),
                             {image: image.name, path: path.name})


def _tiny_tiff(path: Path) -> None:
    write_image(path, np.zeros((1, 8, 8), dtype="uint16"))


def _sample_rpc() -> Any:
    return linear_rpc(116.5, 39.9, 0.81, 512, 512, height_off=50.0)


def write_seeds(corpus: Path) -> None:
    """Seeds from rspolicy's sample writers and from GDAL writing the same RPCs (never distributor files)."""
    corpus.mkdir(parents=True, exist_ok=True)
    rpc = _sample_rpc()
    write_rpb(corpus / "linear.rpb", rpc)
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "scene.tif"
        # GDAL's own _rpc.txt writer, for the RPC00B text layout.
        with rasterio.Env(GDAL_PAM_ENABLED="YES"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(image, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint16",
                               RPCTXT="YES") as ds:
                ds.write(np.zeros((1, 8, 8), dtype="uint16"))
                ds.rpcs = rpc
        for written in Path(tmp).iterdir():
            if written.name.lower().endswith("_rpc.txt"):
                (corpus / "gdal_rpc.txt").write_bytes(written.read_bytes())
    rpc_items = "".join(f'    <MDI key="{key}">{value}</MDI>\n' for key, value in rpc.to_gdal().items())
    (corpus / "pam.aux.xml").write_text(
        "<PAMDataset>\n"
        f"  <SRS dataAxisToSRSAxisMapping=\"1,2\">{CRS.from_epsg(32650).to_wkt()}</SRS>\n"
        "  <GeoTransform>  4.4800000000000000e+05,  5.0000000000000000e-01,  0.0000000000000000e+00,  "
        "4.4170000000000000e+06,  0.0000000000000000e+00, -5.0000000000000000e-01</GeoTransform>\n"
        f"  <Metadata domain=\"RPC\">\n{rpc_items}  </Metadata>\n"
        "</PAMDataset>\n")
    lon_step = 0.5 / (111_320.0 * math.cos(math.radians(39.9)))
    (corpus / "world.tfw").write_text(f"{lon_step:.12f}\n0.0\n0.0\n{-0.5 / 110_574.0:.12f}\n116.5\n39.9\n")
    (corpus / "utm.tfw").write_text("0.5\n0\n0\n-0.5\n448000.25\n4416999.75\n")


def test_one_input(data: bytes) -> None:
    """One fuzz iteration: every parser on the same bytes; only ProductReadError may leave."""
    for name, parse in PARSERS:
        path = _WORK / name
        path.write_bytes(data)
        with contextlib.suppress(ProductReadError):
            parse(path)


PARSERS: list[tuple[str, Parser]] = []


def main(argv: list[str]) -> None:
    """``--seed DIR`` writes the seed corpus; anything else goes to libFuzzer."""
    if len(argv) == 3 and argv[1] == "--seed":
        write_seeds(Path(argv[2]))
        return
    PARSERS.extend(load_parsers())
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
