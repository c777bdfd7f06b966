"""rebuild_raster: an allowed image rewritten pixel for pixel, carrying only what rspolicy knows.

Also the read-error rule shared with degrading: a damaged source is never
written out with missing parts filled in.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import tifffile
from affine import Affine
from rasterio import shutil as rio_shutil
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning
from rasterio.rpc import RPC

from rspolicy import degrade
from rspolicy.degrade import MAX_TAG_VALUE_BYTES, DegradePlan, allowed_tags, degrade_raster, rebuild_raster
from rspolicy.errors import ProductReadError
from rspolicy.resample import area_average
from rspolicy.samples.gf_optical import linear_rpc

UTM50N = CRS.from_epsg(32650)
TRANSFORM = Affine(0.5, 0, 448_000.0, 0, -0.5, 4_417_000.0)
PROVENANCE = {"RSPOLICY_DECISION_ID": "0190-test", "RSPOLICY_POLICY": "cnsa-2022 1"}


def _pixels(dtype: str, bands: int, rows: int, cols: int) -> np.ndarray:
    rng = np.random.default_rng(rows * cols + bands)
    if dtype == "complex64":
        real = rng.normal(0, 100, (bands, rows, cols)) + 1j * rng.normal(0, 100, (bands, rows, cols))
        return real.astype(np.complex64)
    if np.dtype(dtype).kind == "f":
        return rng.normal(0, 1000, (bands, rows, cols)).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, (bands, rows, cols), dtype=dtype, endpoint=True)


def _open(path: Path, mode: str = "r", **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path, mode, **kwargs)


def _source(path: Path, pixels: np.ndarray, **profile: Any) -> Path:
    extra = {k: profile.pop(k) for k in ("tags", "band_tags", "descriptions", "colorinterp", "units", "scales",
                                         "offsets", "rpcs", "gcps", "mask", "overviews") if k in profile}
    bands, rows, cols = pixels.shape
    with rasterio.Env(GDAL_PAM_ENABLED="NO", GDAL_TIFF_INTERNAL_MASK=True), \
            _open(path, "w", driver="GTiff", width=cols, height=rows, count=bands, dtype=pixels.dtype,
                  **profile) as dst:
        dst.write(pixels)
        dst.update_tags(**extra.get("tags", {}))
        for band, tags in extra.get("band_tags", {}).items():
            dst.update_tags(band, **tags)
        for band, text in enumerate(extra.get("descriptions", ()), start=1):
            dst.set_band_description(band, text)
        for band, text in enumerate(extra.get("units", ()), start=1):
            dst.set_band_unit(band, text)
        if "colorinterp" in extra:
            dst.colorinterp = extra["colorinterp"]
        if "scales" in extra:
            dst.scales, dst.offsets = extra["scales"], extra["offsets"]
        if "rpcs" in extra:
            dst.rpcs = extra["rpcs"]
        if "gcps" in extra:
            dst.gcps = (extra["gcps"], CRS.from_epsg(4326))
        if "mask" in extra:
            dst.write_mask(extra["mask"])
    if extra.get("overviews"):
        with rasterio.Env(GDAL_PAM_ENABLED="NO"), _open(path, "r+") as dst:
            dst.build_overviews([2, 4])
    return path


def _read(path: Path) -> np.ndarray:
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), _open(path) as ds:
        data: np.ndarray = ds.read()
        return data


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Several chunks per image, and a record of the windows read."""
    windows: list[tuple[int, int]] = []
    original = degrade.block_row_windows

    def recorded(*args: int) -> Iterator[tuple[int, int]]:
        for window in original(*args):
            windows.append(window)
            yield window

    monkeypatch.setattr(degrade, "STRIP_BYTES", 60_000)
    monkeypatch.setattr(degrade, "block_row_windows", recorded)
    return windows


