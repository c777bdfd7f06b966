"""The hostile corpus: small products built to make the gate leak, crash or hang.

Every case is written into its own folder under a root and described by a
:class:`Case`: what to pass to ``rspolicy enforce``, which actions and exit
statuses are acceptable under the default policy (cnsa-2022: PAN < 0.5 m,
MS < 2.0 m, SAR < 1.0 m restricted), and the TRUE ground extent every image of
the case covers, so that :mod:`tests.hostile.measure` can measure what was
released without trusting rspolicy's readers.

Run ``python -m tests.hostile.corpus OUTDIR`` to write the corpus and print
the case table.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import tifffile
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS

from rspolicy.readers.package import write_package
from rspolicy.samples.gf3 import gf3_names, write_gf3_meta
from rspolicy.samples.gf_optical import (
    OpticalScene,
    linear_rpc,
    metres_per_degree,
    order_xml,
    sidecar_xml,
    synthetic_pixels,
    write_image,
    write_rpb,
)
from rspolicy.samples.hdf5 import write_fy3_mersi

PAN_LIMIT = 0.5
MS_LIMIT = 2.0
SAR_LIMIT = 1.0

CATEGORIES = (
    "multi-image", "companion", "unaccounted-bytes", "georeferencing", "evidence-file", "external-reference",
    "damaged", "special-file", "names-and-numbers", "policy-file", "output-dir", "what-leaves",
)

ALLOW = frozenset({"allow"})
RESAMPLE = frozenset({"resample"})
BLOCK = frozenset({"block"})
RESAMPLE_OR_BLOCK = frozenset({"resample", "block"})
ALLOW_OR_BLOCK = frozenset({"allow", "block"})
EXIT = {"allow": 0, "resample": 0, "block": 4}  # enforce: degraded is a success (screen keeps 3)

UTM50N_EPSG = 32650
ORIGIN = (448_000.0, 4_417_000.0)
GF2_STEM = "GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969"
LON, LAT = 116.5, 39.9

#: TIFF tags: GeoTIFF pixel scale, tie point, transformation matrix and key directory.
TAG_PIXEL_SCALE, TAG_TIEPOINT, TAG_TRANSFORMATION, TAG_GEOKEYS = 33550, 33922, 34264, 34735
TAG_XMP, TAG_PRIVATE = 700, 65000


@dataclass(frozen=True)
class Case:
    """One hostile case and what the gate must do with it.

    Attributes
    ----------
    name, category, why
        Identity, one of :data:`CATEGORIES`, and one sentence on what it tries.
    folder
        The case's own folder: everything it writes, and where the leak check looks for stray files.
    inputs
        Paths to pass to ``enforce`` / ``screen``.
    expected_actions
        Acceptable actions for every decision of the case; empty when no decision may be made.
    expected_exit
        Acceptable exit statuses of ``enforce``.
    limit_m
        The policy limit for the case's product class.
    extent_m
        The TRUE ground extent (x, y) in metres every image of the case covers, or None when it has no images.
    finest_m
        The true finest ground spacing of any image of the case (None when unknown or not applicable).
    poison
        Byte markers that must never appear in released bytes.
    never_released
        File name suffixes that must never be released (browse images, world files, ...).
    outdir
        The OUTDIR to use (prepared by the case), or None for a fresh one.
    extra_args
        Extra command-line arguments (``--policy FILE``).
    subprocess_only
        Run only in a subprocess with a timeout (FIFOs, devices).
    rescreen_class
        When set, a released product must screen again as this class.
    baseline
        Relative path to sha256 (or ``"dir"``/``"link:..."``) of everything in ``folder`` after building,
        OUTDIR excluded: nothing may appear or change there.
    """

    name: str
    category: str
    folder: Path
    inputs: tuple[Path, ...]
    expected_actions: frozenset[str]
    expected_exit: frozenset[int]
    why: str
    limit_m: float = PAN_LIMIT
    extent_m: tuple[float, float] | None = None
    finest_m: float | None = None
    poison: tuple[bytes, ...] = ()
    never_released: tuple[str, ...] = ()
    outdir: Path | None = None
    extra_args: tuple[str, ...] = ()
    subprocess_only: bool = False
    rescreen_class: str | None = None
    baseline: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def output_dir(self) -> Path:
        """The OUTDIR this case is enforced into."""
        return self.outdir if self.outdir is not None else self.folder / "out"


def snapshot(folder: Path, exclude: Path | None) -> dict[str, str]:
    """Relative path -> content hash (``dir``, ``link:<target>``, ``special``) of everything under ``folder``.

    ``exclude`` (OUTDIR) and audit logs are left out: both are meant to change.
    """
    out: dict[str, str] = {}
    if not folder.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        if exclude is not None and (here == exclude or exclude in here.parents):
            dirnames[:] = []
            continue
        for name in [*dirnames, *filenames]:
            path = here / name
            rel = os.fsencode(path.relative_to(folder)).decode("utf-8", "backslashreplace")
            if exclude is not None and path == exclude:
                continue
            if name.startswith("audit.jsonl"):
                continue
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            elif path.is_file():
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[rel] = "special"
    return out


# ---------------------------------------------------------------------------------------------- writers


def poison(name: str) -> bytes:
    """The marker planted by one case."""
    return f"HOSTILE-POISON-{name}-7f3a".encode()


def pixels(height: int, width: int, bands: int = 1, dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    """Image-like pixels, (bands, height, width)."""
    return synthetic_pixels(bands, height, width, dtype=dtype, seed=seed)


def geokeys(epsg: int | None, kind: str = "projected") -> list[int]:
    """A GeoKeyDirectory for a projected or geographic EPSG code."""
    if epsg is None:
        return []
    keys = [(1024, 1 if kind == "projected" else 2), (1025, 1), (3072 if kind == "projected" else 2048, epsg)]
    out = [1, 1, 0, len(keys)]
    for key, value in keys:
        out += [key, 0, 1, value]
    return out


def geo_tags(scale_x: float, scale_y: float, *, epsg: int | None = UTM50N_EPSG, kind: str = "projected",
             origin: tuple[float, float] = ORIGIN) -> list[tuple[int, str, int, Any, bool]]:
    """GeoTIFF tags for a north-up grid: pixel scale, one tie point and (unless ``epsg`` is None) the CRS."""
    tags: list[tuple[int, str, int, Any, bool]] = [
        (TAG_PIXEL_SCALE, "d", 3, (scale_x, scale_y, 0.0), True),
        (TAG_TIEPOINT, "d", 6, (0.0, 0.0, 0.0, origin[0], origin[1], 0.0), True),
    ]
    keys = geokeys(epsg, kind)
    if keys:
        tags.append((TAG_GEOKEYS, "H", len(keys), keys, True))
    return tags


def matrix_tags(a: float, b: float, c: float, d: float, e: float, f: float,
                epsg: int = UTM50N_EPSG) -> list[tuple[int, str, int, Any, bool]]:
    """GeoTIFF tags for a general affine grid (ModelTransformationTag)."""
    matrix = (a, b, 0.0, c, d, e, 0.0, f, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    keys = geokeys(epsg)
    return [(TAG_TRANSFORMATION, "d", 16, matrix, True), (TAG_GEOKEYS, "H", len(keys), keys, True)]


@dataclass(frozen=True)
class Page:
    """One image written into a TIFF by :func:`write_tiff`."""

    data: np.ndarray
    tags: tuple[tuple[int, str, int, Any, bool], ...] = ()
    subfiletype: int = 0
    subifds: int = 0


def write_tiff(path: Path, pages: Iterable[Page], *, bigtiff: bool = False) -> Path:
    """Write pages (and SubIFDs, which follow the page that announces them) with tifffile, uncompressed."""
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw:
        for page in pages:
            data = page.data
            # A transparency mask must say so in its photometric interpretation.
            photometric = "mask" if page.subfiletype & 4 else "minisblack"
            tw.write(data[0] if data.ndim == 3 and data.shape[0] == 1 else data, photometric=photometric,
                     planarconfig="separate" if data.ndim == 3 and data.shape[0] > 1 else None,
                     subfiletype=page.subfiletype, subifds=page.subifds or None,
                     extratags=list(page.tags), metadata=None)
    return path


def plain_geotiff(path: Path, width: int, gsd: float, *, bands: int = 1, seed: int = 1,
                  extra: Iterable[Page] = (), subifds: int = 0, **geo: Any) -> Path:
    """A north-up square GeoTIFF of ``width`` pixels at ``gsd`` (UTM 50N unless told), plus extra pages."""
    main = Page(pixels(width, width, bands, seed=seed), tuple(geo_tags(gsd, gsd, **geo)), subifds=subifds)
    return write_tiff(path, [main, *extra], bigtiff=False)


def gf2_scene(width: int, gsd: float, *, bands: str = "5", extra: dict[str, str] | None = None,
              image_gsd: str | None = None) -> OpticalScene:
    """The sidecar content of a GF-2 L1A scene."""
    return OpticalScene(bands=bands, image_gsd=image_gsd if image_gsd is not None else f"{gsd:g}", width=width,
                        height=width, center_lon=LON, center_lat=LAT, extra=extra or {})


def gf2_product(folder: Path, width: int, gsd: float, *, kind: str = "PAN1", sidecar: str | None = None,
                rpb: bool = True, image: bool = True, seed: int = 2) -> Path:
    """A GF-2 L1A product: ``.tiff`` without map georeferencing, ``.rpb``, ``<ProductMetaData>`` sidecar.

    Returns the image path. ``sidecar`` replaces the sidecar text.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{GF2_STEM}-{kind}"
    bands = 1 if kind.startswith("PAN") else 4
    scene = gf2_scene(width, gsd, bands="5" if bands == 1 else "1,2,3,4")
    (folder / f"{stem}.xml").write_text(sidecar if sidecar is not None else sidecar_xml(scene), encoding="utf-8")
    if rpb:
        write_rpb(folder / f"{stem}.rpb", linear_rpc(LON, LAT, gsd, width, width, height_off=50.0))
    tif = folder / f"{stem}.tiff"
    if image:
        write_image(tif, pixels(width, width, bands, seed=seed))
    return tif


