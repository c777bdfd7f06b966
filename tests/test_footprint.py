"""Footprints from the raster's own georeferencing: geotransform, GCPs, RPCs; unusable ones are notes, never errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.rpc import RPC
from rasterio.transform import RPCTransformer

from rspolicy.geometry import affine_footprint, rpc_footprint
from rspolicy.model import Evidence, Fact
from rspolicy.readers.geotiff import GeoreferencingBeside, read_geotiff
from rspolicy.samples.gf_optical import linear_rpc, write_image

UTM50 = CRS.from_epsg(32650)
WGS84 = CRS.from_epsg(4326)


def _image(path: Path, width: int = 40, height: int = 30, **georef: object) -> Path:
    return write_image(path, np.ones((1, height, width), dtype=np.uint16), **georef)  # type: ignore[arg-type]


def _footprints(evidence: tuple[Evidence, ...] | list[Evidence]) -> dict[str, shapely.Polygon]:
    return {e.field: shapely.from_wkt(str(e.value)) for e in evidence if e.fact is Fact.FOOTPRINT}


def _notes(evidence: tuple[Evidence, ...] | list[Evidence]) -> dict[str, Evidence]:
    return {e.field: e for e in evidence if e.fact is Fact.INFO and e.field.endswith("footprint")}


def _height_rpc(width: int, height: int, lean: float = 0.05) -> RPC:
    """A linear RPC whose columns move with the height (a sensor looking sideways): ``lean`` of the half-width per
    height scale."""
    rpc = linear_rpc(116.4, 39.9, 1.0, width, height, height_off=50.0)
    samp = list(rpc.samp_num_coeff)
    samp[3] = lean  # the H term
    return RPC(height_off=rpc.height_off, height_scale=rpc.height_scale, lat_off=rpc.lat_off,
               lat_scale=rpc.lat_scale, line_den_coeff=rpc.line_den_coeff, line_num_coeff=rpc.line_num_coeff,
               line_off=rpc.line_off, line_scale=rpc.line_scale, long_off=rpc.long_off, long_scale=rpc.long_scale,
               samp_den_coeff=rpc.samp_den_coeff, samp_num_coeff=samp, samp_off=rpc.samp_off,
               samp_scale=rpc.samp_scale)


def test_utm_footprint_holds_the_centre_and_matches_the_corners(tmp_path: Path) -> None:
    transform = Affine(0.5, 0, 448_000, 0, -0.5, 4_417_000)
    path = _image(tmp_path / "utm.tif", 400, 300, crs=UTM50, transform=transform)
    reading = read_geotiff(path, "utm.tif")
    [(field, polygon)] = _footprints(reading.evidence).items()
    assert field == "geotransform footprint"
    to_lonlat = Transformer.from_crs(UTM50, WGS84, always_xy=True)
    assert polygon.contains(shapely.Point(to_lonlat.transform(*(transform @ (200, 150)))))
    ring = np.asarray(polygon.exterior.coords)
    assert len(ring) == 4 * 8 + 1  # 8 points per edge, closed
    for index, corner in zip((0, 8, 16, 24), ((0, 0), (400, 0), (400, 300), (0, 300)), strict=True):
        expected = to_lonlat.transform(*(transform @ corner))
        assert ring[index] == pytest.approx(expected, abs=1e-6)
    [evidence] = [e for e in reading.evidence if e.fact is Fact.FOOTPRINT]
    assert evidence.source == "utm.tif"
    assert "EPSG:4326" in evidence.detail and "EPSG:32650" in evidence.detail


def test_geographic_footprint_is_the_grid_itself(tmp_path: Path) -> None:
    path = _image(tmp_path / "geo.tif", 100, 50, crs=WGS84, transform=Affine(1e-4, 0, 116.3, 0, -1e-4, 39.95))
    polygon = _footprints(read_geotiff(path, "geo.tif").evidence)["geotransform footprint"]
    assert polygon.bounds == pytest.approx((116.3, 39.945, 116.31, 39.95), abs=1e-9)
    assert polygon.area == pytest.approx(0.01 * 0.005, rel=1e-6)


def test_footprint_is_in_wgs84_whatever_the_datum(tmp_path: Path) -> None:
    # Beijing 1954 / 3-degree Gauss-Kruger CM 117E: its own longitudes are some 100 m off WGS 84's.
    crs = CRS.from_epsg(2436)
    transform = Affine(1.0, 0, 500_000, 0, -1.0, 4_420_000)
    path = _image(tmp_path / "bj54.tif", 50, 50, crs=crs, transform=transform)
    polygon = _footprints(read_geotiff(path, "bj54.tif").evidence)["geotransform footprint"]
    wgs84 = Transformer.from_crs(crs, WGS84, always_xy=True).transform(*(transform @ (0, 0)))
    assert np.asarray(polygon.exterior.coords)[0] == pytest.approx(wgs84, abs=1e-6)


def test_gcp_footprint_from_the_fitted_grid(tmp_path: Path) -> None:
    gcps = [GroundControlPoint(row=r, col=c, x=448_000 + 0.5 * c, y=4_417_000 - 0.5 * r)
            for r, c in ((0, 0), (0, 40), (30, 0), (30, 40))]
    path = _image(tmp_path / "gcp.tif", gcps=gcps, gcp_crs=UTM50)
    polygon = _footprints(read_geotiff(path, "gcp.tif").evidence)["GCP footprint"]
    expected = shapely.from_wkt(affine_footprint(Affine(0.5, 0, 448_000, 0, -0.5, 4_417_000), UTM50, 40, 30))
    assert polygon.equals_exact(expected, 1e-8)


def test_rpc_footprint_holds_the_corners_at_every_height(tmp_path: Path) -> None:
    rpc = _height_rpc(200, 100)
    path = _image(tmp_path / "l1a.tif", 200, 100, rpcs=rpc)
    polygon = _footprints(read_geotiff(path, "l1a.tif").evidence)["RPC footprint"]
    assert polygon.is_valid
    rows, cols = [0, 0, 100, 100, 50], [0, 200, 200, 0, 100]
    with RPCTransformer(rpc) as tr:
        for z in (rpc.height_off - rpc.height_scale, rpc.height_off, rpc.height_off + rpc.height_scale):
            xs, ys = tr.xy(rows, cols, zs=[z] * 5, offset="ul")
            for x, y in zip(xs, ys, strict=True):
                assert polygon.covers(shapely.Point(x, y)), (z, x, y)
    # The hull reaches beyond the outline at the height offset alone, on both sides: the terrain may lie there.
    with RPCTransformer(rpc) as tr:
        xs, _ = tr.xy([50, 50], [0, 200], zs=[rpc.height_off] * 2, offset="ul")
    west, _, east, _ = polygon.bounds
    assert west < xs[0] - 1e-6 and east > xs[1] + 1e-6


def test_rpcs_beside_the_image_give_their_own_footprint(tmp_path: Path) -> None:
    rpc = linear_rpc(116.4, 39.9, 1.0, 40, 30)
    path = _image(tmp_path / "l1a.tif")
    reading = read_geotiff(path, "l1a.tif", GeoreferencingBeside(rpcs=(("l1a.rpb", rpc),)))
    polygon = _footprints(reading.evidence)["RPC (l1a.rpb) footprint"]
    assert polygon.contains(shapely.Point(116.4, 39.9))


def test_no_georeferencing_gives_no_footprint(tmp_path: Path) -> None:
    path = _image(tmp_path / "bare.tif")
    reading = read_geotiff(path, "bare.tif")
    assert _footprints(reading.evidence) == {}
    assert _notes(reading.evidence) == {}


@pytest.mark.parametrize(("crs", "transform"), [
    # UTM 60N by the equator, 20 km wide around 180 degrees.
    (CRS.from_epsg(32660), Affine(500.0, 0, 823_000, 0, -500.0, 10_000)),
    # A geographic grid written in 0..360 longitudes: 179.9 to 180.1.
    (WGS84, Affine(0.005, 0, 179.9, 0, -0.005, 0.1)),
])
def test_antimeridian_gives_a_note_not_a_footprint(tmp_path: Path, crs: CRS, transform: Affine) -> None:
    path = _image(tmp_path / "am.tif", crs=crs, transform=transform)
    reading = read_geotiff(path, "am.tif")  # never raises for a footprint
    assert _footprints(reading.evidence) == {}
    note = _notes(reading.evidence)["geotransform footprint"]
    assert note.value == "none"
    assert "antimeridian" in note.detail and "may intersect any zone" in note.detail
    assert any(e.fact is Fact.GSD for e in reading.evidence)  # the spacing is measured as before


def test_footprint_functions_raise_value_error_for_unusable_outlines() -> None:
    with pytest.raises(ValueError, match="antimeridian"):
        affine_footprint(Affine(0.005, 0, 179.9, 0, -0.005, 0.1), WGS84, 40, 30)
    with pytest.raises(ValueError, match="beyond the poles"):
        affine_footprint(Affine(1.0, 0, 10, 0, 1.0, 85.0), WGS84, 10, 10)
    with pytest.raises(ValueError, match="antimeridian"):
        rpc_footprint(linear_rpc(179.99, 0.0, 10.0, 400, 400), 400, 400)


@settings(max_examples=40, deadline=None)
@given(lon=st.floats(-170.0, 170.0), lat=st.floats(-75.0, 75.0), gsd=st.floats(0.3, 30.0),
       width=st.integers(1, 3000), height=st.integers(1, 3000))
def test_utm_footprint_covers_every_pixel_centre(lon: float, lat: float, gsd: float, width: int, height: int) -> None:
    zone = int((lon + 180) // 6) + 1
    crs = CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)
    x0, y0 = Transformer.from_crs(WGS84, crs, always_xy=True).transform(lon, lat)
    transform = Affine(gsd, 0, x0, 0, -gsd, y0)
    polygon = shapely.from_wkt(affine_footprint(transform, crs, width, height))
    to_lonlat = Transformer.from_crs(crs, WGS84, always_xy=True)
    cols, rows = np.meshgrid(np.linspace(0.5, width - 0.5, 7), np.linspace(0.5, height - 0.5, 7))
    xs, ys = x0 + gsd * cols.ravel(), y0 - gsd * rows.ravel()
    lons, lats = to_lonlat.transform(xs, ys)
    assert shapely.covers(polygon, shapely.points(lons, lats)).all()