LAYOUTS = [
    pytest.param("uint16", 1, {"tiled": True, "blockxsize": 64, "blockysize": 64, "compress": "deflate",
                               "nodata": 0}, "deflate", id="u16-tiled-deflate-nodata"),
    pytest.param("uint8", 3, {"compress": "lzw", "photometric": "RGB"}, "lzw", id="u8-rgb-striped-lzw"),
    pytest.param("int16", 4, {"tiled": True, "blockxsize": 128, "blockysize": 128, "compress": "zstd",
                              "interleave": "band"}, "zstd", id="i16-band-interleaved-zstd"),
    pytest.param("float32", 2, {"compress": "packbits", "nodata": -9999.0}, "packbits", id="f32-packbits"),
    pytest.param("complex64", 1, {"tiled": True, "blockxsize": 64, "blockysize": 64}, "deflate",
                 id="c64-tiled-raw"),
    pytest.param("uint16", 2, {"compress": "lzma"}, "deflate", id="u16-lzma-becomes-deflate"),
]


@pytest.mark.parametrize(("dtype", "bands", "profile", "compression"), LAYOUTS)
def test_pixel_exact_on_every_layout(tmp_path: Path, small_chunks: list[tuple[int, int]], dtype: str, bands: int,
                                     profile: dict[str, Any], compression: str) -> None:
    pixels = _pixels(dtype, bands, 600, 530)
    src = _source(tmp_path / "src.tif", pixels, crs=UTM50N, transform=TRANSFORM, **profile)
    out = rebuild_raster(src, tmp_path / "out.tif", tags=PROVENANCE, threads=2)
    assert (out.width, out.height, out.dtype) == (530, 600, dtype)
    np.testing.assert_array_equal(_read(out.path), pixels)
    assert len(small_chunks) > 3  # streamed, not read whole
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), _open(out.path) as ds, _open(src) as s:
        assert ds.compression is not None and ds.compression.value.lower() == compression
        assert ds.nodata == s.nodata or (np.isnan(ds.nodata) and np.isnan(s.nodata))
        assert ds.crs == UTM50N and ds.transform == TRANSFORM
        assert ds.colorinterp == s.colorinterp


def test_metadata_kept_and_bounded(tmp_path: Path) -> None:
    pixels = _pixels("uint16", 4, 200, 300)
    gcps = [GroundControlPoint(row=r, col=c, x=116.0 + c * 1e-5, y=40.0 - r * 1e-5, z=12.5)
            for r in (0, 199) for c in (0, 299)]
    long_value = "x" * (MAX_TAG_VALUE_BYTES + 1)
    src = _source(tmp_path / "src.tif", pixels, compress="deflate", gcps=gcps,
                  tags={"SENSOR": "PMS1", "NOTES": long_value,
                        "RSPOLICY_TARGET_GSD_M": "0.1", "MULTI": "a\nb"},
                  band_tags={1: {"WAVELENGTH": "450-520"}},
                  descriptions=("blue", "green", "red", "nir"),
                  colorinterp=[ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined],
                  units=("W/m2/sr/um", "", "", ""), scales=(0.5, 1.0, 1.0, 2.0), offsets=(1.0, 0.0, 0.0, -3.0))
    out = rebuild_raster(src, tmp_path / "out.tif", tags=PROVENANCE)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), _open(out.path) as ds:
        tags = ds.tags()
        assert tags["AREA_OR_POINT"] == "Area" and tags["SENSOR"] == "PMS1"
        assert tags["RSPOLICY_DECISION_ID"] == "0190-test"
        assert "NOTES" not in tags and "MULTI" not in tags and "RSPOLICY_TARGET_GSD_M" not in tags
        assert ds.tags(1)["WAVELENGTH"] == "450-520"
        assert ds.descriptions == ("blue", "green", "red", "nir")
        assert ds.colorinterp == (ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined)
        assert ds.units[0] == "W/m2/sr/um"
        assert ds.scales == (0.5, 1.0, 1.0, 2.0) and ds.offsets == (1.0, 0.0, 0.0, -3.0)
        got, crs = ds.gcps
        assert crs == CRS.from_epsg(4326)
        assert [(g.row, g.col, g.x, g.y, g.z) for g in got] == [(g.row, g.col, g.x, g.y, g.z) for g in gcps]
        np.testing.assert_array_equal(ds.read(), pixels)