def package(dest: Path, files: Iterable[Path], inner: str) -> Path:
    """A delivery package holding ``files`` under ``inner/``."""
    write_package([(p, f"{inner}/{p.name}") for p in files], dest)
    return dest


def truncate(path: Path, keep: float) -> Path:
    """Cut a file to a fraction of its length."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def world_file(path: Path, gsd_x: float, gsd_y: float, origin: tuple[float, float] = ORIGIN) -> Path:
    """An ESRI world file (.tfw/.wld) for a north-up grid."""
    path.write_text(f"{gsd_x!r}\n0.0\n0.0\n{-gsd_y!r}\n{origin[0] + gsd_x / 2!r}\n{origin[1] - gsd_y / 2!r}\n")
    return path


def aux_xml(path: Path, gsd: float, extra: str = "") -> Path:
    """A GDAL PAM .aux.xml with a geotransform and a UTM 50N CRS."""
    path.write_text(
        "<PAMDataset>\n"
        '  <SRS dataAxisToSRSAxisMapping="1,2">EPSG:32650</SRS>\n'
        f"  <GeoTransform>{ORIGIN[0]!r}, {gsd!r}, 0.0, {ORIGIN[1]!r}, 0.0, {-gsd!r}</GeoTransform>\n"
        f"{extra}</PAMDataset>\n", encoding="utf-8")
    return path


def jpeg(path: Path, width: int, height: int) -> Path:
    """A greyscale JPEG (or PNG by suffix) written by GDAL."""
    driver = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    return write_image(path, pixels(height, width, 1, dtype="uint8", seed=5), driver=driver)


# ---------------------------------------------------------------------------------------------- the cases


class _Builder:
    """Collects cases; each ``add`` gets a fresh folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cases: list[Case] = []

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=False)
        return path

    def add(self, name: str, category: str, build: Callable[[Path], dict[str, Any]]) -> None:
        assert category in CATEGORIES, category
        folder = self.folder(name)
        spec = build(folder)
        actions = frozenset(spec.pop("actions"))
        exits = spec.pop("exit", None)
        if exits is None:
            exits = {EXIT[a] for a in actions} if actions else {2}
        inputs = spec.pop("inputs")
        inputs = tuple(inputs) if isinstance(inputs, list | tuple) else (inputs,)
        case = Case(name=name, category=category, folder=folder, inputs=inputs, expected_actions=actions,
                    expected_exit=frozenset(exits), why=WHY[name], **spec)
        base = snapshot(folder, case.output_dir())
        self.cases.append(Case(**{**case.__dict__, "baseline": base}))


def _gsd_extent(width: int, gsd: float, height: int | None = None) -> dict[str, Any]:
    return {"extent_m": (width * gsd, (height or width) * gsd)}


def _multi_image(b: _Builder) -> None:
    ext = _gsd_extent(100, 1.6)  # every case: 160 m square

    def extra_page(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 100, 1.6, extra=[Page(pixels(400, 400, seed=3))])
        return {"inputs": tif, "actions": BLOCK, "finest_m": 0.4, **ext}
    b.add("mi_extra_full_page_no_georef", "multi-image", extra_page)

    def subifd(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 100, 1.6, subifds=1, extra=[Page(pixels(400, 400, seed=3),
                                                                              subfiletype=1)])
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "finest_m": 0.4, **ext}
    b.add("mi_subifd_finer", "multi-image", subifd)

    def overview_larger(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 100, 1.6, extra=[Page(pixels(400, 400, seed=3), subfiletype=1)])
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "finest_m": 0.4, **ext}
    b.add("mi_reduced_page_larger_than_main", "multi-image", overview_larger)

    def mask(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 100, 1.6,
                            extra=[Page(np.ones((1, 400, 400), dtype=bool), subfiletype=4)])
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "finest_m": 0.4, **ext}
    b.add("mi_mask_page_finer", "multi-image", mask)

    def coarse_overviews(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.8, extra=[Page(pixels(100, 100, seed=3), subfiletype=1),
                                                              Page(pixels(50, 50, seed=4), subfiletype=1)])
        return {"inputs": tif, "actions": ALLOW, "finest_m": 0.8, **ext}
    b.add("mi_honest_overviews_allowed", "multi-image", coarse_overviews)

    def fine_main_overviews(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 400, 0.4, extra=[Page(pixels(200, 200, seed=3), subfiletype=1),
                                                              Page(pixels(100, 100, seed=4), subfiletype=1)])
        return {"inputs": tif, "actions": RESAMPLE, "finest_m": 0.4, **ext}
    b.add("mi_fine_main_with_overviews", "multi-image", fine_main_overviews)

    def second_georef(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 100, 1.6,
                            extra=[Page(pixels(400, 400, seed=3), tuple(geo_tags(0.4, 0.4)))])
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "finest_m": 0.4, **ext}
    b.add("mi_second_page_own_georef_finer", "multi-image", second_georef)

    def many_pages(f: Path) -> dict[str, Any]:
        small = [Page(pixels(50, 50, seed=i), subfiletype=1) for i in range(20)]
        tif = plain_geotiff(f / "scene-PAN.tif", 100, 1.6, extra=[*small, Page(pixels(400, 400, seed=30),
                                                                           subfiletype=1)])
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "finest_m": 0.4, **ext}
    b.add("mi_fine_page_after_twenty_small", "multi-image", many_pages)

    def bigtiff(f: Path) -> dict[str, Any]:
        main = Page(pixels(100, 100), tuple(geo_tags(1.6, 1.6)))
        tif = write_tiff(f / "scene-PAN.tif", [main, Page(pixels(400, 400, seed=3), subfiletype=1)], bigtiff=True)
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "finest_m": 0.4, **ext}
    b.add("mi_bigtiff_reduced_page_finer", "multi-image", bigtiff)

    def in_package(f: Path) -> dict[str, Any]:
        src = f / "src"
        tif = gf2_product(src, 200, 0.8)
        # The GF-2 image is rewritten with a hidden second page at four times the resolution.
        write_tiff(tif, [Page(pixels(200, 200)), Page(pixels(800, 800, seed=3), subfiletype=1)])
        pkg = package(f / f"{GF2_STEM}.tar.gz", sorted(src.iterdir()), GF2_STEM)
        return {"inputs": pkg, "actions": RESAMPLE_OR_BLOCK, "finest_m": 0.2, "extent_m": (160.0, 160.0)}
    b.add("mi_package_hidden_fine_page", "multi-image", in_package)


