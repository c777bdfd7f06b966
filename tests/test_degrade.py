"""Streaming degrade: block-aligned reads and writes give exactly the whole-array kernel's result."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning

from rspolicy import degrade
from rspolicy.degrade import DegradePlan, degrade_raster
from rspolicy.samples.gf_optical import linear_rpc, write_rpb
from tests.reference import reference_average

chunk_lists = st.lists(st.integers(1, 40), min_size=1, max_size=12)


def _pieces(sizes: list[int], bands: int = 2) -> tuple[list[np.ndarray], np.ndarray]:
    whole = np.arange(bands * sum(sizes) * 3, dtype=np.int32).reshape(bands, sum(sizes), 3)
    edges = np.cumsum([0, *sizes])
    return [whole[:, a:b] for a, b in itertools.pairwise(edges)], whole


@given(sizes=chunk_lists, p=st.integers(1, 9))
def test_whole_periods_recut(sizes: list[int], p: int) -> None:
    chunks, whole = _pieces(sizes)
    strips = list(degrade.whole_periods(iter(chunks), p))
    assert all(s.shape[1] % p == 0 and s.shape[1] > 0 for s in strips[:-1])
    assert strips[-1].shape[1] > 0
    np.testing.assert_array_equal(np.concatenate(strips, axis=1), whole)


@given(sizes=chunk_lists, block=st.integers(1, 16))
def test_block_rows_recut(sizes: list[int], block: int) -> None:
    pieces, whole = _pieces(sizes)
    rows = list(degrade._block_rows(iter(pieces), block))
    assert all(r.shape[1] % block == 0 and r.shape[1] > 0 for r in rows[:-1])
    np.testing.assert_array_equal(np.concatenate(rows, axis=1), whole)


def _scene(path: Path, rows: int, cols: int, *, bands: int, block: int, compress: str | None) -> np.ndarray:
    rng = np.random.default_rng(rows * cols)
    pixels = rng.integers(0, 4096, (bands, rows, cols), dtype=np.uint16)
    opts = {"tiled": True, "blockxsize": block, "blockysize": block} if block else {}
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=bands, dtype="uint16",
                       crs=CRS.from_epsg(32650), transform=Affine(0.3, 0, 448000, 0, -0.3, 4417000),
                       compress=compress, **opts) as dst:
        dst.write(pixels)
    return pixels


def _plan(fr: Fraction, fc: Fraction) -> DegradePlan:
    return DegradePlan(fr, fc, 0.3, 0.3, 0.5, None)


@pytest.mark.parametrize(("factors", "block", "compress", "bands"), [
    ((Fraction(5, 3), Fraction(5, 3)), 32, "deflate", 1),   # periods straddle the 32-row chunks
    ((Fraction(7, 4), Fraction(2)), 48, None, 3),           # several bands, uncompressed tiles
    ((Fraction(2), Fraction(5, 4)), 0, "deflate", 1),       # strips of rows, not tiles
    ((Fraction(13, 5), Fraction(1)), 16, "lzw", 2),         # long period, one axis untouched
])
def test_streamed_output_equals_whole_array_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   factors: tuple[Fraction, Fraction], block: int,
                                                   compress: str | None, bands: int) -> None:
    src = tmp_path / "src.tif"
    pixels = _scene(src, 1100, 700, bands=bands, block=block, compress=compress)
    reads: list[tuple[int, int]] = []
    original = degrade.block_row_windows

    def recorded(*args: int) -> Iterator[tuple[int, int]]:
        for window in original(*args):
            reads.append(window)
            yield window

    monkeypatch.setattr(degrade, "STRIP_BYTES", 100_000)  # many chunks
    monkeypatch.setattr(degrade, "block_row_windows", recorded)
    out = degrade_raster(src, tmp_path / "out.tif", _plan(*factors), tags={}, threads=2)
    expected = reference_average(pixels, factors)
    with rasterio.open(out.path) as dst:
        np.testing.assert_array_equal(dst.read(), expected)
    assert len(reads) > 5
    with rasterio.open(src) as s:
        block_rows = s.block_shapes[0][0]
    assert all(row0 % block_rows == 0 for row0, _ in reads)  # block-aligned: no block decoded twice


def test_block_rows_too_big_for_memory_are_read_in_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src.tif"
    pixels = _scene(src, 700, 300, bands=2, block=64, compress="deflate")
    monkeypatch.setattr(degrade, "STRIP_BYTES", 10_000)
    monkeypatch.setattr(degrade, "MAX_CHUNK_BYTES", 50_000)  # one row of tiles is 76800 bytes
    windows = list(degrade.block_row_windows(700, 300, 2, 2, 64))
    assert {rows for _, rows in windows[:-1]} == {8}  # 10000 // 1200 rows, not whole tile rows
    out = degrade_raster(src, tmp_path / "out.tif", _plan(Fraction(5, 3), Fraction(7, 4)), tags={})
    with rasterio.open(out.path) as dst:
        np.testing.assert_array_equal(dst.read(), reference_average(pixels, (Fraction(5, 3), Fraction(7, 4))))


def test_writes_are_whole_rows_of_output_tiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src.tif"
    pixels = _scene(src, 1800, 900, bands=1, block=64, compress="deflate")
    writes: list[tuple[int, int]] = []
    original = degrade._write

    def recorded(dst: object, piece: tuple[int, np.ndarray]) -> None:
        writes.append((piece[0], piece[1].shape[1]))
        original(dst, piece)

    monkeypatch.setattr(degrade, "STRIP_BYTES", 100_000)
    monkeypatch.setattr(degrade, "_write", recorded)
    out = degrade_raster(src, tmp_path / "out.tif", _plan(Fraction(5, 3), Fraction(5, 3)), tags={})
    assert out.height == 1080 and len(writes) == 3
    assert [row0 for row0, _ in writes] == [0, 512, 1024] and [n for _, n in writes] == [512, 512, 56]
    with rasterio.open(out.path) as dst:
        np.testing.assert_array_equal(dst.read(), reference_average(pixels, Fraction(5, 3)))


@settings(max_examples=15, deadline=None)
@given(p=st.integers(2, 11), q=st.integers(1, 10), rows=st.integers(1, 90), block=st.sampled_from([16, 32]))
def test_streaming_any_rational_factor(tmp_path_factory: pytest.TempPathFactory, p: int, q: int, rows: int,
                                       block: int) -> None:
    factor = Fraction(p, q)
    if factor < 1:
        factor = 1 / factor
    folder = tmp_path_factory.mktemp("f")
    pixels = _scene(folder / "src.tif", rows, 40, bands=1, block=block, compress="deflate")
    original = degrade.STRIP_BYTES
    degrade.STRIP_BYTES = 1  # one block row per chunk
    try:
        out = degrade_raster(folder / "src.tif", folder / "out.tif", _plan(factor, factor), tags={})
    finally:
        degrade.STRIP_BYTES = original
    with rasterio.open(out.path) as dst:
        np.testing.assert_array_equal(dst.read(), reference_average(pixels, factor))


def _described(path: Path, dtype: str, colorinterp: list[ColorInterp]) -> Path:
    bands = len(colorinterp)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(
            path, "w", driver="GTiff", width=700, height=600, count=bands, dtype=dtype, crs=CRS.from_epsg(32650),
            transform=Affine(0.3, 0, 448000, 0, -0.3, 4417000), tiled=True, blockxsize=64, blockysize=64) as dst:
        dst.write(np.ones((bands, 600, 700), dtype))
        dst.colorinterp = colorinterp
        for band in range(1, bands + 1):
            dst.set_band_description(band, f"band {band}: {colorinterp[band - 1].name}")
    return path


COLOURS = [
    pytest.param("uint8", [ColorInterp.red, ColorInterp.green, ColorInterp.blue], id="rgb-byte"),
    pytest.param("uint8", [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha], id="rgba-byte"),
    pytest.param("uint16", [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined],
                 id="bgrn-u16"),
    pytest.param("uint16", [ColorInterp.gray], id="pan-u16"),
]


@pytest.mark.parametrize(("dtype", "colorinterp"), COLOURS)
def test_descriptions_and_colour_interpretation_kept(tmp_path: Path, dtype: str,
                                                     colorinterp: list[ColorInterp]) -> None:
    # The pixel handle is opened with OVERVIEW_LEVEL=NONE, whose wrapper drops band descriptions:
    # metadata must come from a plain handle.
    src = _described(tmp_path / "src.tif", dtype, colorinterp)
    out = degrade_raster(src, tmp_path / "out.tif", _plan(Fraction(5, 3), Fraction(5, 3)), tags={})
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(out.path) as dst:
        assert list(dst.colorinterp) == colorinterp
        assert dst.descriptions == tuple(f"band {b + 1}: {c.name}" for b, c in enumerate(colorinterp))
    assert not list(tmp_path.glob("*.aux.xml"))


def test_given_rpcs_used_when_the_image_has_none(tmp_path: Path) -> None:
    src = tmp_path / "src.tif"
    pixels = np.arange(120 * 100, dtype=np.uint16).reshape(1, 120, 100)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(src, "w", driver="GTiff", width=100, height=120, count=1, dtype="uint16") as dst:
            dst.write(pixels)
    rpcs = linear_rpc(116.0, 40.0, 0.3, 100, 120)
    write_rpb(tmp_path / "src.rpb", rpcs)
    # GDAL consults nothing beside the image: the .rpb is rspolicy's to parse and pass.
    assert degrade.raster_spacings(src) == []
    spacings = degrade.raster_spacings(src, rpcs=rpcs)
    assert len(spacings) == 1 and spacings[0].x_m == pytest.approx(0.3, rel=0.01)
    plain = degrade_raster(src, tmp_path / "plain.tif", _plan(Fraction(5, 3), Fraction(5, 3)), tags={})
    assert plain.rpcs is None
    out = degrade_raster(src, tmp_path / "out.tif", _plan(Fraction(5, 3), Fraction(5, 3)), tags={}, rpcs=rpcs)
    assert out.rpcs is not None and out.rpcs.samp_scale == pytest.approx(rpcs.samp_scale * 3 / 5)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(out.path) as dst:
        assert dst.rpcs.samp_scale == pytest.approx(rpcs.samp_scale * 3 / 5)


def test_own_rpcs_win_over_given(tmp_path: Path) -> None:
    src = tmp_path / "src.tif"
    own = linear_rpc(116.0, 40.0, 0.3, 100, 120)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(src, "w", driver="GTiff", width=100, height=120, count=1, dtype="uint16") as dst:
            dst.write(np.ones((1, 120, 100), np.uint16))
            dst.rpcs = own
    other = linear_rpc(10.0, 10.0, 0.1, 100, 120)
    out = degrade_raster(src, tmp_path / "out.tif", _plan(Fraction(2), Fraction(2)), tags={}, rpcs=other)
    assert out.rpcs is not None and out.rpcs.long_off == pytest.approx(116.0)