def test_pixel_is_point_grid_kept(tmp_path: Path) -> None:
    pixels = _pixels("uint16", 1, 64, 80)
    src = _source(tmp_path / "src.tif", pixels, crs=UTM50N, transform=TRANSFORM, tags={"AREA_OR_POINT": "Point"})
    out = rebuild_raster(src, tmp_path / "out.tif", tags={})
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), _open(out.path) as ds, _open(src) as s:
        assert ds.tags()["AREA_OR_POINT"] == "Point" and ds.transform == s.transform


def test_allowed_tags_are_bounded() -> None:
    many = {f"ITEM_{i:03d}": str(i) for i in range(100)}
    kept = allowed_tags({**many, "bad name": "x", "STATISTICS_MEAN": "3"})
    assert len(kept) == degrade.MAX_TAGS and "bad name" not in kept and "STATISTICS_MEAN" not in kept


def test_rpcs_own_else_given(tmp_path: Path) -> None:
    pixels = _pixels("uint16", 1, 100, 120)
    own = linear_rpc(116.0, 40.0, 0.5, 120, 100)
    given = linear_rpc(100.0, 30.0, 0.8, 120, 100)
    with_own = _source(tmp_path / "own.tif", pixels, rpcs=own)
    out = rebuild_raster(with_own, tmp_path / "a.tif", tags={}, rpcs=given)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), _open(out.path) as ds:
        assert ds.rpcs.long_off == pytest.approx(116.0)
    bare = _source(tmp_path / "bare.tif", pixels)
    # An .rpb beside the image is never consulted by GDAL: only the RPCs rspolicy passes are written.
    (tmp_path / "bare.rpb").write_text("not read", encoding="ascii")
    assert rebuild_raster(bare, tmp_path / "b.tif", tags={}).rpcs is None
    out = rebuild_raster(bare, tmp_path / "c.tif", tags={}, rpcs=given)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), _open(out.path) as ds:
        rpcs: RPC = ds.rpcs
        assert rpcs.long_off == pytest.approx(100.0) and rpcs.samp_scale == pytest.approx(given.samp_scale)


def test_only_the_main_image_and_known_bytes_leave(tmp_path: Path) -> None:
    pixels = _pixels("uint16", 1, 256, 256)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">XMP-SECRET-MARKER</x:xmpmeta>'
    src = tmp_path / "src.tif"
    with tifffile.TiffWriter(src) as tif:
        tif.write(pixels[0], tile=(64, 64), compression="zlib", photometric="minisblack",
                  extratags=[(65000, "s", 0, "PRIVATE-SECRET-MARKER", True), (700, "B", len(xmp), xmp, True)])
        tif.write(np.full((64, 64), 7, np.uint16), photometric="minisblack")  # a second image
    with open(src, "ab") as handle:
        handle.write(b"APPENDED-SECRET-MARKER" * 50)
    out = rebuild_raster(src, tmp_path / "out.tif", tags=PROVENANCE)
    data = out.path.read_bytes()
    for marker in (b"PRIVATE-SECRET-MARKER", b"XMP-SECRET-MARKER", b"APPENDED-SECRET-MARKER"):
        assert marker not in data
    with tifffile.TiffFile(out.path) as tif:
        assert len(tif.pages) == 1
        assert 65000 not in tif.pages[0].tags and 700 not in tif.pages[0].tags
    np.testing.assert_array_equal(_read(out.path), pixels)


def test_overviews_are_not_copied_and_never_read(tmp_path: Path) -> None:
    pixels = _pixels("uint16", 1, 600, 600)
    src = _source(tmp_path / "src.tif", pixels, tiled=True, blockxsize=128, blockysize=128, compress="deflate",
                  overviews=True)
    out = rebuild_raster(src, tmp_path / "out.tif", tags={})
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), _open(out.path) as ds:
        assert ds.overviews(1) == []
    np.testing.assert_array_equal(_read(out.path), pixels)