def _companions(b: _Builder) -> None:
    ext = (160.0, 160.0)

    def unknown_dat(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.8)
        (f / "scene-PAN.dat").write_bytes(poison("unknown_dat") * 100)
        return {"inputs": tif, "actions": ALLOW, "extent_m": ext, "finest_m": 0.8,
                "poison": (poison("unknown_dat"),), "never_released": (".dat",)}
    b.add("comp_unknown_dat_same_stem", "companion", unknown_dat)

    def unknown_xml(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.8)
        (f / "scene-PAN.xml").write_text(f"<Payload><Data>{poison('unknown_xml').decode()}</Data></Payload>\n")
        return {"inputs": tif, "actions": ALLOW, "extent_m": ext, "finest_m": 0.8,
                "poison": (poison("unknown_xml"),)}
    b.add("comp_xml_unknown_root", "companion", unknown_xml)

    def tfw_finer(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.8)
        world_file(f / "scene-PAN.tfw", 0.2, 0.2)
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "extent_m": ext, "never_released": (".tfw",)}
    b.add("comp_world_file_claims_finer", "companion", tfw_finer)

    def tfw_coarser(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 400, 0.4)
        world_file(f / "scene-PAN.tfw", 2.0, 2.0)
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "extent_m": ext, "finest_m": 0.4,
                "never_released": (".tfw",)}
    b.add("comp_world_file_claims_coarser", "companion", tfw_coarser)

    def wld_only(f: Path) -> dict[str, Any]:
        tif = write_tiff(f / "scene-PAN.tif", [Page(pixels(400, 400))])
        world_file(f / "scene-PAN.wld", 0.4, 0.4)
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "extent_m": ext, "finest_m": 0.4,
                "never_released": (".wld",)}
    b.add("comp_wld_only_georeferencing", "companion", wld_only)

    def aux_finer(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.8)
        aux_xml(f / "scene-PAN.tif.aux.xml", 0.2)
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "extent_m": ext, "never_released": (".aux.xml",)}
    b.add("comp_aux_xml_geotransform_finer", "companion", aux_finer)

    def aux_coarser(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.8)
        marker = poison("aux_coarser").decode()
        aux_xml(f / "scene-PAN.tif.aux.xml", 1.6, f'  <Metadata><MDI key="NOTE">{marker}</MDI></Metadata>\n')
        return {"inputs": tif, "actions": ALLOW, "extent_m": ext, "finest_m": 0.8,
                "poison": (poison("aux_coarser"),), "never_released": (".aux.xml",)}
    b.add("comp_aux_xml_never_leaves", "companion", aux_coarser)

    def ovr_finer(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.8)
        write_tiff(f / "scene-PAN.tif.ovr", [Page(pixels(400, 400, seed=7))])
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "extent_m": ext, "finest_m": 0.4,
                "never_released": (".ovr",)}
    b.add("comp_external_ovr_finer", "companion", ovr_finer)

    def msk_finer(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.8)
        write_tiff(f / "scene-PAN.tif.msk", [Page(np.full((1, 400, 400), 255, dtype=np.uint8))])
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "extent_m": ext, "finest_m": 0.4,
                "never_released": (".msk",)}
    b.add("comp_external_msk_finer", "companion", msk_finer)

    def browse_fine(f: Path) -> dict[str, Any]:
        tif = gf2_product(f, 200, 0.8)
        jpeg(tif.with_suffix(".jpg"), 400, 400)
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "extent_m": ext, "finest_m": 0.4,
                "never_released": (".jpg",)}
    b.add("comp_browse_jpg_finer_than_limit", "companion", browse_fine)

    def browse_png(f: Path) -> dict[str, Any]:
        tif = gf2_product(f, 200, 0.8)
        jpeg(tif.with_suffix(".png"), 64, 64)
        return {"inputs": tif, "actions": ALLOW, "extent_m": ext, "finest_m": 0.8, "never_released": (".png",)}
    b.add("comp_browse_png_never_released", "companion", browse_png)

    def rpc_txt(f: Path) -> dict[str, Any]:
        tif = write_tiff(f / "scene-PAN.tif", [Page(pixels(400, 400))])
        rpc = linear_rpc(LON, LAT, 0.4, 400, 400, height_off=50.0)
        (f / "scene-PAN_rpc.txt").write_text(_rpc_txt(rpc))
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "extent_m": ext, "finest_m": 0.4}
    b.add("comp_rpc_txt_only_evidence", "companion", rpc_txt)


def _rpc_txt(rpc: Any) -> str:
    """GDAL's ``_rpc.txt`` layout (``KEY: value`` lines)."""
    lines = [f"LINE_OFF: {rpc.line_off!r}", f"SAMP_OFF: {rpc.samp_off!r}", f"LAT_OFF: {rpc.lat_off!r}",
             f"LONG_OFF: {rpc.long_off!r}", f"HEIGHT_OFF: {rpc.height_off!r}", f"LINE_SCALE: {rpc.line_scale!r}",
             f"SAMP_SCALE: {rpc.samp_scale!r}", f"LAT_SCALE: {rpc.lat_scale!r}", f"LONG_SCALE: {rpc.long_scale!r}",
             f"HEIGHT_SCALE: {rpc.height_scale!r}"]
    for name, coefs in (("LINE_NUM_COEFF", rpc.line_num_coeff), ("LINE_DEN_COEFF", rpc.line_den_coeff),
                        ("SAMP_NUM_COEFF", rpc.samp_num_coeff), ("SAMP_DEN_COEFF", rpc.samp_den_coeff)):
        lines += [f"{name}_{i + 1}: {c!r}" for i, c in enumerate(coefs)]
    return "\n".join(lines) + "\n"


def _unaccounted(b: _Builder) -> None:
    ext = (160.0, 160.0)

    def appended(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.8)
        with tif.open("ab") as fh:
            fh.write(poison("appended") * 64)
        return {"inputs": tif, "actions": ALLOW_OR_BLOCK, "extent_m": ext, "finest_m": 0.8,
                "poison": (poison("appended"),)}
    b.add("ub_bytes_appended_after_structure", "unaccounted-bytes", appended)

    def hole(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.8)
        _move_strip_and_fill_hole(tif, poison("hole"))
        return {"inputs": tif, "actions": ALLOW_OR_BLOCK, "extent_m": ext, "finest_m": 0.8,
                "poison": (poison("hole"),)}
    b.add("ub_nonzero_hole_inside_file", "unaccounted-bytes", hole)

    def xmp(f: Path) -> dict[str, Any]:
        payload = b"<x:xmpmeta>" + poison("xmp") * 32 + b"</x:xmpmeta>"
        tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.8)
        write_tiff(tif, [Page(pixels(200, 200, seed=1),
                              (*geo_tags(0.8, 0.8), (TAG_XMP, "B", len(payload), payload, True)))])
        return {"inputs": tif, "actions": ALLOW_OR_BLOCK, "extent_m": ext, "finest_m": 0.8,
                "poison": (poison("xmp"),)}
    b.add("ub_xmp_tag_payload", "unaccounted-bytes", xmp)

    def private(f: Path) -> dict[str, Any]:
        payload = poison("private") * 64
        tif = write_tiff(f / "scene-PAN.tif", [Page(pixels(200, 200, seed=1),
                                                (*geo_tags(0.8, 0.8),
                                                 (TAG_PRIVATE, "B", len(payload), payload, True)))])
        return {"inputs": tif, "actions": ALLOW_OR_BLOCK, "extent_m": ext, "finest_m": 0.8,
                "poison": (poison("private"),)}
    b.add("ub_private_tag_payload", "unaccounted-bytes", private)

    def appended_fine(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 400, 0.4)
        with tif.open("ab") as fh:
            fh.write(poison("appended_fine") * 64)
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "extent_m": ext, "finest_m": 0.4,
                "poison": (poison("appended_fine"),)}
    b.add("ub_appended_bytes_on_degraded_product", "unaccounted-bytes", appended_fine)

    def appended_in_package(f: Path) -> dict[str, Any]:
        src = f / "src"
        tif = gf2_product(src, 200, 0.8)
        with tif.open("ab") as fh:
            fh.write(poison("pkg_appended") * 64)
        pkg = package(f / f"{GF2_STEM}.tar.gz", sorted(src.iterdir()), GF2_STEM)
        return {"inputs": pkg, "actions": ALLOW_OR_BLOCK, "extent_m": ext, "finest_m": 0.8,
                "poison": (poison("pkg_appended"),)}
    b.add("ub_appended_bytes_in_package", "unaccounted-bytes", appended_in_package)

    def sidecar_variant(name: str, mutate: Callable[[str], str]) -> None:
        def build(f: Path) -> dict[str, Any]:
            text = mutate(sidecar_xml(gf2_scene(200, 0.8)))
            tif = gf2_product(f, 200, 0.8, sidecar=text)
            return {"inputs": tif, "actions": BLOCK, "extent_m": ext, "finest_m": 0.8, "poison": (poison(name),)}
        b.add(name, "unaccounted-bytes", build)

    marker = {n: poison(n).decode() for n in ("ub_sidecar_dtd", "ub_sidecar_comment", "ub_sidecar_pi",
                                              "ub_sidecar_oversized")}
    sidecar_variant("ub_sidecar_dtd", lambda t: t.replace(
        "<ProductMetaData>",
        f'<!DOCTYPE ProductMetaData [<!ATTLIST ProductMetaData note CDATA "{marker["ub_sidecar_dtd"]}">]>\n'
        "<ProductMetaData>", 1))
    sidecar_variant("ub_sidecar_comment", lambda t: t.replace(
        "<ProductMetaData>", f"<ProductMetaData>\n    <!-- {marker['ub_sidecar_comment']} -->", 1))
    sidecar_variant("ub_sidecar_pi", lambda t: t.replace(
        "<ProductMetaData>", f"<?payload {marker['ub_sidecar_pi']}?>\n<ProductMetaData>", 1))
    sidecar_variant("ub_sidecar_oversized", lambda t: t.replace(
        "<CloudPercent>2</CloudPercent>",
        "<CloudPercent>2</CloudPercent>\n    <Note>" + marker["ub_sidecar_oversized"] * 400_000 + "</Note>", 1))


