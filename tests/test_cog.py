"""``--format cog``: Cloud Optimized GeoTIFFs whose overviews are rspolicy's own area average."""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning

from rspolicy import cog, degrade
from rspolicy.cog import overview_sar_mode, overview_shapes, write_cog
from rspolicy.enforce import STAGE_PREFIX, EnforceOptions, enforce
from rspolicy.errors import OutputError
from rspolicy.model import Action
from rspolicy.policy import load_policy
from rspolicy.resample import SarMode, area_average
from rspolicy.samples.gf3 import gf3_names, write_gf3_meta
from rspolicy.samples.gf_optical import linear_rpc, write_image

from .conftest import REPO

UTM50N = CRS.from_epsg(32650)
TRANSFORM = Affine(1.0, 0, 448_000.0, 0, -1.0, 4_417_000.0)


def _write(path: Path, pixels: np.ndarray, **profile: Any) -> Path:
    """A plain tiled GeoTIFF, as degrade_raster writes them; extra metadata from ``profile``."""
    rpcs, gcps = profile.pop("rpcs", None), profile.pop("gcps", None)
    tags, descriptions = profile.pop("tags", {}), profile.pop("descriptions", ())
    bands, height, width = pixels.shape
    options: dict[str, Any] = {"driver": "GTiff", "width": width, "height": height, "count": bands,
                               "dtype": pixels.dtype, "compress": "deflate", **profile}
    if width >= 512 and height >= 512:
        options.update(tiled=True, blockxsize=512, blockysize=512)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(path, "w", **options) as dst:
            dst.write(pixels)
            if rpcs is not None:
                dst.rpcs = rpcs
            if gcps is not None:
                dst.gcps = gcps
            dst.update_tags(**tags)
            for band, text in enumerate(descriptions, start=1):
                dst.set_band_description(band, text)
    return path


def _read(path: Path, **open_options: Any) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, **open_options) as ds:
            data: np.ndarray = ds.read()
            return data