def test_internal_mask_is_copied_pixel_exact(tmp_path: Path) -> None:
    pixels = _pixels("uint16", 2, 300, 200)
    mask = np.zeros((300, 200), np.uint8)
    mask[40:260, 30:170] = 255
    src = _source(tmp_path / "src.tif", pixels, compress="deflate", mask=mask)
    out = rebuild_raster(src, tmp_path / "out.tif", tags={})
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), _open(out.path) as ds:
        np.testing.assert_array_equal(ds.read_masks(1), mask)
        np.testing.assert_array_equal(ds.read(), pixels)
    assert not (tmp_path / "out.tif.msk").exists()


# --- damaged sources: never written with missing parts filled in -----------------------------------------------


def _blocks(path: Path) -> tuple[tuple[int, ...], tuple[int, ...]]:
    with tifffile.TiffFile(path) as tif:
        return tuple(tif.pages[0].dataoffsets), tuple(tif.pages[0].databytecounts)


def _ifd_first(tmp_path: Path, pixels: np.ndarray, **profile: Any) -> Path:
    """A good source whose IFD precedes its pixels (GDAL's CreateCopy), so that a cut keeps the file openable."""
    draft = _source(tmp_path / "draft.tif", pixels, **profile)
    good = tmp_path / "good.tif"
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        rio_shutil.copy(draft, good, driver="GTiff", **profile)
    draft.unlink()
    offsets, _ = _blocks(good)
    with tifffile.TiffFile(good) as tif:
        assert tif.pages[0].offset < min(offsets)
    return good