def _move_strip_and_fill_hole(tif: Path, marker: bytes) -> None:
    """Copy the single strip to the end of the file, point the IFD at the copy, fill the old place with ``marker``.

    The result reads exactly as before, but carries a non-zero region no tag accounts for.
    """
    with tifffile.TiffFile(tif) as tf:
        page = tf.pages[0]
        assert len(page.dataoffsets) == 1, "plain_geotiff writes one strip"
        offset, count = page.dataoffsets[0], page.databytecounts[0]
        value_at = page.tags["StripOffsets"].valueoffset
        dtype = page.tags["StripOffsets"].dtype
    data = bytearray(tif.read_bytes())
    strip = bytes(data[offset:offset + count])
    new_offset = len(data)
    data += strip
    fmt = "<Q" if int(dtype) == 16 else ("<H" if int(dtype) == 3 else "<I")
    import struct
    struct.pack_into(fmt, data, value_at, new_offset)
    fill = (marker * (count // len(marker) + 1))[:count]
    data[offset:offset + count] = fill
    tif.write_bytes(bytes(data))


def _georeferencing(b: _Builder) -> None:
    def scale_case(name: str, gsd: float, actions: frozenset[str], *, width: int = 200, **geo: Any) -> None:
        def build(f: Path) -> dict[str, Any]:
            tif = write_tiff(f / "scene-PAN.tif", [Page(pixels(width, width), tuple(geo_tags(gsd, gsd, **geo)))])
            extent = width * abs(gsd) if math.isfinite(gsd) and gsd != 0 else None
            return {"inputs": tif, "actions": actions,
                    "extent_m": (extent, extent) if extent else None,
                    "finest_m": abs(gsd) if extent else None}
        b.add(name, "georeferencing", build)

    scale_case("geo_pixel_scale_nan", math.nan, BLOCK)
    scale_case("geo_pixel_scale_inf", math.inf, BLOCK)
    scale_case("geo_pixel_scale_zero", 0.0, BLOCK)
    scale_case("geo_pixel_scale_negative", -0.4, RESAMPLE_OR_BLOCK)
    scale_case("geo_pixel_below_one_mm", 1e-7, BLOCK)
    scale_case("geo_pixel_beyond_40000_km", 5e7, BLOCK)
    scale_case("geo_no_crs_unit_unknown", 0.8, BLOCK, epsg=None)

    def feet(f: Path) -> dict[str, Any]:
        ft = 1200 / 3937  # US survey foot
        tif = write_tiff(f / "scene-PAN.tif", [Page(pixels(200, 200), tuple(
            geo_tags(1.5, 1.5, epsg=2263, origin=(980_000.0, 200_000.0))))])
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "extent_m": (300 * ft, 300 * ft),
                "finest_m": 1.5 * ft}
    b.add("geo_us_feet_not_metres", "georeferencing", feet)

    def geographic(f: Path) -> dict[str, Any]:
        deg = 3e-6
        tif = write_tiff(f / "scene-PAN.tif", [Page(pixels(200, 200), tuple(
            geo_tags(deg, deg, epsg=4326, kind="geographic", origin=(LON, LAT))))])
        per_lon, per_lat = metres_per_degree(LAT)
        x, y = 200 * deg * per_lon, 200 * deg * per_lat
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "extent_m": (x, y), "finest_m": min(x, y) / 200}
    b.add("geo_geographic_fine_degrees", "georeferencing", geographic)

    def mercator(f: Path) -> dict[str, Any]:
        lat = 70.0
        y0 = 6378137.0 * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
        tif = write_tiff(f / "scene-PAN.tif", [Page(pixels(200, 200), tuple(
            geo_tags(1.2, 1.2, epsg=3857, origin=(2_000_000.0, y0))))])
        ground = 1.2 * math.cos(math.radians(lat))
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "extent_m": (200 * ground, 200 * ground),
                "finest_m": ground}
    b.add("geo_web_mercator_70n", "georeferencing", mercator)

    def rotated(f: Path) -> dict[str, Any]:
        s = 0.4 / math.sqrt(2)
        tif = write_tiff(f / "scene-PAN.tif", [Page(pixels(400, 400), tuple(matrix_tags(s, -s, ORIGIN[0], -s, -s,
                                                                                   ORIGIN[1])))])
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "extent_m": (160.0, 160.0), "finest_m": 0.4}
    b.add("geo_rotated_45_degrees_fine", "georeferencing", rotated)

    def singular(f: Path) -> dict[str, Any]:
        tif = write_tiff(f / "scene-PAN.tif", [Page(pixels(200, 200), tuple(matrix_tags(0.8, 0.8, ORIGIN[0], 0.8, 0.8,
                                                                                   ORIGIN[1])))])
        return {"inputs": tif, "actions": BLOCK, "extent_m": None}
    b.add("geo_singular_matrix", "georeferencing", singular)

    def gcps(f: Path, collinear: bool) -> Path:
        points = []
        for i, (row, col) in enumerate([(0, 0), (0, 399), (399, 0), (399, 399), (200, 200)]):
            r = col if collinear else row
            points.append(GroundControlPoint(row=r, col=col, x=ORIGIN[0] + col * 0.4, y=ORIGIN[1] - r * 0.4, z=0.0,
                                             id=str(i)))
        return write_image(f / "scene-PAN.tif", pixels(400, 400), gcps=points, gcp_crs=CRS.from_epsg(UTM50N_EPSG))

    b.add("geo_collinear_gcps", "georeferencing",
          lambda f: {"inputs": gcps(f, True), "actions": BLOCK, "extent_m": (160.0, 160.0)})
    b.add("geo_gcps_fine", "georeferencing",
          lambda f: {"inputs": gcps(f, False), "actions": RESAMPLE_OR_BLOCK, "extent_m": (160.0, 160.0),
                     "finest_m": 0.4})

    def sidecar_lies(f: Path) -> dict[str, Any]:
        tif = gf2_product(f, 400, 0.4, rpb=False, image=False)
        text = sidecar_xml(gf2_scene(400, 0.4, image_gsd="0.81"))
        tif.with_suffix(".xml").write_text(text)
        write_rpb(tif.with_suffix(".rpb"), linear_rpc(LON, LAT, 0.4, 400, 400, height_off=50.0))
        write_tiff(tif, [Page(pixels(400, 400), tuple(geo_tags(0.4, 0.4)))])
        return {"inputs": tif, "actions": RESAMPLE_OR_BLOCK, "extent_m": (160.0, 160.0), "finest_m": 0.4}
    b.add("geo_sidecar_claims_coarser_than_image", "georeferencing", sidecar_lies)


