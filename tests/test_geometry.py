"""Ground spacing from every kind of georeferencing."""

from __future__ import annotations

import math

import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS

from rspolicy.geometry import affine_spacing, gcp_spacing, rpc_spacing
from rspolicy.samples.gf_optical import linear_rpc

UTM50 = CRS.from_epsg(32650)
WGS84 = CRS.from_epsg(4326)


def test_projected_metres() -> None:
    [s] = affine_spacing(Affine(0.3, 0, 500000, 0, -0.3, 4_400_000), UTM50, 1000, 1000)
    assert s.x_m == pytest.approx(0.3) and s.y_m == pytest.approx(0.3)
    assert s.method == "geotransform"


def test_us_survey_feet_are_converted() -> None:
    # EPSG:2227 is in US survey feet: 2 ft pixels are 0.6096 m, not 2 m.
    [s] = affine_spacing(Affine(2, 0, 6_000_000, 0, -2, 2_000_000), CRS.from_epsg(2227), 500, 500)
    assert s.finest_m == pytest.approx(2 * 1200 / 3937, rel=1e-9)


def test_international_feet_are_converted() -> None:
    # EPSG:2222, NAD83 / Arizona East, is in international feet (0.3048 m exactly).
    [s] = affine_spacing(Affine(1, 0, 700_000, 0, -1, 900_000), CRS.from_epsg(2222), 100, 100)
    assert s.finest_m == pytest.approx(0.3048)


def test_geographic_uses_geodesic_at_the_scene() -> None:
    # 1e-5 degree pixels: ~1.11 m north-south everywhere, east-west shrinks with latitude.
    at_equator = affine_spacing(Affine(1e-5, 0, 10, 0, -1e-5, 0.01), WGS84, 1000, 1000)[0]
    at_70n = affine_spacing(Affine(1e-5, 0, 10, 0, -1e-5, 70.01), WGS84, 1000, 1000)[0]
    assert at_equator.x_m == pytest.approx(1.113, abs=0.002)
    assert at_70n.y_m == pytest.approx(1.116, abs=0.003)
    geod = Geod(ellps="WGS84")
    expected_x = geod.inv(10, 70.01, 10 + 1e-5, 70.01)[2]
    # The finest place in the scene is its poleward edge: at or below the top-edge value.
    assert at_70n.x_m <= expected_x + 1e-9
    assert at_70n.x_m == pytest.approx(expected_x, rel=1e-3)
    assert at_70n.x_m < 0.4  # a fixed 111 km/degree would say 1.11 m: wrong by 3x


def test_high_latitude_scene_measures_its_poleward_edge() -> None:
    # A scene from 79N to 80N: the finest east-west spacing is at 80N.
    [s] = affine_spacing(Affine(1e-3, 0, 20, 0, -1e-3, 80), WGS84, 1000, 1000)
    top = Geod(ellps="WGS84").inv(20, 80, 20.001, 80)[2]
    bottom = Geod(ellps="WGS84").inv(20, 79.001, 20.001, 79.001)[2]
    assert s.x_m == pytest.approx(top, rel=2e-3)
    assert s.x_m < bottom


def test_rotated_transform_uses_edge_vector_lengths() -> None:
    angle = math.radians(30)
    size = 0.4
    t = Affine(size * math.cos(angle), -size * math.sin(angle), 500000,
               size * math.sin(angle), size * math.cos(angle) * -1, 4_400_000)
    [s] = affine_spacing(t, UTM50, 100, 100)
    assert s.x_m == pytest.approx(size) and s.y_m == pytest.approx(size)
    assert "rotated" in s.detail


def test_sheared_transform() -> None:
    t = Affine(0.5, 0.2, 500000, 0.0, -0.5, 4_400_000)
    [s] = affine_spacing(t, UTM50, 100, 100)
    assert s.x_m == pytest.approx(0.5)
    assert s.y_m == pytest.approx(math.hypot(0.2, 0.5))


def test_mercator_far_from_equator_reports_ground_spacing() -> None:
    # Web Mercator 1 m pixels at 60N are ~0.5 m on the ground.
    y60 = 8_399_737.89
    out = affine_spacing(Affine(1, 0, 1_000_000, 0, -1, y60), CRS.from_epsg(3857), 100, 100)
    methods = {s.method: s for s in out}
    assert methods["geotransform"].finest_m == pytest.approx(1.0)
    assert methods["geotransform-ground"].finest_m == pytest.approx(0.5, rel=0.01)


def test_utm_scale_factor_does_not_move_a_boundary_value() -> None:
    # Near the central meridian UTM's 0.9996 scale would make 0.5 m look like 0.4998 m.
    out = affine_spacing(Affine(0.5, 0, 500000, 0, -0.5, 4_400_000), UTM50, 100, 100)
    assert [s.method for s in out] == ["geotransform"]
    assert out[0].finest_m == 0.5


def test_no_crs_gives_nothing() -> None:
    assert affine_spacing(Affine(0.3, 0, 0, 0, -0.3, 0), None, 10, 10) == []


@settings(max_examples=30, deadline=None)
@given(gsd=st.floats(0.1, 5.0), lat=st.floats(-70.0, 70.0), lon=st.floats(-179.0, 179.0))
def test_linear_rpc_recovers_its_gsd(gsd: float, lat: float, lon: float) -> None:
    rpc = linear_rpc(lon, lat, gsd, 2000, 1800)
    s = rpc_spacing(rpc, 2000, 1800)
    # The sample RPC is built with spherical metres-per-degree constants, so the
    # geodesic answer matches only to within the ellipsoid's flattening.
    assert s.finest_m == pytest.approx(gsd, rel=0.01)


def test_real_gf2_pan_rpc(real_metadata, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    import rasterio

    from rspolicy.samples.gf_optical import write_image

    (tmp_path / "scene.rpb").write_bytes((real_metadata / "gf2_pms1_pan_l1a.rpb").read_bytes())
    write_image(tmp_path / "scene.tiff", np.zeros((1, 2, 2), dtype="uint16"))
    with rasterio.open(tmp_path / "scene.tiff") as ds:
        s = rpc_spacing(ds.rpcs, 29200, 27620)
    # GF-2 PAN is 0.8 m at nadir; this scene was taken 15 degrees off nadir.
    assert 0.8 < s.finest_m < 0.9


def test_gcps_fit() -> None:
    gcps = [GroundControlPoint(row=r, col=c, x=500000 + 0.25 * c, y=4_400_000 - 0.25 * r)
            for r, c in ((0, 0), (0, 999), (999, 0), (999, 999))]
    [s] = gcp_spacing(gcps, UTM50, 1000, 1000)
    assert s.finest_m == pytest.approx(0.25)
    assert s.method == "GCP"
    assert gcp_spacing(gcps[:2], UTM50, 1000, 1000) == []