def _truncated_tiled(tmp_path: Path) -> Path:
    src = _ifd_first(tmp_path, _pixels("uint16", 1, 512, 512), tiled=True, blockxsize=64, blockysize=64,
                     compress="deflate")
    data = src.read_bytes()
    bad = tmp_path / "bad.tif"
    bad.write_bytes(data[:len(data) // 2])
    return bad


def _cut_strip(tmp_path: Path, compress: str | None) -> Path:
    src = _ifd_first(tmp_path, _pixels("uint16", 1, 512, 512), **({"compress": compress} if compress else {}))
    offsets, counts = _blocks(src)
    data = src.read_bytes()
    last = max(range(len(offsets)), key=lambda i: offsets[i])
    bad = tmp_path / "bad.tif"
    bad.write_bytes(data[:offsets[last] + counts[last] // 2])
    return bad


def _corrupt_tile(tmp_path: Path) -> Path:
    src = _source(tmp_path / "good.tif", _pixels("uint16", 1, 512, 512), tiled=True, blockxsize=64,
                  blockysize=64, compress="deflate")
    offsets, counts = _blocks(src)
    data = bytearray(src.read_bytes())
    for i in range(offsets[9] + 4, offsets[9] + counts[9] - 4):
        data[i] ^= 0x5A
    bad = tmp_path / "bad.tif"
    bad.write_bytes(bytes(data))
    return bad


def _jpeg_cut_short(tmp_path: Path) -> Path:
    # libjpeg only warns about a truncated segment and GDAL returns the tile filled in.
    src = _source(tmp_path / "good.tif", _pixels("uint8", 1, 256, 256), tiled=True, blockxsize=64,
                  blockysize=64, compress="jpeg")
    offsets, counts = _blocks(src)
    data = bytearray(src.read_bytes())
    middle = offsets[5] + counts[5] // 2
    data[middle:middle + 2] = b"\xff\xd9"  # end of image, half way through the tile
    bad = tmp_path / "bad.tif"
    bad.write_bytes(bytes(data))
    return bad


def _sparse(tmp_path: Path) -> Path:
    pixels = _pixels("uint16", 1, 256, 256)
    pixels[:, :64, :64] = 0
    return _source(tmp_path / "bad.tif", pixels, tiled=True, blockxsize=64, blockysize=64, compress="deflate",
                   sparse_ok=True)


DAMAGED = [
    pytest.param(_truncated_tiled, id="tiled-deflate-truncated-in-half"),
    pytest.param(lambda p: _cut_strip(p, None), id="raw-strips-last-strip-cut"),
    pytest.param(lambda p: _cut_strip(p, "deflate"), id="deflate-strips-last-strip-cut"),
    pytest.param(_corrupt_tile, id="tile-with-corrupt-deflate-bytes"),
    pytest.param(_jpeg_cut_short, id="jpeg-tile-cut-short-warning-only"),
    pytest.param(_sparse, id="sparse-tile"),
]


@pytest.mark.parametrize("make", DAMAGED)
@pytest.mark.parametrize("writer", ["rebuild", "degrade"])
def test_damaged_source_is_refused_and_leaves_nothing(tmp_path: Path, make: Any, writer: str) -> None:
    bad = make(tmp_path)
    dst = tmp_path / "out.tif"
    with pytest.raises(ProductReadError) as caught:
        if writer == "rebuild":
            rebuild_raster(bad, dst, tags={}, threads=2)
        else:
            degrade_raster(bad, dst, DegradePlan(Fraction(2), Fraction(2), 0.25, 0.25, 0.5, None), tags={}, threads=2)
    message = str(caught.value)
    assert message.startswith(str(bad)) and "\n" not in message
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"bad.tif", "good.tif"} & {
        p.name for p in tmp_path.iterdir()})


@pytest.mark.parametrize("make", [
    pytest.param(_truncated_tiled, id="tiled-deflate-truncated-in-half"),
    pytest.param(lambda p: _cut_strip(p, "deflate"), id="deflate-strips-last-strip-cut"),
])
def test_gdal_read_errors_are_fatal_on_their_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Any) -> None:
    # Without the block-table check, GDAL's own failure still stops the copy (never GTIFF_IGNORE_READ_ERRORS).
    monkeypatch.setattr(degrade, "_check_blocks", lambda path: None)
    monkeypatch.setenv("GTIFF_IGNORE_READ_ERRORS", "YES")
    bad = make(tmp_path)
    with pytest.raises(ProductReadError, match="the pixels cannot be read"):
        rebuild_raster(bad, tmp_path / "out.tif", tags={}, threads=2)
    assert not (tmp_path / "out.tif").exists()


def test_tifffile_complaints_are_not_printed(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + (10_000).to_bytes(4, "little") + b"\x00" * 16)
    with pytest.raises(ProductReadError, match="strip/tile tables"):
        rebuild_raster(bad, tmp_path / "out.tif", tags={})
    assert capfd.readouterr().err == ""


def test_complex_int16_sar_rebuilt_and_degraded(tmp_path: Path) -> None:
    # GF-3 SLC samples are CInt16; rasterio reads them as complex64.
    rng = np.random.default_rng(3)
    pixels = (rng.integers(-2000, 2000, (1, 300, 260)) + 1j * rng.integers(-2000, 2000, (1, 300, 260)))
    pixels = pixels.astype(np.complex64)
    src = tmp_path / "slc.tif"
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), _open(src, "w", driver="GTiff", width=260, height=300, count=1,
                                                    dtype="complex_int16", tiled=True, blockxsize=64,
                                                    blockysize=64) as dst:
        dst.write(pixels)
    out = rebuild_raster(src, tmp_path / "out.tif", tags={})
    assert out.dtype == "complex_int16"
    np.testing.assert_array_equal(_read(out.path), pixels)
    plan = DegradePlan(Fraction(2), Fraction(5, 3), 0.3, 0.3, 0.5, "intensity")
    degraded = degrade_raster(src, tmp_path / "deg.tif", plan, tags={})
    assert degraded.dtype == "float32"
    np.testing.assert_array_equal(_read(degraded.path),
                                  area_average(pixels, (Fraction(2), Fraction(5, 3)), sar_mode="intensity"))