def _evidence_files(b: _Builder) -> None:
    ext = (160.0, 160.0)

    def rpb(name: str, content: Callable[[Path], None]) -> None:
        def build(f: Path) -> dict[str, Any]:
            tif = gf2_product(f, 200, 0.8)
            content(tif.with_suffix(".rpb"))
            return {"inputs": tif, "actions": BLOCK, "extent_m": ext, "finest_m": 0.8}
        b.add(name, "evidence-file", build)

    rpb("ev_rpb_garbage", lambda p: p.write_bytes(b"satId = \"GF2\";\nBEGIN_GROUP = IMAGE\n\x00\xff\xfe garbage {{{\n"))
    rpb("ev_rpb_is_a_renamed_tiff", lambda p: write_tiff(p, [Page(pixels(400, 400))]) and None)
    rpb("ev_rpb_empty", lambda p: p.write_bytes(b""))

    def repeated(name: str, first: str, second: str, actions: frozenset[str]) -> None:
        def build(f: Path) -> dict[str, Any]:
            text = sidecar_xml(gf2_scene(200, 0.8, image_gsd=first)).replace(
                f"<ImageGSD>{first}</ImageGSD>", f"<ImageGSD>{first}</ImageGSD>\n    <ImageGSD>{second}</ImageGSD>")
            tif = gf2_product(f, 200, 0.8, sidecar=text)
            return {"inputs": tif, "actions": actions, "extent_m": ext, "finest_m": 0.8}
        b.add(name, "evidence-file", build)

    repeated("ev_sidecar_field_repeated_different", "0.8", "3.2", BLOCK)
    repeated("ev_sidecar_field_repeated_same", "0.8", "0.8", ALLOW)

    def tfw_garbage(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.8)
        (f / "scene-PAN.tfw").write_text("zero\npoint\n\x00\n4\n")
        return {"inputs": tif, "actions": BLOCK, "extent_m": ext, "finest_m": 0.8, "never_released": (".tfw",)}
    b.add("ev_world_file_garbage", "evidence-file", tfw_garbage)

    def aux_malformed(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.8)
        (f / "scene-PAN.tif.aux.xml").write_text("<PAMDataset><GeoTransform>1, 2, 3</GeoTr")
        return {"inputs": tif, "actions": BLOCK, "extent_m": ext, "finest_m": 0.8,
                "never_released": (".aux.xml",)}
    b.add("ev_aux_xml_malformed", "evidence-file", aux_malformed)

    def gf3_truncated(f: Path) -> dict[str, Any]:
        tif = _gf3_l2(f, 200, 1.5)
        meta = next(f.glob("*.meta.xml"))
        truncate(meta, 0.5)
        return {"inputs": tif, "actions": BLOCK, "extent_m": (300.0, 300.0), "finest_m": 1.5,
                "limit_m": SAR_LIMIT}
    b.add("ev_gf3_meta_truncated", "evidence-file", gf3_truncated)


def _gf3_l2(folder: Path, width: int, gsd: float, *, nominal: float | None = None) -> Path:
    """A GF-3 UFS L2 product (HH): ``.meta.xml`` and a UTM GeoTIFF at ``gsd``."""
    names = gf3_names("MYN", "UFS", 29108, LON, LAT, "20220219", "L2", "HH", 6303810)
    corners = ((LON - 0.002, LAT + 0.002), (LON + 0.002, LAT + 0.002), (LON - 0.002, LAT - 0.002),
               (LON + 0.002, LAT - 0.002))
    write_gf3_meta(folder / names.meta, imaging_mode="UFS", product_type="SLP", polar="HH", width=width,
                   height=width, nominal_resolution=nominal if nominal is not None else max(gsd * 2, gsd),
                   widthspace=gsd, heightspace=gsd, corners=corners)
    amp = np.clip(np.random.default_rng(6).rayleigh(300.0, (1, width, width)), 0, 65535).astype(np.uint16)
    return write_image(folder / names.tiffs["HH"], amp, crs=CRS.from_epsg(UTM50N_EPSG),
                       transform=Affine(gsd, 0, ORIGIN[0], 0, -gsd, ORIGIN[1]))


def _external(b: _Builder) -> None:
    def vrt(f: Path) -> dict[str, Any]:
        secret = f / "secret"
        secret.mkdir()
        src = write_tiff(secret / "source.tif", [Page(pixels(400, 400), (
            *geo_tags(0.4, 0.4), (TAG_PRIVATE, "B", 40, poison("vrt")[:40].ljust(40, b"."), True)))])
        text = (f'<VRTDataset rasterXSize="400" rasterYSize="400">\n'
                f"  <SRS>EPSG:32650</SRS>\n  <GeoTransform>{ORIGIN[0]}, 2.0, 0, {ORIGIN[1]}, 0, -2.0</GeoTransform>\n"
                f'  <VRTRasterBand dataType="UInt16" band="1"><SimpleSource>\n'
                f'    <SourceFilename relativeToVRT="0">{src}</SourceFilename><SourceBand>1</SourceBand>\n'
                f"  </SimpleSource></VRTRasterBand>\n</VRTDataset>\n")
        (f / "scene-PAN.tif").write_text(text)
        return {"inputs": f / "scene-PAN.tif", "actions": BLOCK, "extent_m": (160.0, 160.0), "finest_m": 0.4,
                "poison": (poison("vrt")[:40],)}
    b.add("ext_vrt_saved_as_tif", "external-reference", vrt)

    def vrt_in_package(f: Path) -> dict[str, Any]:
        src = f / "src"
        tif = gf2_product(src, 200, 0.8)
        target = write_tiff(f / "fine.tif", [Page(pixels(800, 800))])
        tif.write_text(f'<VRTDataset rasterXSize="200" rasterYSize="200"><VRTRasterBand dataType="UInt16" band="1">'
                       f'<SimpleSource><SourceFilename relativeToVRT="0">{target}</SourceFilename>'
                       f"<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>\n")
        pkg = package(f / f"{GF2_STEM}.tar.gz", sorted(src.iterdir()), GF2_STEM)
        return {"inputs": pkg, "actions": BLOCK, "extent_m": (160.0, 160.0), "finest_m": 0.2}
    b.add("ext_vrt_member_in_package", "external-reference", vrt_in_package)

    def hdf5(name: str, plant: Callable[[h5py.File, Path], None], marker: bool = False) -> None:
        def build(f: Path) -> dict[str, Any]:
            path = write_fy3_mersi(f, resolution_m=250)
            with h5py.File(path, "a") as h5:
                plant(h5, f)
            return {"inputs": path, "actions": BLOCK, "extent_m": (16 * 250.0, 20 * 250.0),
                    "poison": (poison(name),) if marker else (), "limit_m": MS_LIMIT}
        b.add(name, "external-reference", build)

    def ext_link(h5: h5py.File, f: Path) -> None:
        other = f / "secret.h5"
        with h5py.File(other, "w") as o:
            o["fine"] = np.zeros((400, 400), dtype=np.uint16)
        h5["linked"] = h5py.ExternalLink(str(other), "/fine")

    def ext_storage(h5: h5py.File, f: Path) -> None:
        raw = f / "secret.raw"
        raw.write_bytes((poison("ext_hdf5_external_storage") * 4000)[:400 * 400 * 2])
        h5.create_dataset("external", shape=(400, 400), dtype="<u2", external=[(str(raw), 0, 400 * 400 * 2)])

    def virtual(h5: h5py.File, f: Path) -> None:
        other = f / "secret.h5"
        with h5py.File(other, "w") as o:
            o["fine"] = np.zeros((400, 400), dtype=np.uint16)
        layout = h5py.VirtualLayout(shape=(400, 400), dtype="u2")
        layout[:] = h5py.VirtualSource(str(other), "fine", shape=(400, 400))
        h5.create_virtual_dataset("virtual", layout)

    hdf5("ext_hdf5_external_link", ext_link)
    hdf5("ext_hdf5_external_storage", ext_storage, marker=True)
    hdf5("ext_hdf5_virtual_dataset", virtual)