def _overviews(path: Path) -> list[np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            count = len(ds.overviews(1))
    return [_read(path, OVERVIEW_LEVEL=k) for k in range(count)]


def _kernel_levels(pixels: np.ndarray, nodata: float | None, mode: SarMode | None) -> list[np.ndarray]:
    """The overviews by definition: the kernel applied to each whole level in turn."""
    levels, level = [], pixels
    while level.shape[-2] > 512 or level.shape[-1] > 512:
        level = area_average(level, 2, nodata=nodata, sar_mode=mode)
        levels.append(level)
    return levels


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _assert_same(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert [g.shape for g in got] == [e.shape for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == e.dtype
        # bit for bit, NaN included
        assert np.array_equal(g.view(f"u{g.dtype.itemsize}") if g.dtype.kind == "f" else g,
                              e.view(f"u{e.dtype.itemsize}") if e.dtype.kind == "f" else e)


def _uint16_odd() -> tuple[np.ndarray, float | None, SarMode | None]:
    rng = np.random.default_rng(1)
    return rng.integers(0, 4096, (2, 1107, 1301), dtype=np.uint16), None, None


def _int16_nodata() -> tuple[np.ndarray, float | None, SarMode | None]:
    rng = np.random.default_rng(2)
    pixels = rng.integers(-500, 3000, (1, 1025, 777), dtype=np.int16)
    pixels[0, 100:300, 50:61] = -9999  # whole and partial overview pixels without data
    pixels[0, ::7, ::5] = -9999
    return pixels, -9999, None


def _amplitude() -> tuple[np.ndarray, float | None, SarMode | None]:
    rng = np.random.default_rng(3)
    return (rng.rayleigh(300.0, (1, 1033, 1029)).clip(0, 65535).astype(np.uint16)), None, "amplitude"


def _float_nan() -> tuple[np.ndarray, float | None, SarMode | None]:
    rng = np.random.default_rng(4)
    pixels = rng.normal(0.0, 1.0, (1, 1111, 1040)).astype(np.float32)
    pixels[0, 200:210, 300:333] = np.nan
    pixels[0, ::3, ::11] = np.nan
    return pixels, None, None


def _intensity_power() -> tuple[np.ndarray, float | None, SarMode | None]:
    # The output of an "intensity" degrade: real power, which averages linearly.
    rng = np.random.default_rng(5)
    return rng.exponential(2e4, (1, 700, 1030)).astype(np.float32), None, "intensity"


def _coherent() -> tuple[np.ndarray, float | None, SarMode | None]:
    rng = np.random.default_rng(6)
    pixels = (rng.normal(0, 100, (1, 600, 1027)) + 1j * rng.normal(0, 100, (1, 600, 1027))).astype(np.complex64)
    return pixels, None, "coherent"


CASES = {"uint16-odd": _uint16_odd, "int16-nodata": _int16_nodata, "sar-amplitude": _amplitude,
         "float-nan": _float_nan, "sar-intensity": _intensity_power, "sar-coherent": _coherent}


@pytest.mark.parametrize("strip_bytes", [None, 20_000], ids=["one-pass", "many-strips-and-passes"])
@pytest.mark.parametrize("case", list(CASES))
def test_overviews_are_the_kernel_bit_for_bit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str,
                                              strip_bytes: int | None) -> None:
    if strip_bytes is not None:
        # Strips of a few rows, one level per pass: the streaming must not show.
        monkeypatch.setattr(degrade, "STRIP_BYTES", strip_bytes)
    pixels, nodata, degraded_with = CASES[case]()
    src = _write(tmp_path / "src.tif", pixels, nodata=nodata, crs=UTM50N, transform=TRANSFORM)
    dst = tmp_path / "out.tif"
    write_cog(src, dst, sar_mode=degraded_with, threads=2)
    assert np.array_equal(_read(dst), pixels, equal_nan=pixels.dtype.kind == "f")
    expected = _kernel_levels(pixels, nodata, overview_sar_mode(degraded_with))
    assert len(expected) >= 1
    assert [e.shape[1:] for e in expected] == overview_shapes(*pixels.shape[1:])
    _assert_same(_overviews(dst), expected)


def test_amplitude_overviews_are_averaged_in_power(tmp_path: Path) -> None:
    pixels, _, _ = _amplitude()
    src = _write(tmp_path / "src.tif", pixels)
    write_cog(src, tmp_path / "out.tif", sar_mode="amplitude")
    level = _overviews(tmp_path / "out.tif")[0]
    power = pixels.astype(np.float64) ** 2
    h, w = pixels.shape[1] // 2 * 2, pixels.shape[2] // 2 * 2
    rms = np.sqrt(power[0, :h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)))
    assert np.abs(level[0, : h // 2, : w // 2] - rms).max() <= 0.5  # sqrt of the mean power, rounded
    linear = area_average(pixels, 2)
    assert (level > linear).mean() > 0.5  # RMS > mean: not a linear average of amplitudes


def test_sar_mode_mapping() -> None:
    assert overview_sar_mode(None) is None
    assert overview_sar_mode("intensity") is None  # the degraded image is real power
    assert overview_sar_mode("amplitude") == "amplitude"
    assert overview_sar_mode("coherent") == "coherent"


def test_overview_shapes_follow_the_kernel_grid_and_the_cog_stop_rule() -> None:
    assert overview_shapes(2049, 1537) == [(1025, 769), (513, 385), (257, 193)]
    assert overview_shapes(1024, 1024) == [(512, 512)]
    assert overview_shapes(512, 512) == []
    assert overview_shapes(18000, 18000)[-1] == (282, 282)


def test_strips_hold_whole_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(degrade, "STRIP_BYTES", 1 << 20)
    assert cog._levels_per_pass(1000, 10) == 10  # 2**10 rows of 1000 bytes fit 1 MiB
    assert cog._levels_per_pass(10_000, 10) == 6  # 64 rows fit, 128 do not
    assert cog._levels_per_pass(10_000_000, 3) == 1  # always at least one level
    windows = list(degrade.block_row_windows(1000, 5000, 1, 2, 512))
    assert [row0 for row0, _ in windows] == [0, 512]  # whole rows of 512-row tiles, 5 MB each
    chunks = (np.zeros((1, rows, 3)) for _, rows in windows)
    strips = [s.shape[1] for s in degrade.whole_periods(chunks, 64)]
    assert all(rows % 64 == 0 for rows in strips[:-1]) and sum(strips) == 1000


def test_cog_layout_georeferencing_and_metadata_kept(tmp_path: Path) -> None:
    pixels = np.random.default_rng(7).integers(1, 4000, (2, 1100, 1300), dtype=np.uint16)
    rpc = linear_rpc(116.5, 39.9, 0.5, 1300, 1100, height_off=50.0)
    src = _write(tmp_path / "src.tif", pixels, nodata=0, crs=UTM50N, transform=TRANSFORM, rpcs=rpc,
                 tags={"RSPOLICY_TARGET_GSD_M": "0.5", "RSPOLICY_DECISION_ID": "abc"},
                 descriptions=("pan", "nir"))
    with rasterio.open(src) as s:
        src_rpcs = s.rpcs  # as GDAL reads them back: 15 significant digits, default errors
    dst = tmp_path / "out.tif"
    write_cog(src, dst, threads=1)
    with rasterio.open(dst) as d:
        structure = d.tags(ns="IMAGE_STRUCTURE")
        assert structure["LAYOUT"] == "COG" and structure["COMPRESSION"] == "DEFLATE"
        assert structure["PREDICTOR"] == "2"  # integer data
        assert d.block_shapes[0] == (512, 512)
        assert d.crs == UTM50N and d.transform == TRANSFORM
        assert d.rpcs is not None and d.rpcs.to_dict() == src_rpcs.to_dict()
        assert d.rpcs.lat_scale == pytest.approx(rpc.lat_scale, rel=1e-14)
        assert d.tags()["RSPOLICY_TARGET_GSD_M"] == "0.5" and d.tags()["RSPOLICY_DECISION_ID"] == "abc"
        assert d.descriptions == ("pan", "nir") and d.nodata == 0
        assert d.overviews(1) == [2, 4]
    assert _files(tmp_path) == ["out.tif", "src.tif"]  # no temporary folder, no .aux.xml, no .RPB


def test_gcps_kept(tmp_path: Path) -> None:
    # Degraded GCPs sit at fractional pixels; a VRT would round them to 1e-4 pixel unless told otherwise.
    gcps = [GroundControlPoint(row=r / 1.6666666666666667, col=c / 1.6666666666666667, x=448_000.123456789 + c,
                               y=4_417_000.987654321 - r, z=12.3456789, id=f"{r}-{c}")
            for r in (0, 601) for c in (0, 701)]
    pixels = np.random.default_rng(8).normal(0, 1, (1, 600, 700)).astype(np.float32)
    src = _write(tmp_path / "src.tif", pixels, gcps=(gcps, UTM50N))
    write_cog(src, tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as d:
        got, crs = d.gcps
        assert crs == UTM50N
        assert [(g.row, g.col, g.x, g.y, g.z) for g in got] == [(g.row, g.col, g.x, g.y, g.z) for g in gcps]
        assert "PREDICTOR" not in d.tags(ns="IMAGE_STRUCTURE")  # floats: no integer predictor
    assert _files(tmp_path) == ["out.tif", "src.tif"]


def test_image_within_one_tile_has_no_overviews(tmp_path: Path) -> None:
    pixels = np.arange(300 * 512, dtype=np.uint16).reshape(1, 300, 512)
    src = _write(tmp_path / "src.tif", pixels, crs=UTM50N, transform=TRANSFORM)
    write_cog(src, tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as d:
        assert d.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and d.overviews(1) == []
    assert np.array_equal(_read(tmp_path / "out.tif"), pixels)
    assert _files(tmp_path) == ["out.tif", "src.tif"]


def test_failure_while_averaging_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}

    def failing(*args: Any, **kwargs: Any) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(28, "No space left on device")
        return area_average(*args, **kwargs)

    monkeypatch.setattr(degrade, "STRIP_BYTES", 50_000)  # many strips: fail half-way
    monkeypatch.setattr(cog, "area_average", failing)
    pixels, _, _ = _uint16_odd()
    src = _write(tmp_path / "src.tif", pixels)
    dst = tmp_path / "out.tif"
    with pytest.raises(OutputError) as info:
        write_cog(src, dst)
    assert calls["n"] == 5
    message = str(info.value)
    assert message.startswith(f"{dst}: ") and "No space left" in message and "\n" not in message
    assert _files(tmp_path) == ["src.tif"]


def test_failure_in_the_cog_driver_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_copy = cog.rio_shutil.copy

    def copy_then_fail(src: Any, dst: Any, **options: Any) -> None:
        real_copy(src, dst, **options)
        if options.get("driver") == "COG":  # a complete COG, then the failure: nothing may survive
            calls.append(dst)
            raise rasterio.errors.RasterioIOError("write failed\nsecond line")

    calls: list[Any] = []

    monkeypatch.setattr(cog.rio_shutil, "copy", copy_then_fail)
    pixels, _, _ = _uint16_odd()
    src = _write(tmp_path / "src.tif", pixels)
    dst = tmp_path / "out.tif"
    with pytest.raises(OutputError, match="write failed") as info:
        write_cog(src, dst)
    assert "\n" not in str(info.value) and str(dst) in str(info.value)
    assert len(calls) == 1
    assert _files(tmp_path) == ["src.tif"]


def test_gdal_errors_become_output_errors(tmp_path: Path) -> None:
    src = tmp_path / "not-a-raster.tif"
    src.write_text("nothing here")
    with pytest.raises(OutputError, match=r"out\.tif: cannot write the COG"):
        write_cog(src, tmp_path / "out.tif")
    assert _files(tmp_path) == ["not-a-raster.tif"]


def _gf3_l2(folder: Path, size: int) -> Path:
    """A GF-3 SL L2 product at 0.5 m: detected amplitude, degraded in power to 1 m."""
    names = gf3_names("KAS", "SL", 12345, 116.4, 39.9, "20210101", "L2", "HH", 123456)
    folder.mkdir(parents=True)
    write_gf3_meta(folder / names.meta, product_type="SLP", width=size, height=size, imaging_mode="SL", polar="HH",
                   product_id=123456, station="KAS", orbit_id=12345, nominal_resolution=1.0, widthspace=0.5,
                   heightspace=0.5)
    pixels = np.random.default_rng(9).rayleigh(300.0, (1, size, size)).clip(0, 65535).astype(np.uint16)
    return write_image(folder / names.tiffs["HH"], pixels, crs=UTM50N, transform=Affine(0.5, 0, 448_000.0, 0, -0.5,
                                                                                        4_417_000.0))


def test_enforce_cog_overviews_use_the_plans_sar_mode(tmp_path: Path) -> None:
    _gf3_l2(tmp_path / "in", 2102)
    out = tmp_path / "out"
    policy = load_policy(REPO / "rules" / "cnsa-2022.toml")
    [outcome] = enforce([tmp_path / "in"], EnforceOptions(out, policy, output_format="cog", threads=2))
    assert outcome.decision.action is Action.RESAMPLE, outcome.decision.reasons
    [image] = out.glob("*.tiff")
    with rasterio.open(image) as d:
        assert d.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert "amplitude" in d.tags()["RSPOLICY_RESAMPLING"]
        assert (d.width, d.height) == (1051, 1051)
    full = _read(image)
    _assert_same(_overviews(image), _kernel_levels(full, None, "amplitude"))
    assert not [p for p in out.rglob("*") if p.name.startswith((STAGE_PREFIX, cog.TMP_PREFIX))
                or p.name.endswith((".aux.xml", ".part"))]
    assert not list((tmp_path / "in").rglob("*.aux.xml"))


@pytest.mark.parametrize(("dtype", "colorinterp"), [
    pytest.param("uint8", [ColorInterp.red, ColorInterp.green, ColorInterp.blue], id="rgb-byte"),
    pytest.param("uint8", [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha], id="rgba-byte"),
    pytest.param("uint16", [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined],
                 id="bgrn-u16"),
])
def test_degraded_cog_keeps_descriptions_and_colour_interpretation(tmp_path: Path, dtype: str,
                                                                   colorinterp: list[ColorInterp]) -> None:
    # The whole --format cog path: degrade to a scratch file, then the COG driver through the VRT.
    bands = len(colorinterp)
    src = _write(tmp_path / "src.tif", np.full((bands, 1300, 1200), 9, dtype), crs=UTM50N, transform=TRANSFORM,
                 descriptions=[f"{c.name} band" for c in colorinterp])
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(src, "r+") as ds:
        ds.colorinterp = colorinterp
    plan = degrade.DegradePlan(Fraction(5, 3), Fraction(5, 3), 0.3, 0.3, 0.5, None)
    scratch = degrade.degrade_raster(src, tmp_path / "scratch.tif", plan, tags={}, intermediate=True)
    write_cog(scratch.path, tmp_path / "out.tif")
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(tmp_path / "out.tif") as ds:
        assert list(ds.colorinterp) == colorinterp
        assert ds.descriptions == tuple(f"{c.name} band" for c in colorinterp)
        assert len(ds.overviews(1)) == 1
    assert not list(tmp_path.glob("*.aux.xml"))
