"""Masking zones while degrading: through the geotransform, the RPCs or the GCPs, strip by strip, failing closed."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.rpc import RPC
from rasterio.transform import RPCTransformer

from rspolicy import degrade
from rspolicy.degrade import DegradePlan, degrade_raster, rebuild_raster
from rspolicy.errors import ProductReadError
from rspolicy.masking import MARGIN_PX, PixelMask, choose_nodata, pixel_mask, raster_pixel_mask
from rspolicy.resample import area_average
from rspolicy.samples.gf_optical import linear_rpc, write_image

UTM50 = CRS.from_epsg(32650)
WGS84 = CRS.from_epsg(4326)
ORIGIN = (448_000.0, 4_417_000.0)
TRANSFORM = Affine(1.0, 0, ORIGIN[0], 0, -1.0, ORIGIN[1])
TO_LONLAT = Transformer.from_crs(UTM50, WGS84, always_xy=True)
#: The zone of most tests: source pixels 50..119 along both axes (UTM 448050..448120 E, 4416880..4416950 N).
ZONE_PIXELS = (50, 50, 120, 120)


def _pixels(height: int = 200, width: int = 200, dtype: str = "uint16") -> np.ndarray:
    values = 1 + (np.arange(height * width).reshape(1, height, width) * 7919) % 4000
    return values.astype(dtype)


def _utm_image(path: Path, pixels: np.ndarray, **extra: object) -> Path:
    return write_image(path, pixels, crs=UTM50, transform=TRANSFORM, **extra)  # type: ignore[arg-type]


def _lonlat_of_pixel(col: float, row: float) -> tuple[float, float]:
    x, y = TRANSFORM @ (col, row)
    lon, lat = TO_LONLAT.transform(x, y)
    return float(lon), float(lat)


def _zone_wkt(col0: float, row0: float, col1: float, row1: float,
              to_lonlat: object = _lonlat_of_pixel) -> str:
    corners = [to_lonlat(c, r) for c, r in ((col0, row0), (col1, row0), (col1, row1), (col0, row1))]  # type: ignore[operator]
    return str(shapely.Polygon(corners).wkt)


def _plan(factor: Fraction | int, mask: PixelMask | None) -> DegradePlan:
    f = Fraction(factor)
    return DegradePlan(f, f, 1.0, 1.0, float(f), None, mask=mask)


def _read(path: Path) -> tuple[np.ndarray, rasterio.profiles.Profile]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile


# Geotransform
# --------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [1, 2])
def test_utm_zone_pixels_become_nodata(tmp_path: Path, factor: int) -> None:
    pixels = _pixels()
    src = _utm_image(tmp_path / "src.tif", pixels)
    mask = raster_pixel_mask(src, [_zone_wkt(*ZONE_PIXELS)])
    assert mask.nodata == 0.0
    written = degrade_raster(src, tmp_path / "out.tif", _plan(factor, mask), tags={})
    out, profile = _read(written.path)
    assert profile["nodata"] == 0 and profile["dtype"] == "uint16" and written.dtype == "uint16"
    assert (written.width, written.height) == (200 // factor, 200 // factor)
    inside_col, inside_row = 85 // factor, 85 // factor  # ground 448085.5 E, 4416914.5 N
    outside_col, outside_row = 20 // factor, 20 // factor
    assert out[0, inside_row, inside_col] == 0
    if factor == 1:
        np.testing.assert_array_equal(out[0, :45, :45], pixels[0, :45, :45])  # exact values outside the zone
        assert out[0, outside_row, outside_col] == pixels[0, 20, 20]
    else:
        expected = area_average(pixels[0], 2)
        np.testing.assert_array_equal(out[0, :22, :22], expected[:22, :22])
    # The zone's share of the scene, within a pixel border.
    assert written.masked_fraction is not None
    assert 70 * 70 / 40_000 <= written.masked_fraction <= 72 * 72 / 40_000
    assert int(np.count_nonzero(out == 0)) * factor * factor >= 70 * 70


@pytest.mark.parametrize(("factor", "dtype"), [(Fraction(3, 2), "uint16"), (Fraction(3, 2), "float32"),
                                              (Fraction(1), "uint16"), (Fraction(1), "float32")])
def test_output_pixels_touching_the_zone_are_nodata_and_averages_leave_zone_pixels_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, factor: Fraction, dtype: str) -> None:
    # Factor 3/2: source pixels straddle output pixels, so a masked source pixel is also part of an output pixel
    # that does not touch the zone; its average must leave it out. Factor 1: integers are copied rather than
    # averaged, with the kernel's result. Small strips: the mask is built strip by strip.
    monkeypatch.setattr(degrade, "STRIP_BYTES", 200 * 4 * 9)
    pixels = _pixels(dtype=dtype)
    src = _utm_image(tmp_path / "src.tif", pixels)
    mask = raster_pixel_mask(src, [_zone_wkt(50.5, 51.25, 119.5, 118.75)])
    calls: list[tuple[int, int]] = []
    original = PixelMask.rows

    def spy(self: PixelMask, row0: int, nrows: int, width: int) -> np.ndarray:
        calls.append((row0, nrows))
        return original(self, row0, nrows, width)

    monkeypatch.setattr(PixelMask, "rows", spy)
    written = degrade_raster(src, tmp_path / "out.tif", _plan(factor, mask), tags={})
    out, _ = _read(written.path)
    assert max(n for _, n in calls) < 200 / 4  # never the whole scene at once
    monkeypatch.setattr(PixelMask, "rows", original)
    inside = mask.rows(0, 200, 200)
    expected = area_average(pixels, (factor, factor), nodata=mask.nodata, mask=~inside)
    touching = mask.scaled(factor, factor).rows(0, out.shape[1], out.shape[2])
    expected[:, touching] = mask.nodata
    assert touching.any() and not touching.all()
    np.testing.assert_array_equal(out, expected)
    assert written.dtype == dtype
    assert written.masked_fraction == pytest.approx(np.count_nonzero(inside) / 40_000)


def test_source_nodata_is_kept_for_masked_pixels(tmp_path: Path) -> None:
    src = _utm_image(tmp_path / "src.tif", _pixels(), nodata=65535)
    mask = raster_pixel_mask(src, [_zone_wkt(*ZONE_PIXELS)])
    assert mask.nodata == 65535
    out, profile = _read(degrade_raster(src, tmp_path / "out.tif", _plan(1, mask), tags={}).path)
    assert profile["nodata"] == 65535 and out[0, 85, 85] == 65535


def test_float_source_without_nodata_gets_nan(tmp_path: Path) -> None:
    src = _utm_image(tmp_path / "src.tif", _pixels(dtype="float32"))
    mask = raster_pixel_mask(src, [_zone_wkt(*ZONE_PIXELS)])
    assert math.isnan(mask.nodata)
    out, profile = _read(degrade_raster(src, tmp_path / "out.tif", _plan(2, mask), tags={}).path)
    assert math.isnan(profile["nodata"]) and math.isnan(out[0, 42, 42]) and not np.isnan(out[0, 10, 10])


def test_zone_outside_the_image_masks_nothing(tmp_path: Path) -> None:
    pixels = _pixels()
    src = _utm_image(tmp_path / "src.tif", pixels)
    mask = raster_pixel_mask(src, [_zone_wkt(400, 400, 500, 500), "POLYGON ((-10 -10, -9 -10, -9 -9, -10 -10))"])
    assert mask.is_empty
    written = degrade_raster(src, tmp_path / "out.tif", _plan(1, mask), tags={})
    assert written.masked_fraction == 0.0
    out, _ = _read(written.path)
    np.testing.assert_array_equal(out, pixels)
    unmasked = degrade_raster(src, tmp_path / "plain.tif", _plan(2, None), tags={})
    assert unmasked.masked_fraction is None


def test_zone_covering_the_image_masks_everything(tmp_path: Path) -> None:
    src = _utm_image(tmp_path / "src.tif", _pixels())
    written = degrade_raster(src, tmp_path / "out.tif",
                             _plan(2, raster_pixel_mask(src, [_zone_wkt(-1000, -1000, 1000, 1000)])), tags={})
    assert written.masked_fraction == 1.0
    out, _ = _read(written.path)
    assert not out.any()


def test_geographic_image(tmp_path: Path) -> None:
    transform = Affine(1e-5, 0, 116.4, 0, -1e-5, 39.9)
    src = write_image(tmp_path / "geo.tif", _pixels(), crs=WGS84, transform=transform)
    zone = "POLYGON ((116.4005 39.8995, 116.4012 39.8995, 116.4012 39.8988, 116.4005 39.8988, 116.4005 39.8995))"
    out, _ = _read(degrade_raster(src, tmp_path / "out.tif", _plan(1, raster_pixel_mask(src, [zone])), tags={}).path)
    assert out[0, 85, 85] == 0 and out[0, 20, 20] != 0
    assert np.count_nonzero(out == 0) in range(70 * 70, 72 * 72 + 1)


def test_image_across_the_antimeridian_meets_zones_on_both_sides() -> None:
    # UTM 60N, 500 m pixels, columns 0..60 from 179.9 E across 180 to about 179.83 W, rows 20 north of the equator.
    transform = Affine(500.0, 0, 823_000, 0, -500.0, 10_000)
    crs = CRS.from_epsg(32660)
    east = "POLYGON ((-179.95 -0.02, -179.9 -0.02, -179.9 0.02, -179.95 0.02, -179.95 -0.02))"
    west = "POLYGON ((179.95 -0.02, 179.98 -0.02, 179.98 0.02, 179.95 0.02, 179.95 -0.02))"
    to_utm = Transformer.from_crs(WGS84, crs, always_xy=True)
    for zone, inside_lon, outside_lon in ((east, -179.92, 179.97), (west, 179.97, -179.92)):
        mask = pixel_mask([zone], width=60, height=40, transform=transform, crs=crs, rpcs=None, nodata=None,
                          dtype="uint16").rows(0, 40, 60)
        for lon, expected in ((inside_lon, True), (outside_lon, False)):
            x, y = to_utm.transform(lon, 0.0)
            col, row = ~transform @ (x, y)
            assert mask[int(row), int(col)] == expected, (zone, lon)


def test_gcp_image_uses_the_fitted_grid(tmp_path: Path) -> None:
    gcps = [GroundControlPoint(row=r, col=c, x=ORIGIN[0] + c, y=ORIGIN[1] - r)
            for r, c in ((0, 0), (0, 200), (200, 0), (200, 200))]
    src = write_image(tmp_path / "gcp.tif", _pixels(), gcps=gcps, gcp_crs=UTM50)
    mask = raster_pixel_mask(src, [_zone_wkt(*ZONE_PIXELS)])
    reference = pixel_mask([_zone_wkt(*ZONE_PIXELS)], width=200, height=200, transform=TRANSFORM, crs=UTM50,
                           rpcs=None, nodata=None, dtype="uint16")
    np.testing.assert_array_equal(mask.rows(0, 200, 200), reference.rows(0, 200, 200))


# RPCs
# --------------------------------------------------------------------------


def _rpc_lonlat(rpc: RPC, z: float | None = None):  # type: ignore[no-untyped-def]
    def to_lonlat(col: float, row: float) -> tuple[float, float]:
        with RPCTransformer(rpc) as tr:
            x, y = tr.xy([row], [col], zs=[rpc.height_off if z is None else z], offset="ul")
        return float(x[0]), float(y[0])
    return to_lonlat


def _lean(rpc: RPC, lean: float) -> RPC:
    samp = list(rpc.samp_num_coeff)
    samp[3] = lean  # columns move with the height: lean x samp_scale pixels per height scale
    return RPC(height_off=rpc.height_off, height_scale=rpc.height_scale, lat_off=rpc.lat_off,
               lat_scale=rpc.lat_scale, line_den_coeff=rpc.line_den_coeff, line_num_coeff=rpc.line_num_coeff,
               line_off=rpc.line_off, line_scale=rpc.line_scale, long_off=rpc.long_off, long_scale=rpc.long_scale,
               samp_den_coeff=rpc.samp_den_coeff, samp_num_coeff=samp, samp_off=rpc.samp_off,
               samp_scale=rpc.samp_scale)


@pytest.mark.parametrize("factor", [1, 2])
def test_rpc_only_image_is_masked_through_its_rpcs(tmp_path: Path, factor: int) -> None:
    rpc = linear_rpc(116.4, 39.9, 1.0, 200, 200)
    pixels = _pixels()
    src = write_image(tmp_path / "l1a.tif", pixels, rpcs=rpc)
    zone = _zone_wkt(*ZONE_PIXELS, to_lonlat=_rpc_lonlat(rpc))
    mask = raster_pixel_mask(src, [zone])
    written = degrade_raster(src, tmp_path / "out.tif", _plan(factor, mask), tags={})
    out, _ = _read(written.path)
    with RPCTransformer(rpc) as tr:  # a ground point inside the zone, and one outside, back to pixels
        (row_in, row_out), (col_in, col_out) = tr.rowcol([116.40003, 116.3994], [39.89997, 39.9006], zs=[0, 0])
    assert (row_in, col_in) == (103, 103) and (row_out, col_out) == (33, 49)
    assert out[0, row_in // factor, col_in // factor] == 0
    if factor == 1:
        assert out[0, row_out, col_out] == pixels[0, row_out, col_out]
    else:
        assert out[0, row_out // 2, col_out // 2] == area_average(pixels[0], 2)[row_out // 2, col_out // 2]
    assert written.masked_fraction is not None
    assert 70 * 70 / 40_000 <= written.masked_fraction <= 72 * 72 / 40_000


def test_rpc_mask_covers_the_zone_at_every_height(tmp_path: Path) -> None:
    # 5 pixels of lean per height scale: the zone seen from 500 m above or below the offset lies 5 columns aside.
    rpc = _lean(linear_rpc(116.4, 39.9, 1.0, 200, 200), 0.05)
    zone = _zone_wkt(*ZONE_PIXELS, to_lonlat=_rpc_lonlat(rpc))
    src = write_image(tmp_path / "l1a.tif", _pixels(), rpcs=rpc)
    inside = raster_pixel_mask(src, [zone]).rows(0, 200, 200)
    assert inside[85, 45:125].all()  # columns 50..119, widened by 5 on each side
    assert not inside[85, :44].any() and not inside[85, 126:].any()
    assert not inside[:49, 85].any() and not inside[121:, 85].any()  # rows do not lean


def test_rpc_mask_covers_a_narrow_zone_at_the_heights_in_between(tmp_path: Path) -> None:
    # Half a pixel wide, moving 5 columns per height scale: placed at a few heights only, it would leave gaps
    # between its places where terrain at an in-between height shows it.
    rpc = _lean(linear_rpc(116.4, 39.9, 1.0, 200, 200), 0.05)
    zone = _zone_wkt(50, 60, 50.5, 110, to_lonlat=_rpc_lonlat(rpc))
    inside = pixel_mask([zone], width=200, height=200, transform=None, crs=None, rpcs=rpc, nodata=None,
                        dtype="uint16").rows(0, 200, 200)
    assert inside[85, 44:56].all()  # 45 .. 55.5 at heights -500 .. +500 m around the offset
    assert not inside[85, :43].any() and not inside[85, 57:].any()
    with RPCTransformer(rpc) as tr:  # any height in the range: the zone's pixels are masked
        for z in np.linspace(rpc.height_off - rpc.height_scale, rpc.height_off + rpc.height_scale, 37):
            lon, lat = _rpc_lonlat(rpc)(50.25, 85.5)
            row, col = tr.rowcol([lon], [lat], zs=[z])
            assert inside[row[0], col[0]], z


def test_rpcs_beside_the_image_are_used(tmp_path: Path) -> None:
    rpc = linear_rpc(116.4, 39.9, 1.0, 200, 200)
    src = write_image(tmp_path / "l1a.tif", _pixels())
    zone = _zone_wkt(*ZONE_PIXELS, to_lonlat=_rpc_lonlat(rpc))
    mask = raster_pixel_mask(src, [zone], rpcs=rpc)
    assert mask.rows(85, 1, 200)[0, 85]


def test_masked_l1a_output_keeps_its_rpcs_and_gets_no_geotransform(tmp_path: Path) -> None:
    rpc = linear_rpc(116.4, 39.9, 1.0, 200, 200)
    src = write_image(tmp_path / "l1a.tif", _pixels(), rpcs=rpc)
    mask = raster_pixel_mask(src, [_zone_wkt(*ZONE_PIXELS, to_lonlat=_rpc_lonlat(rpc))])
    written = degrade_raster(src, tmp_path / "out.tif", _plan(1, mask), tags={})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(written.path) as ds:
            assert ds.transform.is_identity and ds.crs is None
            assert ds.rpcs is not None and ds.rpcs.samp_off == rpc.samp_off


def test_rebuilt_image_without_a_geotransform_gets_none(tmp_path: Path) -> None:
    # GDAL's overview-level wrapper (the pixel handle) reports an uninitialised geotransform for an image that
    # has none: the output's georeferencing comes from the plain handle.
    for name, extra in (("bare.tif", {}), ("l1a.tif", {"rpcs": linear_rpc(116.4, 39.9, 1.0, 200, 200)})):
        src = write_image(tmp_path / name, _pixels(), **extra)
        out = rebuild_raster(src, tmp_path / f"rebuilt-{name}", tags={}).path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(out) as ds:
                assert ds.transform.is_identity and ds.crs is None, (name, ds.transform)


# Refusals
# --------------------------------------------------------------------------


def test_complex_samples_cannot_be_masked(tmp_path: Path) -> None:
    src = _utm_image(tmp_path / "slc.tif", (_pixels() + 1j * _pixels()).astype(np.complex64))
    with pytest.raises(ProductReadError, match="masking complex SAR samples is not supported"):
        raster_pixel_mask(src, [_zone_wkt(*ZONE_PIXELS)])
    with pytest.raises(ProductReadError, match="masking complex SAR samples is not supported"):
        choose_nodata("complex_int16")
    mask = PixelMask(shapely.box(50, 50, 120, 120), 0.0)
    plan = DegradePlan(Fraction(2), Fraction(2), 1.0, 1.0, 2.0, "intensity", mask=mask)
    with pytest.raises(ProductReadError, match="masking complex SAR samples is not supported"):
        degrade_raster(src, tmp_path / "out.tif", plan, tags={})
    assert not (tmp_path / "out.tif").exists()


def test_image_without_georeferencing_cannot_be_masked(tmp_path: Path) -> None:
    src = write_image(tmp_path / "bare.tif", _pixels())
    with pytest.raises(ProductReadError, match="no CRS geotransform, RPCs or GCPs") as caught:
        raster_pixel_mask(src, [_zone_wkt(*ZONE_PIXELS)])
    assert caught.value.path == str(src)


@pytest.mark.parametrize(("zone", "problem"), [
    ("POLYGON ((0 0, 1 1", "not WKT"),
    ("LINESTRING (116 39, 117 40)", "not a polygon"),
    ("POLYGON ((116 39, 117 40, 117 39, 116 40, 116 39))", "not a valid polygon"),
    ("POLYGON ((116 139, 117 139, 117 140, 116 139))", "not in longitude/latitude"),
])
def test_unusable_zones_are_refused(zone: str, problem: str) -> None:
    with pytest.raises(ProductReadError, match=problem):
        pixel_mask([zone], width=10, height=10, transform=TRANSFORM, crs=UTM50, rpcs=None, nodata=None,
                   dtype="uint8", path="x.tif")


def test_a_projection_that_fails_blocks() -> None:
    # An RPC whose inverse cannot be evaluated (a zero denominator everywhere).
    rpc = linear_rpc(116.4, 39.9, 1.0, 200, 200)
    broken = RPC(**{**rpc.to_dict(), "samp_den_coeff": [0.0] * 20})
    zone = _zone_wkt(*ZONE_PIXELS, to_lonlat=_rpc_lonlat(rpc))
    with pytest.raises(ProductReadError, match="cannot be placed"):
        pixel_mask([zone], width=200, height=200, transform=None, crs=None, rpcs=broken, nodata=None,
                   dtype="uint8")


def test_nodata_the_samples_cannot_hold_is_refused() -> None:
    with pytest.raises(ProductReadError, match="cannot occur in uint8"):
        pixel_mask([], width=1, height=1, transform=None, crs=None, rpcs=None, nodata=-1, dtype="uint8")


def test_no_zones_is_an_empty_mask() -> None:
    mask = pixel_mask([], width=10, height=10, transform=None, crs=None, rpcs=None, nodata=None, dtype="int16")
    assert mask.is_empty and mask.nodata == -32768
    assert not mask.rows(0, 10, 10).any()


def test_choose_nodata() -> None:
    assert choose_nodata(np.uint8) == 0.0
    assert choose_nodata("int32") == float(np.iinfo(np.int32).min)
    assert math.isnan(choose_nodata("float64"))


def test_pixel_mask_rows_and_scaling() -> None:
    mask = PixelMask(shapely.box(2, 3, 5, 4), 0.0)
    rows = mask.rows(2, 4, 8)
    assert rows.shape == (4, 8)
    assert rows[1, 2:5].all() and rows.sum() == 3  # only the pixels of row 3 inside the box
    assert not mask.rows(10, 5, 8).any()
    assert mask.rows(0, 0, 8).shape == (0, 8)
    scaled = mask.scaled(Fraction(2), Fraction(1, 1))
    assert scaled.zone.bounds == (2.0, 1.5, 5.0, 2.0)
    with pytest.raises(ValueError, match="positive"):
        mask.scaled(0, 1)


# Property: no output pixel touching a zone keeps a value
# --------------------------------------------------------------------------


def _true_zone_in_pixels(zone_wkt: str) -> shapely.Geometry:
    """The zone in source pixel coordinates, computed independently: finely densified, projected, inverted."""
    fine = shapely.segmentize(shapely.from_wkt(zone_wkt), 1e-6)
    to_utm = Transformer.from_crs(WGS84, UTM50, always_xy=True)
    inverse = ~TRANSFORM

    def project(xy: np.ndarray) -> np.ndarray:
        x, y = to_utm.transform(xy[:, 0], xy[:, 1])
        return np.column_stack(inverse @ (np.asarray(x), np.asarray(y)))

    return shapely.transform(fine, project)


_FACTORS = st.sampled_from([Fraction(1), Fraction(2), Fraction(3, 2), Fraction(5, 3), Fraction(7, 4), Fraction(3)])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=st.lists(st.tuples(st.floats(-20, 84), st.floats(-20, 84)), min_size=3, max_size=6),
       fr=_FACTORS, fc=_FACTORS, edge=st.booleans())
def test_no_output_pixel_touching_a_zone_keeps_a_value(tmp_path: Path, points: list[tuple[float, float]],
                                                       fr: Fraction, fc: Fraction, edge: bool) -> None:
    if edge:  # corners on whole output pixel edges: zones that only touch pixels along an edge
        points = [(math.floor(c) * float(fc), math.floor(r) * float(fr)) for c, r in points]
    hull = shapely.MultiPoint(points).convex_hull
    if not isinstance(hull, shapely.Polygon) or hull.area < 1e-3:
        return
    zone = shapely.Polygon([_lonlat_of_pixel(c, r) for c, r in hull.exterior.coords]).wkt
    width, height = 64, 48
    src = tmp_path / "src.tif"
    pixels = _pixels(height, width)
    write_image(src, pixels, crs=UTM50, transform=TRANSFORM)
    written = degrade_raster(src, tmp_path / "out.tif",
                             DegradePlan(fr, fc, 1.0, 1.0, 3.0, None, mask=raster_pixel_mask(src, [zone])), tags={})
    out, _ = _read(written.path)
    true_zone = _true_zone_in_pixels(zone)
    rows, cols = np.mgrid[0:written.height, 0:written.width]
    boxes = shapely.box(cols * float(fc), rows * float(fr), (cols + 1) * float(fc), (rows + 1) * float(fr))
    # The last output pixel of a row or column reaches past the image; that part shows no ground.
    shown = shapely.intersection(boxes, shapely.box(0, 0, width, height))
    touching = shapely.intersects(shown, true_zone)
    assert not out[0][touching].any()
    # ...and an output pixel none of whose source pixels comes near the zone keeps a value.
    sources = shapely.box(np.floor(cols * float(fc)), np.floor(rows * float(fr)), np.ceil((cols + 1) * float(fc)),
                          np.ceil((rows + 1) * float(fr)))
    far = ~shapely.dwithin(sources, true_zone, 2 * MARGIN_PX + 1e-6)
    assert (out[0][far] != 0).all()