def _damaged(b: _Builder) -> None:
    ext = (160.0, 160.0)

    def trunc(name: str, width: int, gsd: float, keep: float) -> None:
        def build(f: Path) -> dict[str, Any]:
            # tifffile writes the IFD before the pixels: cutting the tail leaves strips past EOF.
            tif = truncate(plain_geotiff(f / "scene-PAN.tif", width, gsd), keep)
            return {"inputs": tif, "actions": BLOCK, "extent_m": ext, "finest_m": gsd}
        b.add(name, "damaged", build)

    trunc("dmg_truncated_would_be_allowed", 200, 0.8, 0.6)
    trunc("dmg_truncated_would_be_degraded", 400, 0.4, 0.6)
    trunc("dmg_header_only", 200, 0.8, 0.0001)

    def loop(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.8)
        data = bytearray(tif.read_bytes())
        first = int.from_bytes(data[4:8], "little")
        count = int.from_bytes(data[first:first + 2], "little")
        # The next-IFD pointer of the only IFD points back at itself.
        data[first + 2 + 12 * count:first + 6 + 12 * count] = first.to_bytes(4, "little")
        tif.write_bytes(bytes(data))
        return {"inputs": tif, "actions": BLOCK, "extent_m": ext, "finest_m": 0.8}
    b.add("dmg_ifd_chain_loops", "damaged", loop)

    def empty(f: Path) -> dict[str, Any]:
        (f / "scene-PAN.tif").write_bytes(b"")
        return {"inputs": f / "scene-PAN.tif", "actions": BLOCK}
    b.add("dmg_zero_length_tif", "damaged", empty)

    def in_package(f: Path) -> dict[str, Any]:
        src = f / "src"
        tif = gf2_product(src, 200, 0.8)
        truncate(tif, 0.5)
        pkg = package(f / f"{GF2_STEM}.tar.gz", sorted(src.iterdir()), GF2_STEM)
        return {"inputs": pkg, "actions": BLOCK, "extent_m": ext, "finest_m": 0.8}
    b.add("dmg_truncated_member_in_package", "damaged", in_package)


def _special(b: _Builder) -> None:
    ext = (160.0, 160.0)

    def fifo_in_dir(f: Path) -> dict[str, Any]:
        d = f / "products"
        d.mkdir()
        plain_geotiff(d / "scene-PAN.tif", 200, 0.8)
        os.mkfifo(d / "pipe.tif")
        return {"inputs": d, "actions": ALLOW_OR_BLOCK, "exit": {0, 4}, "extent_m": ext, "finest_m": 0.8,
                "subprocess_only": True}
    b.add("sp_fifo_inside_walked_directory", "special-file", fifo_in_dir)

    def fifo_named(f: Path) -> dict[str, Any]:
        os.mkfifo(f / "scene-PAN.tif")
        return {"inputs": f / "scene-PAN.tif", "actions": BLOCK, "subprocess_only": True}
    b.add("sp_fifo_named_directly", "special-file", fifo_named)

    def zero_link_in_dir(f: Path) -> dict[str, Any]:
        d = f / "products"
        d.mkdir()
        plain_geotiff(d / "scene-PAN.tif", 200, 0.8)
        (d / "endless.tif").symlink_to("/dev/zero")
        return {"inputs": d, "actions": ALLOW_OR_BLOCK, "exit": {0, 4}, "extent_m": ext, "finest_m": 0.8,
                "subprocess_only": True}
    b.add("sp_dev_zero_link_inside_directory", "special-file", zero_link_in_dir)

    b.add("sp_dev_zero_named_directly", "special-file",
          lambda f: {"inputs": Path("/dev/zero"), "actions": BLOCK, "subprocess_only": True})
    b.add("sp_dev_null_named_directly", "special-file",
          lambda f: {"inputs": Path("/dev/null"), "actions": BLOCK, "subprocess_only": True})

    def link_loop(f: Path) -> dict[str, Any]:
        d = f / "products"
        d.mkdir()
        plain_geotiff(d / "scene-PAN.tif", 200, 0.8)
        (d / "loop").symlink_to(d)
        (d / "a.tif").symlink_to(d / "b.tif")
        (d / "b.tif").symlink_to(d / "a.tif")
        return {"inputs": d, "actions": ALLOW_OR_BLOCK, "exit": {0, 4}, "extent_m": ext, "finest_m": 0.8,
                "subprocess_only": True}
    b.add("sp_symlink_loops_inside_directory", "special-file", link_loop)


def _names_numbers(b: _Builder) -> None:
    ext = (160.0, 160.0)

    def non_utf8(f: Path) -> dict[str, Any]:
        d = f / "products"
        d.mkdir()
        name = os.fsdecode(b"scene-\xff\xfe-\x1b[31m-PAN.tif")
        plain_geotiff(d / name, 200, 0.8)
        return {"inputs": d, "actions": ALLOW, "extent_m": ext, "finest_m": 0.8}
    b.add("nn_name_not_utf8_with_escape", "names-and-numbers", non_utf8)

    def newline(f: Path) -> dict[str, Any]:
        d = f / "products"
        d.mkdir()
        plain_geotiff(d / "scene\nALLOW forged-PAN.tif", 200, 0.8)
        return {"inputs": d, "actions": ALLOW, "extent_m": ext, "finest_m": 0.8}
    b.add("nn_name_with_newline", "names-and-numbers", newline)

    def long_name(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / ("s" * 232 + "-PAN.tif"), 200, 0.8)
        return {"inputs": tif, "actions": ALLOW, "extent_m": ext, "finest_m": 0.8}
    b.add("nn_name_240_chars", "names-and-numbers", long_name)

    for label, value in (("1e400", "1e400"), ("1e-400", "1e-400"), ("minus_zero", "-0"),
                         ("twenty_nines", "99999999999999999999999"), ("hex_float", "0x1p-30"),
                         ("nan", "NaN")):
        def build(f: Path, value: str = value) -> dict[str, Any]:
            text = sidecar_xml(gf2_scene(200, 0.8)).replace("<ImageGSD>0.8</ImageGSD>", f"<ImageGSD>{value}</ImageGSD>")
            tif = gf2_product(f, 200, 0.8, sidecar=text)
            return {"inputs": tif, "actions": BLOCK, "extent_m": ext, "finest_m": 0.8}
        b.add(f"nn_sidecar_gsd_{label}", "names-and-numbers", build)

    def width_huge(f: Path) -> dict[str, Any]:
        text = sidecar_xml(gf2_scene(200, 0.8)).replace("<WidthInPixels>200</WidthInPixels>",
                                                        "<WidthInPixels>99999999999999999999999</WidthInPixels>")
        tif = gf2_product(f, 200, 0.8, sidecar=text)
        return {"inputs": tif, "actions": BLOCK, "extent_m": ext, "finest_m": 0.8}
    b.add("nn_sidecar_width_huge", "names-and-numbers", width_huge)


def _policy_files(b: _Builder) -> None:
    def policy(name: str, write: Callable[[Path], Path]) -> None:
        def build(f: Path) -> dict[str, Any]:
            tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.8)
            pol = write(f)
            return {"inputs": tif, "actions": frozenset(), "exit": {2}, "extra_args": ("--policy", str(pol)),
                    "extent_m": (160.0, 160.0)}
        b.add(name, "policy-file", build)

    def nested(f: Path) -> Path:
        p = f / "nested.toml"
        p.write_text("x = " + "[" * 10_000 + "]" * 10_000 + "\n")
        return p

    def nested_tables(f: Path) -> Path:
        p = f / "tables.toml"
        p.write_text("x = " + "{a = " * 10_000 + "1" + "}" * 10_000 + "\n")
        return p

    def huge(f: Path) -> Path:
        p = f / "huge.toml"
        with p.open("wb") as fh:
            fh.write(b'schema = "rspolicy-policy/1"\n')
            line = b"# " + b"x" * 1021 + b"\n"
            for _ in range(50 * 1024):
                fh.write(line)
        return p

    def not_utf8(f: Path) -> Path:
        p = f / "latin1.toml"
        p.write_bytes(b'schema = "rspolicy-policy/1"\nname = "\xff\xfe"\n')
        return p

    def nan_limit(f: Path) -> Path:
        p = f / "nan.toml"
        p.write_text('schema = "rspolicy-policy/1"\n[policy]\nname = "x"\nversion = "1"\ntitle = "x"\n'
                     'authority = "x"\n[[rule]]\nid = "pan"\nclass = "panchromatic"\ncomparator = "<"\n'
                     'limit_m = nan\naction = "resample"\ntarget_m = 0.5\n')
        return p

    def directory(f: Path) -> Path:
        p = f / "policy.toml"
        p.mkdir()
        return p

    policy("pol_nested_10000_arrays", nested)
    policy("pol_nested_10000_inline_tables", nested_tables)
    policy("pol_50_mb", huge)
    policy("pol_not_utf8", not_utf8)
    policy("pol_nan_limit", nan_limit)
    policy("pol_is_a_directory", directory)


def _output_dirs(b: _Builder) -> None:
    ext = (160.0, 160.0)

    def under_file(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.8)
        (f / "afile").write_text("a regular file\n")
        return {"inputs": tif, "actions": ALLOW_OR_BLOCK, "exit": {1}, "outdir": f / "afile" / "out",
                "extent_m": ext, "finest_m": 0.8}
    b.add("out_outdir_under_regular_file", "output-dir", under_file)

    def link_at_name(name: str, gsd: float, width: int, victim_exists: bool) -> None:
        def build(f: Path) -> dict[str, Any]:
            d = f / "products"
            d.mkdir()
            tif = plain_geotiff(d / "scene-PAN.tif", width, gsd)
            outside = f / "outside"
            outside.mkdir()
            if victim_exists:
                (outside / "victim.tif").write_bytes(b"victim: must stay as it is\n")
            out = f / "out"
            out.mkdir()
            (out / "scene-PAN.tif").symlink_to(outside / "victim.tif")
            actions = ALLOW_OR_BLOCK if gsd >= PAN_LIMIT else RESAMPLE_OR_BLOCK
            return {"inputs": tif, "actions": actions, "exit": {EXIT[a] for a in actions} | {1}, "outdir": out,
                    "extent_m": ext, "finest_m": gsd}
        b.add(name, "output-dir", build)

    link_at_name("out_symlink_at_output_name_to_existing", 0.8, 200, True)
    link_at_name("out_symlink_at_output_name_dangling", 0.8, 200, False)
    link_at_name("out_symlink_at_degraded_output_name", 0.4, 400, False)

    def link_sub(f: Path) -> dict[str, Any]:
        src = f / "products"
        tif = gf2_product(src, 200, 0.8)
        pkg = package(f / f"{GF2_STEM}.tar.gz", sorted(src.iterdir()), GF2_STEM)
        outside = f / "outside"
        outside.mkdir()
        out = f / "out"
        out.mkdir()
        # Every sub-folder name the outputs could go into points outside OUTDIR.
        for sub in ("products", GF2_STEM, f"{GF2_STEM}.tar.gz", "tmp", ".rspolicy-stage"):
            (out / sub).symlink_to(outside, target_is_directory=True)
        del tif
        return {"inputs": (src, pkg), "actions": ALLOW_OR_BLOCK, "exit": {0, 1, 4}, "outdir": out,
                "extent_m": ext, "finest_m": 0.8}
    b.add("out_symlinked_subfolders_in_outdir", "output-dir", link_sub)


def _what_leaves(b: _Builder) -> None:
    def slc(f: Path) -> dict[str, Any]:
        rng = np.random.default_rng(9)
        data = (rng.normal(0, 100, (1, 200, 200)) + 1j * rng.normal(0, 100, (1, 200, 200))).astype(np.complex64)
        tif = write_image(f / "slc.tif", data, crs=CRS.from_epsg(UTM50N_EPSG),
                          transform=Affine(0.5, 0, ORIGIN[0], 0, -0.5, ORIGIN[1]))
        return {"inputs": tif, "actions": RESAMPLE, "extent_m": (100.0, 100.0), "finest_m": 0.5,
                "limit_m": SAR_LIMIT, "rescreen_class": "sar"}
    b.add("wl_complex_slc_without_sidecar", "what-leaves", slc)

    def pkg_allowed(f: Path) -> dict[str, Any]:
        src = f / "src"
        tif = gf2_product(src, 200, 0.8)
        jpeg(tif.with_suffix(".jpg"), 64, 64)
        (src / "order.xml").write_text(order_xml())
        pkg = package(f / f"{GF2_STEM}.tar.gz", sorted(src.iterdir()), GF2_STEM)
        return {"inputs": pkg, "actions": ALLOW, "extent_m": (160.0, 160.0), "finest_m": 0.8,
                "never_released": (".jpg", "order.xml")}
    b.add("wl_package_allowed_browse_and_order_stay", "what-leaves", pkg_allowed)

    def pkg_fine(f: Path) -> dict[str, Any]:
        src = f / "src"
        tif = gf2_product(src, 400, 0.3)
        jpeg(tif.with_suffix(".jpg"), 100, 100)
        pkg = package(f / f"{GF2_STEM}.tar.gz", sorted(src.iterdir()), GF2_STEM)
        return {"inputs": pkg, "actions": RESAMPLE, "extent_m": (120.0, 120.0), "finest_m": 0.3,
                "never_released": (".jpg",)}
    b.add("wl_package_fine_pan_degraded", "what-leaves", pkg_fine)

    def gf2_fine(f: Path) -> dict[str, Any]:
        tif = gf2_product(f, 400, 0.3)
        return {"inputs": tif, "actions": RESAMPLE, "extent_m": (120.0, 120.0), "finest_m": 0.3}
    b.add("wl_gf2_pan_l1a_degraded", "what-leaves", gf2_fine)

    def ms_fine(f: Path) -> dict[str, Any]:
        tif = gf2_product(f, 160, 1.0, kind="MSS1")
        return {"inputs": tif, "actions": RESAMPLE, "extent_m": (160.0, 160.0), "finest_m": 1.0,
                "limit_m": MS_LIMIT}
    b.add("wl_gf2_mss_degraded", "what-leaves", ms_fine)

    def pan_at_limit(f: Path) -> dict[str, Any]:
        tif = plain_geotiff(f / "scene-PAN.tif", 200, 0.5)
        return {"inputs": tif, "actions": ALLOW, "extent_m": (100.0, 100.0), "finest_m": 0.5}
    b.add("wl_plain_pan_exactly_at_limit", "what-leaves", pan_at_limit)

    def gf3_fine(f: Path) -> dict[str, Any]:
        tif = _gf3_l2(f, 200, 0.5, nominal=1.0)
        return {"inputs": tif, "actions": RESAMPLE, "extent_m": (100.0, 100.0), "finest_m": 0.5,
                "limit_m": SAR_LIMIT}
    b.add("wl_gf3_l2_degraded", "what-leaves", gf3_fine)

    def gf3_limit(f: Path) -> dict[str, Any]:
        tif = _gf3_l2(f, 100, 1.0, nominal=1.0)
        return {"inputs": tif, "actions": ALLOW, "extent_m": (100.0, 100.0), "finest_m": 1.0,
                "limit_m": SAR_LIMIT}
    b.add("wl_gf3_l2_exactly_at_limit", "what-leaves", gf3_limit)


def build_corpus(root: Path) -> list[Case]:
    """Write every hostile case into its own folder under ``root`` and describe them.

    Parameters
    ----------
    root
        An empty or missing folder.

    Returns
    -------
    list[Case]
        The cases, in category order.
    """
    root.mkdir(parents=True, exist_ok=True)
    builder = _Builder(root)
    for part in (_multi_image, _companions, _unaccounted, _georeferencing, _evidence_files, _external, _damaged,
                 _special, _names_numbers, _policy_files, _output_dirs, _what_leaves):
        part(builder)
    return builder.cases


def case_table(cases: Iterable[Case]) -> str:
    """One line per case: category, name, acceptable actions and exits, why."""
    lines = [f"{'category':<20}{'case':<45}{'actions':<18}{'exit':<10}why"]
    for c in cases:
        actions = ",".join(sorted(c.expected_actions)) or "-"
        exits = ",".join(str(e) for e in sorted(c.expected_exit))
        lines.append(f"{c.category:<20}{c.name:<45}{actions:<18}{exits:<10}{c.why}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``python -m tests.hostile.corpus OUTDIR``: write the corpus and print the case table."""
    if len(argv) != 2:
        print("usage: python -m tests.hostile.corpus OUTDIR", file=sys.stderr)
        return 2
    cases = build_corpus(Path(argv[1]))
    print(case_table(cases))
    print(f"{len(cases)} cases")
    return 0



#: One sentence per case: what it tries.
WHY: dict[str, str] = {
    "mi_extra_full_page_no_georef": "a 0.4 m second page without georeferencing hides behind a 1.6 m main image",
    "mi_subifd_finer": "a SubIFD four times finer than the main image it hangs from",
    "mi_reduced_page_larger_than_main": "a page flagged as a reduced-resolution overview is larger than the main image",
    "mi_mask_page_finer": "a transparency mask page four times finer than the image",
    "mi_honest_overviews_allowed": "a 0.8 m image with true, coarser internal overviews may leave as it is",
    "mi_fine_main_with_overviews": "a 0.4 m image with overviews: only a degraded main image may leave",
    "mi_second_page_own_georef_finer": "a second page with its own 0.4 m geotags behind a 1.6 m main image",
    "mi_fine_page_after_twenty_small": "the fine page is the 22nd in the IFD chain, after twenty harmless thumbnails",
    "mi_bigtiff_reduced_page_finer": "the same hidden fine page in a BigTIFF",
    "mi_package_hidden_fine_page": "a GF-2 package whose image hides a 0.2 m second page",
    "comp_unknown_dat_same_stem": "a companion of unknown kind (same stem, .dat) must be withheld, never released",
    "comp_xml_unknown_root": "an XML companion with an unknown root is not a sidecar and must be withheld",
    "comp_world_file_claims_finer": "a .tfw claiming 0.2 m beside a 0.8 m GeoTIFF is evidence: the finest wins",
    "comp_world_file_claims_coarser": "a .tfw claiming 2 m must not hide the image's own 0.4 m",
    "comp_wld_only_georeferencing": "an image georeferenced only by a .wld at 0.4 m",
    "comp_aux_xml_geotransform_finer": "an .aux.xml geotransform of 0.2 m GDAL would silently apply",
    "comp_aux_xml_never_leaves": "an .aux.xml carrying a payload never leaves, even with an allowed product",
    "comp_external_ovr_finer": "an external .ovr four times finer than the image",
    "comp_external_msk_finer": "an external .msk four times finer than the image",
    "comp_browse_jpg_finer_than_limit": "a browse JPEG with more pixels across the scene than the limit allows",
    "comp_browse_png_never_released": "a coarse browse PNG is measured but never released",
    "comp_rpc_txt_only_evidence": "an image whose only georeferencing is a 0.4 m _rpc.txt",
    "ub_bytes_appended_after_structure": "a payload appended after the TIFF structure of an allowed image",
    "ub_nonzero_hole_inside_file": "a payload in a region inside the TIFF no tag points to",
    "ub_xmp_tag_payload": "a payload in the XMP tag of an allowed image",
    "ub_private_tag_payload": "a payload in a private tag of an allowed image",
    "ub_appended_bytes_on_degraded_product": "a payload appended to an image that must be degraded",
    "ub_appended_bytes_in_package": "a payload appended to an allowed image inside a package",
    "ub_sidecar_dtd": "a sidecar with a DTD carrying a payload",
    "ub_sidecar_comment": "a sidecar with a comment carrying a payload",
    "ub_sidecar_pi": "a sidecar with a processing instruction carrying a payload",
    "ub_sidecar_oversized": "a 16 MB sidecar, its bulk a payload element",
    "geo_pixel_scale_nan": "a NaN pixel scale",
    "geo_pixel_scale_inf": "an infinite pixel scale",
    "geo_pixel_scale_zero": "a zero pixel scale",
    "geo_pixel_scale_negative": "a negative 0.4 m pixel scale is still 0.4 m",
    "geo_pixel_below_one_mm": "an absurd pixel of 1e-7 m",
    "geo_pixel_beyond_40000_km": "an absurd pixel of 50,000 km",
    "geo_no_crs_unit_unknown": "a pixel scale with no CRS: the unit is unknown",
    "geo_us_feet_not_metres": "1.5 US feet is 0.457 m, finer than 0.5 m",
    "geo_geographic_fine_degrees": "3e-6 degree pixels at 40N are about 0.26 x 0.33 m",
    "geo_web_mercator_70n": "1.2 Web Mercator metres at 70N are 0.41 m on the ground",
    "geo_rotated_45_degrees_fine": "a 45-degree rotated grid of 0.4 m pixels",
    "geo_singular_matrix": "a singular transformation matrix",
    "geo_collinear_gcps": "GCPs all on one line cannot give a grid",
    "geo_gcps_fine": "GCPs fitting a 0.4 m grid",
    "geo_sidecar_claims_coarser_than_image": "a sidecar ImageGSD of 0.81 m over an image whose geotags say 0.4 m",
    "ev_rpb_garbage": "an .rpb that is garbage",
    "ev_rpb_is_a_renamed_tiff": "an .rpb that is a TIFF renamed",
    "ev_rpb_empty": "an empty .rpb",
    "ev_sidecar_field_repeated_different": "ImageGSD given twice with different values",
    "ev_sidecar_field_repeated_same": "ImageGSD given twice with the same value is not a conflict",
    "ev_world_file_garbage": "a .tfw that does not parse",
    "ev_aux_xml_malformed": "an .aux.xml that does not parse",
    "ev_gf3_meta_truncated": "a GF-3 .meta.xml cut in half",
    "ext_vrt_saved_as_tif": "a VRT saved as .tif pointing at a fine image elsewhere",
    "ext_vrt_member_in_package": "a package whose image member is a VRT pointing outside",
    "ext_hdf5_external_link": "an HDF5 product with an external link",
    "ext_hdf5_external_storage": "an HDF5 dataset stored in an external raw file",
    "ext_hdf5_virtual_dataset": "an HDF5 virtual dataset mapping another file",
    "dmg_truncated_would_be_allowed": "a truncated 0.8 m TIFF: strips past EOF",
    "dmg_truncated_would_be_degraded": "a truncated 0.4 m TIFF: strips past EOF",
    "dmg_header_only": "a TIFF cut to its first bytes",
    "dmg_ifd_chain_loops": "an IFD chain that points back at itself",
    "dmg_zero_length_tif": "an empty .tif",
    "dmg_truncated_member_in_package": "a package holding a truncated image",
    "sp_fifo_inside_walked_directory": "a FIFO named .tif inside a walked directory",
    "sp_fifo_named_directly": "a FIFO named on the command line",
    "sp_dev_zero_link_inside_directory": "a .tif symlink to /dev/zero inside a walked directory",
    "sp_dev_zero_named_directly": "/dev/zero named on the command line",
    "sp_dev_null_named_directly": "/dev/null named on the command line",
    "sp_symlink_loops_inside_directory": "symlink loops inside a walked directory",
    "nn_name_not_utf8_with_escape": "a file name that is not UTF-8 and holds a terminal escape",
    "nn_name_with_newline": "a file name with a newline that forges an output line",
    "nn_name_240_chars": "a 240-character file name",
    "nn_sidecar_gsd_1e400": "ImageGSD 1e400 overflows to infinity",
    "nn_sidecar_gsd_1e-400": "ImageGSD 1e-400 underflows to zero",
    "nn_sidecar_gsd_minus_zero": "ImageGSD -0",
    "nn_sidecar_gsd_twenty_nines": "ImageGSD 99999999999999999999999",
    "nn_sidecar_gsd_hex_float": "ImageGSD written as the hex float 0x1p-30",
    "nn_sidecar_gsd_nan": "ImageGSD NaN",
    "nn_sidecar_width_huge": "WidthInPixels 99999999999999999999999",
    "pol_nested_10000_arrays": "a policy file of arrays nested 10,000 deep",
    "pol_nested_10000_inline_tables": "a policy file of inline tables nested 10,000 deep",
    "pol_50_mb": "a 50 MB policy file",
    "pol_not_utf8": "a policy file that is not UTF-8",
    "pol_nan_limit": "a policy whose limit is NaN",
    "pol_is_a_directory": "a policy path that is a directory",
    "out_outdir_under_regular_file": "OUTDIR below a regular file cannot be created",
    "out_symlink_at_output_name_to_existing": "a symlink at the output's name points at a file outside OUTDIR",
    "out_symlink_at_output_name_dangling": "a dangling symlink at the output's name points outside OUTDIR",
    "out_symlink_at_degraded_output_name": "a symlink at a degraded output's name points outside OUTDIR",
    "out_symlinked_subfolders_in_outdir": "sub-folders of OUTDIR the outputs could go into point outside",
    "wl_complex_slc_without_sidecar": "a 0.5 m complex SLC GeoTIFF without sidecar is degraded to 1 m, still SAR",
    "wl_package_allowed_browse_and_order_stay": "an allowed package: browse and order file stay behind",
    "wl_package_fine_pan_degraded": "a 0.3 m PAN package: only degraded images leave, never the browse",
    "wl_gf2_pan_l1a_degraded": "a 0.3 m GF-2 PAN L1A product is degraded to 0.5 m",
    "wl_gf2_mss_degraded": "a 1.0 m GF-2 MSS product is degraded to 2 m",
    "wl_plain_pan_exactly_at_limit": "a 0.5 m image is at the limit and may leave",
    "wl_gf3_l2_degraded": "a 0.5 m GF-3 L2 product is degraded to 1 m",
    "wl_gf3_l2_exactly_at_limit": "a 1.0 m GF-3 L2 product is at the limit and may leave",
}


if __name__ == "__main__":
    sys.exit(main(sys.argv))
